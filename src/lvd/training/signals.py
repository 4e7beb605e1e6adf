"""Stop requests a user or a cluster sends to a training run.

* Ctrl-C (SIGINT) from a terminal;
* SIGTERM: what Slurm sends at the job's time limit (then SIGKILL after ``KillWait``, 30 s by default), and what
  ``kill``, ``scancel`` and most schedulers send to stop a job;
* SIGUSR1: what ``#SBATCH --signal=USR1@120`` sends a chosen time before the limit.

Each asks the loop to stop after the current step, save a checkpoint and return normally, so the run resumes
exactly with ``-c``. A second request while the first is being honoured aborts at once (KeyboardInterrupt).
"""

from __future__ import annotations

import signal

# signal -> the reason the run reports
STOP_SIGNALS: dict[int, str] = {signal.SIGINT: "interrupt", signal.SIGTERM: "SIGTERM", signal.SIGUSR1: "SIGUSR1"}


class StopRequest:
    """Context manager that turns the stop signals into a flag (``reason``) the loop polls at every step."""

    def __init__(self):
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals stay with whoever handles them
                break
        return self

    def _handler(self, signum, frame) -> None:
        if self.reason is not None:
            raise KeyboardInterrupt
        self.reason = STOP_SIGNALS[signum]

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
