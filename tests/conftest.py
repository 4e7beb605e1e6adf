"""Shared fixtures. Toy files are generated once per session and reused read-only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Tests check numbers, not speed: XLA's cheapest CPU backend optimisation roughly halves compile times, which
# dominate the suite. Set before JAX starts; subprocesses started by tests inherit it through the environment.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

from lvd.data.generate import toy  # noqa: E402


def pytest_configure(config):
    # Compiled programs are cached on disk for the session: tests that train the same tiny model several
    # times (resume, interrupt, CLI) compile each step function once instead of once per run.
    cache = Path(config.rootpath) / ".pytest_cache" / "jax"
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


@pytest.fixture(scope="session")
def toy_file(tmp_path_factory) -> Path:
    """20k selected toy events, seed 1."""
    path = tmp_path_factory.mktemp("toy") / "toy.h5"
    toy.generate_file(path, 20_000, seed=1)
    return path


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``lvd ARGS...`` in-process; returns (exit code, stdout, stderr)."""
    from lvd.cli import main as cli

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["lvd", *map(str, args)])
        code = 0
        try:
            cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


# The options of every tiny training run. Tests keep the options that enter the compiled train step (model
# sizes, steps, warm-up, loss settings) identical wherever they can, so the compilation cache serves them all.
TINY = ["model.hidden=16", "model.num_heads=2", "model.detector_layers=1", "model.encoder_layers=1",
        "model.decoder_layers=1", "model.denoiser_layers=1", "model.time_embedding_dim=8", "schedule.hidden=16",
        "train.batch_size=64", "train.steps=10", "train.warmup_steps=0", "train.log_every=5", "train.validate_every=10",
        "train.checkpoint_every=10", "train.validation_batches=2", "sample.batch_size=256"]


@pytest.fixture(scope="session")
def tiny_file(tmp_path_factory) -> Path:
    """2000 toy events for fast training tests."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.h5"
    toy.generate_file(path, 2000, seed=11)
    return path


@pytest.fixture
def tiny_options():
    """Options of a very small model (fast to compile); extra overrides may be passed."""
    from lvd import config

    def make(*overrides: str, kind: str = "lvd"):
        return config.load_options(None, [*TINY, f"model.kind={kind}", *overrides], defaults=config.small())

    return make


@pytest.fixture(scope="session")
def tiny_run(tiny_file, tmp_path_factory) -> Path:
    """A tiny LVD trained for 10 steps on ``tiny_file``, shared read-only by the unfolding tests
    (copy it before modifying)."""
    from lvd import config
    from lvd.training.loop import train

    opts = config.load_options(None, TINY, defaults=config.small())
    return train(opts, tiny_file, runs_dir=tmp_path_factory.mktemp("runs")).run_dir


def assert_physical(unfolded: dict) -> None:
    """What `lvd unfold` writes is physical: exactly the six decay products, each an on-shell four-vector
    (E² = p² + m² to float32 precision) at its fixed physical mass, all finite."""
    import numpy as np
    from tolerance import tolerance

    from lvd import physics

    assert set(unfolded) == set(physics.DECAY_PRODUCTS)
    for i, name in enumerate(physics.DECAY_PRODUCTS):
        f = {k: np.asarray(v, np.float64) for k, v in unfolded[name].items()}
        assert all(np.isfinite(v).all() for v in f.values()), name
        np.testing.assert_array_equal(f["mass"], np.float32(physics.DAUGHTER_MASS[i]))
        p2 = (f["pt"] * np.cosh(f["eta"])) ** 2
        # float32 storage rounds E, pT and η by ε/2 each: E² by ε, (pT cosh η)² by ε + |η| ε (tanh ≤ 1), so
        # |E² − p² − m²| ≤ (2 + |η|) ε (p² + m²), a bound (measured up to 0.96 of it, |η| ≤ 12). An energy off
        # shell by the b mass alone is off by 23 GeV²: 10³ times the tolerance at pT = 100 GeV (η = 0), 10x at 1 TeV.
        off = np.abs(f["energy"] ** 2 - p2 - f["mass"] ** 2)
        bound = tolerance(np.float32, scale=(2 + np.abs(f["eta"])) * (p2 + f["mass"] ** 2))
        assert (off <= bound).all(), (name, float(np.max(off / np.maximum(bound, 1e-300))))
    q1, q2 = unfolded["q1"]["pt"], unfolded["q2"]["pt"]
    assert (q1 >= q2).all(), "q1 is the harder light quark"
