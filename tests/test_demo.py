"""The README's main command, in its quick forms: the whole chain runs and produces a sensible report."""

import json


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


def test_demo_shipped_model_quick(tmp_path, run_cli):
    """The default demo: the shipped model unfolds fresh events and its masses are sharp peaks in the right place
    (a model that had not converged, or a broken shipped checkpoint, gives W1 of tens of GeV)."""
    code, out, err = run_cli("demo", "--quick", "--out", tmp_path / "demo")
    assert code == 0, err[-2000:]
    m = json.loads((tmp_path / "demo" / "report" / "metrics.json").read_text())
    assert m["source"]["n_events"] == 2000 and m["source"]["samples_per_event"] == 4
    obs = m["observables"]
    for name in ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep"):
        assert obs[name]["distances"]["unfolded"]["wasserstein"]["value"] < 3.0, name
    assert abs(obs["m_t_had"]["peak"]["unfolded"] - 172.5) < 2.0
    assert abs(obs["m_W_had"]["peak"]["unfolded"] - 80.4) < 1.5
