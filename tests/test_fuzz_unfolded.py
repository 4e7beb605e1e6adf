"""Malformed unfolded files against the commands that read them: `histogram`, `measure top-mass`, `reweight`.

Every variant is derived from one valid unfolded file (drop each dataset and group, NaN/inf, negative pT or
mass, another K, fewer rows, a wrong dtype, attributes of the wrong type or content, truncation). Each command
either refuses it in one line that names the file and the field, with exit status 2, no traceback and no
output left behind, or accepts it and writes a result without NaN. A defect of an attribute goes to the command
that reads it (the likelihood method of `measure top-mass` for the top-mass prior). Corpus: 106 variants and 3
truncations, 303 command runs; the default run takes one variant of each kind (31 kinds and the truncations,
78 runs), the whole corpus is `pytest -m slow`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from lvd import physics
from lvd.data.prior import PRIOR_ATTR, PRIOR_HISTOGRAMS_ATTR, truth_histograms
from lvd.data.schema import read_events, write_events

FEATURES = ("pt", "eta", "phi", "mass")


@dataclass(frozen=True)
class Variant:
    name: str  # kind/detail; the kind picks the default-run subset
    change: Callable[[h5py.File], None]
    field: str  # what the refusal must name; "" for the one variant that must be accepted
    commands: tuple[str, ...] = ("histogram", "measure", "reweight")  # an attribute: the command that reads it


def _set(path: str, fn: Callable[[np.ndarray], np.ndarray]):
    def change(f: h5py.File) -> None:
        a = fn(f[path][()])
        del f[path]
        f[path] = a

    return change


def _drop(path: str):
    def change(f: h5py.File) -> None:
        del f[path]

    return change


def _attr(name: str, value):
    def change(f: h5py.File) -> None:
        f.attrs[name] = value

    return change


def _stated_mass(value):
    """The attribute ``top_mass`` as the only statement of the generated mass (no per-event GENERATOR values)."""

    def change(f: h5py.File) -> None:
        if "GENERATOR" in f:
            del f["GENERATOR"]
        f.attrs["top_mass"] = value

    return change


def _at(value: float, row: int = 3, col: int = 1):
    def fn(a: np.ndarray) -> np.ndarray:
        a = a.copy()
        a[(row, col)[:a.ndim]] = value
        return a

    return fn


READS_PRIOR, READS_MASS_PRIOR, READS_TOP_MASS = ("reweight",), ("measure_likelihood",), ("measure",)


def variants() -> list[Variant]:
    out = [Variant("drop_group/UNFOLDED", _drop("UNFOLDED"), "UNFOLDED")]
    for p in physics.DECAY_PRODUCTS:
        out.append(Variant(f"drop_group/{p}", _drop(f"UNFOLDED/{p}"), p))
        for f in FEATURES:
            ds = f"UNFOLDED/{p}/{f}"
            out += [Variant(f"drop_dataset/{p}/{f}", _drop(ds), ds),
                    Variant(f"nan/{p}/{f}", _set(ds, _at(np.nan)), ds)]
        ds = f"UNFOLDED/{p}/pt"
        out += [Variant(f"inf/{p}", _set(ds, _at(np.inf)), ds),
                Variant(f"negative_pt/{p}", _set(ds, _at(-30.0)), ds),
                Variant(f"negative_mass/{p}", _set(f"UNFOLDED/{p}/mass", _at(-1.0)), f"UNFOLDED/{p}/mass"),
                Variant(f"other_k/{p}", _set(ds, lambda a: a[:, :-1]), ds),
                Variant(f"fewer_rows/{p}", _set(ds, lambda a: a[:-5]), ds),
                Variant(f"text_dtype/{p}", _set(ds, lambda a: a.astype("S8")), ds)]
    out += [
        Variant("energy_dropped/b_lep", _drop("UNFOLDED/b_lep/energy"), ""),  # not read (built from pT, η, φ, m)
        Variant("weights/nan", _set("WEIGHTS/weight", _at(np.nan)), "WEIGHTS/weight"),
        Variant("weights/negative_total", _set("WEIGHTS/weight", lambda a: -np.abs(a)), "weights"),
        Variant("prior_hist/not_json", _attr(PRIOR_HISTOGRAMS_ATTR, "{not json"), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("prior_hist/nan_counts", _attr(PRIOR_HISTOGRAMS_ATTR, json.dumps(
            {"pt_t_had": {"edges": [0, 100, 200], "counts": [float("nan"), 1.0]}})), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("prior_hist/zero_counts", _attr(PRIOR_HISTOGRAMS_ATTR, json.dumps(
            {"pt_t_had": {"edges": [0, 100, 200], "counts": [0.0, 0.0]}})), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("prior_hist/wrong_length", _attr(PRIOR_HISTOGRAMS_ATTR, json.dumps(
            {"pt_t_had": {"edges": [0, 100, 200], "counts": [1.0]}})), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("prior_hist/decreasing_edges", _attr(PRIOR_HISTOGRAMS_ATTR, json.dumps(
            {"pt_t_had": {"edges": [200, 100, 0], "counts": [1.0, 1.0]}})), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("prior_hist/a_list", _attr(PRIOR_HISTOGRAMS_ATTR, "[1, 2]"), PRIOR_HISTOGRAMS_ATTR, READS_PRIOR),
        Variant("mass_prior/not_json", _attr(PRIOR_ATTR, "{mass"), PRIOR_ATTR, READS_MASS_PRIOR),
        Variant("mass_prior/nan", _attr(PRIOR_ATTR, json.dumps({"mass": [float("nan")], "width": [1.3]})),
                PRIOR_ATTR, READS_MASS_PRIOR),
        Variant("mass_prior/no_width", _attr(PRIOR_ATTR, json.dumps({"mass": [172.5]})), PRIOR_ATTR, READS_MASS_PRIOR),
        Variant("top_mass/text", _stated_mass("heavy"), "top_mass", READS_TOP_MASS),
        Variant("top_mass/nan", _stated_mass(float("nan")), "top_mass", READS_TOP_MASS),
        Variant("top_mass/negative", _stated_mass(-172.5), "top_mass", READS_TOP_MASS),
    ]
    return out


CORPUS = variants()


def _kind(name: str) -> str:
    """A variant's kind: its name with the particle left out (the same defect in another particle)."""
    return "/".join("*" if part in physics.DECAY_PRODUCTS else part for part in name.split("/"))


