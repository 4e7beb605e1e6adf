"""The README's main command, in its quick forms: the whole chain runs and produces a sensible report."""

import json

import pytest


@pytest.mark.slow  # ~110 s on 2 cores: the from-scratch chain; its parts (train, unfold, evaluate) are tested apart
def test_demo_train_quick(tmp_path, run_cli):
    code, out, err = run_cli("demo", "--train", "--quick", "--out", tmp_path / "demo")
    assert code == 0, err[-2000:]
    report = tmp_path / "demo" / "report"
    assert (report / "report.md").exists() and (report / "plots" / "mass_peaks.png").exists()
    m = json.loads((report / "metrics.json").read_text())
    assert m["source"]["n_events"] == 1000 and m["source"]["samples_per_event"] == 4
    # even a minute of training puts the hadronic top peak in the right neighbourhood
    assert abs(m["observables"]["m_t_had"]["peak"]["unfolded"] - 172.5) < 20
    assert "report:" in err + out


# The default (shipped-model) demo's quick form runs as the README writes it: tests/test_readme.py.
