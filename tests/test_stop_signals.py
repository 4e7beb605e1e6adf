"""Stop signals a user or a cluster sends to a training run (Ctrl-C, SIGUSR1, SIGTERM to the process): each leaves a
checkpoint the run resumes from exactly. (Apart from test_training.py so the suite's workers share the load.)"""

import csv
import os
import signal
import subprocess
import sys

import jax
import pytest

from lvd.runs import checkpoint as ckpt
from lvd.training.loop import train


def test_ctrl_c_saves_and_resumes(tiny_options, tiny_file, tmp_path):
    opts = tiny_options("train.checkpoint_every=100", "train.validate_every=100")

    def press_ctrl_c(step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)

    r = train(opts, tiny_file, runs_dir=tmp_path, on_step=press_ctrl_c)
    assert r.stopped_by == "interrupt" and r.step == 4
    assert r.latest is not None and r.latest.name == "4"
    r2 = train(opts, tiny_file, runs_dir=tmp_path, checkpoint=r.run_dir)
    assert r2.step == 10 and r2.run_dir == r.run_dir


def test_sigusr1_saves_like_ctrl_c(tiny_options, tiny_file, tmp_path):
    """sbatch --signal=USR1@T: the run stops after the current step with a checkpoint it resumes from."""
    opts = tiny_options("train.checkpoint_every=100", "train.validate_every=100")

    def cluster_warns(step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGUSR1)

    r = train(opts, tiny_file, runs_dir=tmp_path, on_step=cluster_warns)
    assert r.stopped_by == "SIGUSR1" and r.step == 3 and r.latest.name == "3"


def test_sigterm_to_a_training_process_resumes_exactly(tiny_options, tiny_file, tmp_path):
    """What Slurm does at the time limit: SIGTERM to `lvd train`. The process saves, exits 0, and the run resumed
    with -c takes exactly the steps the uninterrupted run takes (a constant learning rate makes the comparison
    independent of train.steps, which a resumed run may change)."""
    from conftest import TINY

    constant = ["train.final_learning_rate_ratio=1.0", "train.log_every=1", "train.validate_every=4",
                "train.checkpoint_every=1000"]
    cmd = [sys.executable, "-m", "lvd.cli.main", "train", "small", str(tiny_file), *TINY, *constant,
           "train.steps=1000000", "--runs-dir", str(tmp_path / "runs"), "--name", "term", "--quiet"]
    # the subprocess shares the session's compilation cache: it compiles nothing the tests have not compiled
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir,
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    seen = []
    for line in proc.stderr:  # blocks until the run reports its first validation: training is under way
        seen.append(line)
        if "validation loss" in line:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, "".join(seen) + err
    text = " ".join((out + err).split())
    assert "stopped by SIGTERM" in text, text
    run = tmp_path / "runs" / "term" / "version_0"
    stopped_at = int(ckpt.resolve(run, "latest").name)
    assert stopped_at >= 4
    end = stopped_at + 3
    resumed = train(tiny_options(*constant, f"train.steps={end}", "name=term"), tiny_file, checkpoint=run)
    assert resumed.run_dir == run and resumed.step == end
    whole = train(tiny_options(*constant, f"train.steps={end}", "name=whole"), tiny_file, runs_dir=tmp_path / "w")
    logged = {}
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["split"] == "train":
                logged[int(row["step"])] = float(row["loss"])
    reference = {h["step"]: h["loss"] for h in whole.history if h["split"] == "train"}
    assert sorted(logged) == list(range(1, end + 1))
    # metrics.csv keeps 6 significant digits (up to 5e-6 relative, measured 2.5e-6: half the tolerance): the
    # reference is rounded the same way, so the near-exact tolerance is left to the runs (measured bit-equal)
    for step in range(1, end + 1):
        assert logged[step] == pytest.approx(float(f"{reference[step]:.6g}"), rel=1e-5, abs=1e-6), step