KINDS = {_kind(v.name): v for v in reversed(CORPUS)}  # one variant of each kind
TRUNCATE = (0, 1000, 40_000)  # bytes kept: empty, header only, part of the data


@pytest.fixture(scope="module")
def valid_file(tiny_file, tmp_path_factory) -> Path:
    """300 toy events, K = 4 smeared copies of the truth as draws, signed weights, every attribute a command
    reads (training-prior histograms, top-mass prior, generated top mass)."""
    data = read_events(tiny_file, require_truth=True).take(slice(0, 300))
    rng = np.random.default_rng(8)
    k = 4
    data.unfolded = {p: {f: (np.repeat(v[:, None], k, 1) * (1 + 0.03 * rng.normal(size=(len(v), k))) if f == "pt"
                             else np.repeat(v[:, None], k, 1)).astype(np.float32)
                         for f, v in data.truth[p].items() if f != "pdgid"}
                     for p in physics.DECAY_PRODUCTS}
    for p in physics.DECAY_PRODUCTS:  # what lvd unfold writes beside the four features
        u = data.unfolded[p]
        p4 = physics.p4_from_ptetaphim(*(u[f].astype(np.float64) for f in FEATURES))
        u["energy"] = p4[..., 3].astype(np.float32)
    data.weights = np.where(rng.random(data.n_events) < 0.1, -1.0, 1.0).astype(np.float32)
    data.attrs = {**data.attrs, "top_mass": 172.5,
                  PRIOR_HISTOGRAMS_ATTR: json.dumps(truth_histograms(data)),
                  PRIOR_ATTR: json.dumps({"mass": [172.5], "width": [1.32]})}
    path = tmp_path_factory.mktemp("fuzz") / "valid.h5"
    write_events(path, data)
    return path


COMMANDS = {
    "histogram": lambda f, out: ("histogram", f, "--observable", "m_t_had", "--bins", "150:200:10",
                                 "--observable", "pt_t_had", "--bins", "0:400:8", "--bootstrap", "5",
                                 "--formats", "csv", "-o", out / "h"),
    "measure": lambda f, out: ("measure", "top-mass", f, "--bootstrap", "5", "-o", out / "m"),
    "measure_likelihood": lambda f, out: ("measure", "top-mass", f, "--bootstrap", "5", "--method", "likelihood",
                                          "-o", out / "m"),
    "reweight": lambda f, out: ("reweight", f, out / "r.h5", "--iterations", "1"),
}


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.is_file())


