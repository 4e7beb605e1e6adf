"""Data parallelism: 4 simulated devices equal 1 device; two processes over loopback (gloo) train together."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tolerance import tolerance

from lvd.runs import checkpoint as ckpt

HERE = Path(__file__).parent
# float32 roundings on a sample's dependency path, at the samples' scale: a few sampler steps, ~4 each
SAMPLE_OPS = 16


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_COMPILATION_CACHE_DIR"] = str(HERE.parent / ".pytest_cache" / "jax")
    return env


@pytest.mark.slow  # ~120 s on 2 cores (4 virtual devices in a subprocess)
def test_four_devices_equal_one(tiny_file, tiny_run):
    from conftest import TINY

    r = subprocess.run([sys.executable, str(HERE / "multidevice_check.py"), str(tiny_file), str(tiny_run), *TINY,
                        "train.warmup_steps=0"], env=_env(4), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["batch_shards_1"] == 1 and out["batch_shards_4"] == 4
    # one batch summed in 4 shards or in 1: float32 reductions in another order. Measured (train.seed 0-2): losses
    # ≤ 1.3 ε relative, gradients ≤ 1e-10 of their largest, samples ≤ 2.6 ε of their largest (4 sampler steps)
    np.testing.assert_allclose(out["losses_4"], out["losses_1"], rtol=tolerance(np.float32, ops=8))
    assert out["grad_max_abs_diff_over_scale"] < tolerance(np.float32, ops=8)
    assert out["param_max_abs_diff"] <= 2.5 * out["learning_rate"]
    assert out["unfold_max_abs_diff"] <= tolerance(np.float32, ops=SAMPLE_OPS, scale=max(out["unfold_scale"], 1.0))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(port: int, i: int, *args: str) -> subprocess.Popen:
    """Process ``i`` of two running ``lvd ARGS`` with one CPU device each, coordinated over loopback."""
    cmd = [sys.executable, "-m", "lvd.cli.main", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
           "--process-id", str(i), *args]
    return subprocess.Popen(cmd, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # ~95 s on 2 cores
def test_two_processes_train_over_loopback(tiny_file, tmp_path):
    from conftest import TINY

    port = _free_port()
    runs = tmp_path / "runs"
    procs = [_launch(port, i, "train", "small", str(tiny_file), *TINY, "train.steps=3", "train.checkpoint_every=3",
                    "train.validate_every=3", "--runs-dir", str(runs), "-n", "mp", "--quiet") for i in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, se) in zip(procs, outs, strict=True):
        assert p.returncode == 0, se[-3000:]
    versions = list((runs / "mp").glob("version_*"))
    assert len(versions) == 1, "both processes write into one run folder"
    step_dir = ckpt.resolve(versions[0], "latest")
    meta = ckpt.read_meta(step_dir)
    assert meta["processes"] == 2 and meta["step"] == 3
    from lvd.sampling.unfold import Unfolder

    assert Unfolder.load(step_dir).step == 3  # loadable in a single process


@pytest.mark.slow
def test_two_processes_unfold_like_one(tiny_file, tiny_run, tmp_path):
    """Unfolding with two processes gives one file, equal to the single-process result (per-event seeds)."""
    port = _free_port()
    out2 = tmp_path / "u2.h5"
    procs = [_launch(port, i, "unfold", str(tiny_run), str(tiny_file), str(out2), "-k", "2", "--steps", "3",
                    "--sampler", "ancestral") for i in range(2)]
    for p in procs:
        _, se = p.communicate(timeout=600)
        assert p.returncode == 0, se[-3000:]
    from lvd.data.schema import read_events
    from lvd.sampling.unfold import unfold_file

    out1 = tmp_path / "u1.h5"
    unfold_file(tiny_run, tiny_file, out1, samples=2, steps=3, sampler="ancestral")
    a, b = read_events(out1), read_events(out2)
    assert a.n_events == b.n_events and not list(tmp_path.glob("u2.part-*"))
    # measured bit-equal on CPU; batches of other sizes round differently (see test_four_devices_equal_one)
    a_pt = a.unfolded["b_had"]["pt"]
    np.testing.assert_allclose(b.unfolded["b_had"]["pt"], a_pt, rtol=0,
                               atol=tolerance(np.float32, ops=SAMPLE_OPS, scale=np.abs(a_pt).max()))
