"""Multi-process (multi-host) runs with JAX's own distributed runtime.

``initialize()`` starts the runtime when this process is one of several: explicitly (coordinator address,
number of processes, process id) or automatically under Slurm or Open MPI. Everything else in lvd asks
:func:`process_index`/:func:`process_count` and follows three rules: each process reads only its own slice of
the data, the global batch is assembled with ``jax.make_array_from_process_local_data``, and only process 0
writes metadata, logs and output files (Orbax coordinates the checkpoint arrays itself).
"""

from __future__ import annotations

import os

import numpy as np

from lvd.errors import LvdError

# jax is imported inside the functions: `lvd inspect` and the generators must not pay for it.


def _launched_by_scheduler() -> bool:
    slurm = "SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
    mpi = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1
    return slurm or mpi


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Start the distributed runtime if needed; returns True when running as one of several processes."""
    explicit = coordinator is not None or num_processes is not None or process_id is not None
    if not explicit and not _launched_by_scheduler():
        return False
    import jax

    if explicit and (coordinator is None or num_processes is None or process_id is None):
        raise LvdError("--coordinator, --num-processes and --process-id go together")
    if explicit and not 0 <= process_id < num_processes:
        raise LvdError(f"--process-id {process_id}: must be in [0, {num_processes})")
    # CPU devices talk through gloo (the default CPU backend has no cross-process collectives)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def process_index() -> int:
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_main() -> bool:
    import jax

    return jax.process_index() == 0


def local_slice(n: int) -> slice:
    """This process's contiguous share of ``n`` events (the first processes get one more when uneven)."""
    import jax

    k, p = jax.process_count(), jax.process_index()
    base, extra = divmod(n, k)
    start = p * base + min(p, extra)
    return slice(start, start + base + (1 if p < extra else 0))


def allsum(x: np.ndarray) -> np.ndarray:
    """Sum of a host array over all processes (identity with one process)."""
    import jax

    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray(x))).sum(axis=0)


def broadcast(x):
    """Process 0's value of a small host value, on every process."""
    import jax

    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(x)


def make_mesh(devices=None):
    """A 1-D ``jax.sharding.Mesh`` over ``devices`` (default: all, over every process) with the axis ``data``."""
    import jax

    devices = list(devices if devices is not None else jax.devices())
    return jax.sharding.Mesh(np.array(devices), ("data",))


def barrier(name: str) -> None:
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