def _check(run_cli, path: Path, out: Path, field: str,
           commands: tuple[str, ...] = ("histogram", "measure", "reweight")) -> None:
    for command in commands:
        args = COMMANDS[command]
        target = out / command
        target.mkdir()
        code, stdout, err = run_cli(*args(path, target))
        text = stdout + err
        assert "Traceback" not in text, (command, err)
        if code == 0 and not field:  # accepted where it must be: a result, and no NaN in it
            written = _outputs(target)
            assert written, (command, "exit 0 without output")
            for w in written:
                if w.suffix in (".json", ".csv"):
                    assert "nan" not in w.read_text().lower(), (command, w)
                elif w.suffix == ".h5":
                    from lvd.data.unfolded import read_unfolded

                    read_unfolded(w)  # refuses NaN, negative pT, missing features
            continue
        assert code == 2, (command, code, err)
        assert err.strip().count("\n") == 0, (command, err)
        assert str(path) in err and (field in err), (command, field, err)
        assert not _outputs(target), (command, _outputs(target))


def _variant_file(valid_file: Path, tmp_path: Path, variant: Variant) -> Path:
    path = tmp_path / "variant.h5"
    shutil.copy(valid_file, path)
    with h5py.File(path, "a") as f:
        variant.change(f)
    return path


@pytest.mark.parametrize("variant", list(KINDS.values()), ids=lambda v: v.name)
def test_each_kind_of_malformed_unfolded_file(variant, valid_file, tmp_path, run_cli):
    _check(run_cli, _variant_file(valid_file, tmp_path, variant), tmp_path, variant.field, variant.commands)


@pytest.mark.slow
@pytest.mark.parametrize("variant", CORPUS, ids=lambda v: v.name)
def test_whole_corpus_of_malformed_unfolded_files(variant, valid_file, tmp_path, run_cli):
    _check(run_cli, _variant_file(valid_file, tmp_path, variant), tmp_path, variant.field, variant.commands)


@pytest.mark.parametrize("keep", TRUNCATE)
def test_truncated_unfolded_file(keep, valid_file, tmp_path, run_cli):
    path = tmp_path / "truncated.h5"
    path.write_bytes(valid_file.read_bytes()[:keep])
    _check(run_cli, path, tmp_path, "truncated" if keep else "empty")


def test_the_valid_file_is_accepted_by_every_command(valid_file, tmp_path, run_cli):
    """The base of the corpus is valid: every command accepts it (so refusals above are the variants' doing)."""
    for command, args in COMMANDS.items():
        code, _, err = run_cli(*args(valid_file, tmp_path / command))  # every command, both measure methods
        assert code == 0, (command, err)


def test_corpus_size_is_as_documented():
    assert len(CORPUS) == 106 and len(KINDS) == 31, (len(CORPUS), len(KINDS))


def _refused(run_cli, args, path: Path, needle: str, out: Path) -> None:
    code, _, err = run_cli(*args)
    assert code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert str(path) in err and needle in err, err
    assert not out.exists() or not _outputs(out), _outputs(out)


def test_degenerate_requests_are_refused_and_write_nothing(valid_file, tmp_path, run_cli):
    """The issue's cases outside the corpus: --bootstrap 0 (once NaN errors in every publication file), K = 1
    (once a posterior error of 0 without a word), a one-event file (once "± nan"), and a calibration sample that
    states no mass (once refused without naming the file)."""
    out = tmp_path / "out"
    code, _, err = run_cli("histogram", valid_file, "--observable", "m_t_had", "--bins", "150:200:10",
                           "--bootstrap", "0", "-o", out)
    assert code == 2 and "--bootstrap 0" in err and not out.exists(), err

    one_k = tmp_path / "k1.h5"
    shutil.copy(valid_file, one_k)
    with h5py.File(one_k, "a") as f:
        for p in physics.DECAY_PRODUCTS:
            for feat in (*FEATURES, "energy"):
                _set(f"UNFOLDED/{p}/{feat}", lambda a: a[:, :1])(f)
    _refused(run_cli, ("histogram", one_k, "--observable", "m_t_had", "--bins", "150:200:10", "-o", out), one_k,
             "1 sample(s) per event", out)

    data = read_events(valid_file)
    one_event = tmp_path / "one.h5"
    write_events(one_event, data.take(slice(0, 1)))
    _refused(run_cli, ("measure", "top-mass", one_event, "-o", out), one_event, "1 event(s)", out)

    massless = tmp_path / "massless.h5"
    shutil.copy(valid_file, massless)
    with h5py.File(massless, "a") as f:
        if "GENERATOR" in f:
            del f["GENERATOR"]
        del f.attrs["top_mass"]
    _refused(run_cli, ("measure", "top-mass", valid_file, "--calibration", massless, "--calibration", valid_file,
                       "-o", out), massless, "generated top mass", out)
