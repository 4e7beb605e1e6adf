"""The README's commands, run as written: in an empty folder, with its relative paths.

The command lines are read from README.md itself, so a README that drifts from what works fails here. Only the
training budget is shrunk (key=value overrides appended to `lvd train`, as a user would); everything else is
the README's text.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks(heading: str) -> list[list[str]]:
    """The command lines (comments stripped, split like a shell) of the ```bash blocks under ``heading``."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and heading in line)
    commands, inside = [], False
    for line in lines[start + 1:]:
        if line.startswith("#") and not inside:
            break  # the next section
        if line.startswith("```"):
            inside = line.startswith("```bash") and not inside
            continue
        if inside and line.strip():
            commands.append(shlex.split(line, comments=True))
    return commands


def test_readme_delphes_to_hepdata_as_written(toy_for_readme, tmp_path, monkeypatch, run_cli):
    """"From a Delphes file to a HEPData record": five commands, relative paths, `-o results` (which once nested
    the HEPData folder in results/results and failed)."""
    pytest.importorskip("hepdata_lib", reason="the [hep] extra is not installed")
    import root_files as rf
    from conftest import TINY

    commands = bash_blocks("From a Delphes file to a HEPData record")
    assert [c[:2] for c in commands] == [["lvd", "convert"], ["lvd", "convert"], ["lvd", "train"],
                                         ["lvd", "unfold"], ["lvd", "histogram"]]
    monkeypatch.chdir(tmp_path)
    data, plan = toy_for_readme
    for c in commands[:2]:  # the Delphes files the README converts, written from toy events
        rf.write_delphes(Path(c[3]), data, plan, seed=len(c[3]))
    for c in commands:
        # the training-time physics monitor (its own sampler compile) is tested in test_monitor.py, not here
        args = c[1:] + ([*TINY, "train.physics_events=0"] if c[1] == "train" else [])
        code, out, err = run_cli(*args)
        assert code == 0, f"{' '.join(c)}: {err[-1500:]}"
    results = Path("results")
    assert (results / "histograms.root").is_file() and (results / "hepdata.tar.gz").is_file()
    assert (results / "hepdata" / "submission.yaml").is_file() and not (results / "results").exists()
    summary = json.loads((results / "histograms.json").read_text())
    assert summary["hepdata_valid"] is True
    assert not list(tmp_path.glob(".results.*"))  # no staging folder left behind


def test_readme_main_command_quick_form_in_an_empty_folder(tmp_path, monkeypatch, run_cli):
    """The main command's short form, `lvd demo --quick` (the shipped model unfolds fresh events), from an empty
    folder with the default (relative) output folder."""
    main = bash_blocks("Two commands")[0]
    assert main[-2:] == ["lvd", "demo"], main
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("demo", "--quick")
    assert code == 0, err[-2000:]
    m = json.loads((tmp_path / "lvd-demo" / "report" / "metrics.json").read_text())
    assert m["source"]["n_events"] == 2000 and m["source"]["samples_per_event"] == 4
    # the shipped model's masses are sharp peaks in the right place (a model that had not converged, or a broken
    # shipped checkpoint, gives W1 of tens of GeV)
    obs = m["observables"]
    for name in ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep"):
        assert obs[name]["distances"]["unfolded"]["wasserstein"]["value"] < 3.0, name
    assert abs(obs["m_t_had"]["peak"]["unfolded"] - 172.5) < 2.0
    assert abs(obs["m_W_had"]["peak"]["unfolded"] - 80.4) < 1.5


@pytest.fixture(scope="module")
def toy_for_readme(tiny_file):
    """Toy events as the Delphes files' content: every tenth event fails a cut or is not semi-leptonic."""
    import root_files as rf

    from lvd.data.schema import read_events

    data = read_events(tiny_file, require_truth=True)
    return data, rf.make_plan(data.n_events, seed=3)


def test_every_module_the_readme_layout_names_exists():
    """The README's layout block names folders and, within them, files: each must exist where it says."""
    import re

    text = README.read_text()
    start = text.index("## Layout")
    block = text[text.index("```", start) + 3:text.index("```", text.index("```", start) + 3)]
    root = README.parent
    folder, named = None, 0
    for line in block.splitlines():
        head = line.split()[0] if line.strip() and not line.startswith(" ") else None
        if head is not None:
            assert (root / head).exists(), head
            folder = root / head if (root / head).is_dir() else (root / head).parent
            named += 1
        described = line[len(head):] if head is not None else line
        for name in re.findall(r"([\w/]+\.(?:py|sh))", described):
            candidates = [folder / name, *(p / name for p in folder.iterdir() if p.is_dir())]
            assert any(c.exists() for c in candidates), f"{name} (under {folder.relative_to(root)})"
            named += 1
        for sub in re.findall(r"\b(\w+)/(?=[\s,)]|$)", described):
            assert (folder / sub).is_dir() or (folder.parent / sub).is_dir(), f"{sub}/ (near {folder.relative_to(root)})"
    assert named > 20, named  # the block was found and read
