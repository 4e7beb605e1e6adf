"""Shared fixtures. Toy files are generated once per session and reused read-only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lvd.data.generate import toy


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
