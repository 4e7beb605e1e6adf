"""Shared fixtures. Toy files are generated once per session and reused read-only."""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import pytest

from lvd.data.generate import toy


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


TINY = ["model.hidden=16", "model.num_heads=2", "model.detector_layers=1", "model.encoder_layers=1",
        "model.decoder_layers=1", "model.denoiser_layers=1", "model.time_embedding_dim=8", "schedule.hidden=16",
        "train.batch_size=64", "train.warmup_steps=5", "train.log_every=5", "train.validate_every=10",
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
