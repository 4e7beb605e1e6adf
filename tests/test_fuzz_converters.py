"""Fuzzing the converters: malformed variants of valid Delphes, NanoAOD and SPANet files, each run through
``lvd convert`` in-process. Every outcome is either a refusal (exit status 2, one line on stderr naming the
input file, no traceback, no numpy repr, nothing left in the output folder) or a conversion whose output
lvd's reader accepts and which holds no NaN/inf.

Corpus: 810 cases (CORPUS_SIZE: Delphes 198, NanoAOD 232, SPANet 380); the default run takes the
REPRESENTATIVE 65 (every kind of damage of each format on two fields, and the NaNs that once slipped
through), ``-m slow`` the other 745 (about 5 minutes on a loaded 2-core machine).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("uproot", reason="the [hep] extra (uproot) is not installed")

import awkward as ak  # noqa: E402
import root_files as rf  # noqa: E402

from lvd.data.schema import read_events  # noqa: E402

N_EVENTS = 150
CHUNK = "40"  # several chunks: entry numbers in the messages must count from the file's start
TARGET = 77  # the entry the value changes go to (or the first entry after it holding an object)

# what each reader needs (the default names); "ints": those the valid files store as integers (no NaN there)
NEEDED = {
    "delphes": {
        "collections": [f"Jet.{b}" for b in ("PT", "Eta", "Phi", "Mass", "BTag")]
                       + [f"{c}.{b}" for c in ("Electron", "Muon") for b in ("PT", "Eta", "Phi", "Charge")]
                       + [f"Particle.{b}" for b in ("PID", "M1", "PT", "Eta", "Phi", "Mass")],
        "per_event": ["MissingET.MET", "MissingET.Phi", "Event.Weight"],
        "ints": ["Jet.BTag", "Particle.PID", "Particle.M1"],
    },
    "nanoaod": {
        "collections": [f"Jet_{b}" for b in ("pt", "eta", "phi", "mass", "btagDeepFlavB", "jetId")]
                       + [f"Electron_{b}" for b in ("pt", "eta", "phi", "mass", "charge", "cutBased")]
                       + [f"Muon_{b}" for b in ("pt", "eta", "phi", "mass", "charge", "tightId", "pfRelIso04_all")]
                       + [f"GenPart_{b}" for b in ("pdgId", "genPartIdxMother", "pt", "eta", "phi", "mass")],
        "per_event": ["MET_pt", "MET_phi", "genWeight"],
        "ints": ["Jet_jetId", "Electron_cutBased", "Muon_tightId", "Electron_charge", "Muon_charge",
                     "GenPart_pdgId", "GenPart_genPartIdxMother"],
    },
}
TREE = {"delphes": "Delphes", "nanoaod": "Events"}
SPANET_DATASETS = ([f"INPUTS/Momenta/{k}" for k in ("MASK", "pt", "eta", "mass", "btag", "sin_phi", "cos_phi",
                                                    "etag", "utag", "qtag")]
                   + [f"INPUTS/Met/{k}" for k in ("MET", "sin_phi", "cos_phi")]
                   + [f"TRUTH/{sub}/{k}" for sub in rf.SPANET_NAMES.values()
                      for k in ("pt", "eta", "phi", "mass", "pdgid")])
BAD_VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": 1e300}
TRUNCATE = (16, 300, 0.25, 0.5, 0.75, 0.9, 0.99, -1)  # bytes kept: a count, a fraction, all but the last


@dataclass(frozen=True)
class Case:
    fmt: str  # delphes, nanoaod, spanet
    kind: str  # what is done to the valid file
    target: str = ""  # the branch or dataset it is done to
    arg: object = None

    @property
    def id(self) -> str:
        return "-".join(str(x) for x in (self.fmt, self.kind, self.target, self.arg) if x not in ("", None))


def _root_cases(fmt: str) -> list[Case]:
    need = NEEDED[fmt]
    floats = [b for b in need["collections"] + need["per_event"] if b not in need["ints"]]
    return ([Case(fmt, "drop", b) for b in need["collections"] + need["per_event"]]
            + [Case(fmt, "value", b, v) for b in floats for v in BAD_VALUES]
            + [Case(fmt, "all_nan", b) for b in floats]
            + [Case(fmt, "dtype", b) for b in need["collections"] + need["per_event"]]
            + [Case(fmt, "one_per_entry", b) for b in need["collections"]]
            + [Case(fmt, "extra_object", b) for b in need["collections"]]
            + [Case(fmt, "as_collection", b, n) for b in need["per_event"] for n in (1, 2, "some_empty")]
            + [Case(fmt, "truncate", arg=k) for k in TRUNCATE]
            + [Case(fmt, k) for k in ("zero_entries", "zero_bytes", "garbage", "no_branches")])


def _spanet_cases() -> list[Case]:
    floats = [d for d in SPANET_DATASETS if not d.endswith(("MASK", "pdgid"))]
    return ([Case("spanet", "drop", d) for d in SPANET_DATASETS]
            + [Case("spanet", "value", d, v) for d in floats for v in BAD_VALUES]
            + [Case("spanet", "padded_nan", d) for d in floats if d.startswith("INPUTS/Momenta")]
            + [Case("spanet", "dtype", d) for d in SPANET_DATASETS]
            + [Case("spanet", "extra_row", d) for d in SPANET_DATASETS]
            + [Case("spanet", "flattened", d) for d in SPANET_DATASETS]
            + [Case("spanet", "group", d) for d in SPANET_DATASETS]
            + [Case("spanet", "truncate", arg=k) for k in TRUNCATE]
            + [Case("spanet", k) for k in ("zero_entries", "zero_bytes", "garbage", "empty_event")])


CASES = _root_cases("delphes") + _root_cases("nanoaod") + _spanet_cases()
# the first and the last case of each kind of damage of each format: the kinds take different code paths, the
# fields of one kind mostly the same (jets come first in each list, per-event values or truth last); and the
# NaNs that once slipped through: MET, an isolation, a truth value
_BY_KIND = [[c for c in CASES if (c.fmt, c.kind) == k] for k in dict.fromkeys((c.fmt, c.kind) for c in CASES)]
_ALSO = [Case("delphes", "value", "MissingET.MET", "nan"), Case("delphes", "value", "Particle.Eta", "inf"),
         Case("nanoaod", "value", "MET_phi", "nan"), Case("nanoaod", "value", "Muon_pfRelIso04_all", "nan"),
         Case("spanet", "value", "INPUTS/Met/MET", "nan")]
REPRESENTATIVE = list(dict.fromkeys([*(c for cases in _BY_KIND for c in (cases[0], cases[-1])), *_ALSO]))
CORPUS_SIZE = len(CASES)  # 810: Delphes 198, NanoAOD 232, SPANet 380; the default run takes 65 of them

# a warning is a further line on stderr
pytestmark = pytest.mark.filterwarnings("error")


# --- the valid files and their malformed variants ---------------------------------------------------

@pytest.fixture(scope="module")
def valid(tiny_file, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """format -> (valid file, its branches or datasets by name)."""
    data = read_events(tiny_file, require_truth=True).take(slice(0, N_EVENTS))
    plan = rf.make_plan(N_EVENTS, seed=5)
    folder = tmp_path_factory.mktemp("valid")
    paths = {fmt: folder / f"{fmt}.{'h5' if fmt == 'spanet' else 'root'}" for fmt in ("delphes", "nanoaod", "spanet")}
    rf.write_delphes(paths["delphes"], data, plan, seed=1, chunk=50)  # several baskets
    rf.write_nanoaod(paths["nanoaod"], data, plan, seed=2)
    rf.write_spanet(paths["spanet"], data)
    return {fmt: (p, _read_h5(p) if fmt == "spanet" else rf.read_tree(p, TREE[fmt])) for fmt, p in paths.items()}


def _make(case: Case, valid: Path, contents: dict, dst: Path) -> None:
    """Write ``case``'s variant of the valid file ``valid`` (``contents``: its branches or datasets) to ``dst``."""
    raw = valid.read_bytes()
    if case.kind == "truncate":
        keep = int(case.arg * len(raw)) if isinstance(case.arg, float) else case.arg % len(raw)
        dst.write_bytes(raw[:keep])
    elif case.kind == "zero_bytes":
        dst.write_bytes(b"")
    elif case.kind == "garbage":
        dst.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif case.fmt == "spanet":
        _write_h5(dst, _SPANET[case.kind](contents, case))
    else:
        rf.write_tree(dst, TREE[case.fmt], _ROOT[case.kind](contents, case))


# ROOT variants: branch -> awkward array, changed

def _target_entry(a: ak.Array) -> int:
    """TARGET, or the first entry after it holding an object."""
    if a.ndim == 1:
        return TARGET
    return TARGET + int(np.argmax(np.asarray(ak.num(a))[TARGET:] > 0))


def _set_value(a: ak.Array, value: float, everywhere: bool = False) -> ak.Array:
    if a.ndim == 1:
        v = np.array(a, np.float64)  # a copy: the valid contents are shared by the cases
        v[slice(None) if everywhere else TARGET] = value
        return ak.Array(v)
    counts, v = np.asarray(ak.num(a)), np.array(ak.flatten(a), np.float64)
    v[slice(None) if everywhere else int(np.cumsum(counts)[_target_entry(a) - 1])] = value
    return ak.unflatten(v, counts)


def _other_dtype(a: ak.Array) -> ak.Array:
    """Floats as integers (a plausible but lossy type: accepted), integers or bools as floats (refused where
    they code ids, masks or indices)."""
    kind = np.asarray(ak.flatten(a, axis=None)).dtype.kind
    return ak.values_astype(a, np.int32 if kind == "f" else np.float32)


def _extra_object(a: ak.Array) -> ak.Array:
    counts, v = np.asarray(ak.num(a)), np.asarray(ak.flatten(a))
    e = _target_entry(a)
    v = np.insert(v, int(np.cumsum(counts)[e]), v[0])
    counts = counts.copy()
    counts[e] += 1
    return ak.unflatten(v, counts)


def _as_collection(a: ak.Array, n) -> ak.Array:
    a = ak.flatten(a, axis=None) if a.ndim > 1 else a  # Delphes' MET already is a one-object collection
    if n == "some_empty":
        counts = np.ones(len(a), np.int64)
        counts[TARGET] = 0
        return ak.unflatten(np.delete(np.asarray(a), TARGET), counts)
    return ak.unflatten(np.repeat(np.asarray(a), n), np.full(len(a), n))


def _drop(b, c):
    return {k: v for k, v in b.items() if k != c.target}


_ROOT = {
    "drop": _drop,
    "value": lambda b, c: {**b, c.target: _set_value(b[c.target], BAD_VALUES[c.arg])},
    "all_nan": lambda b, c: {**b, c.target: _set_value(b[c.target], np.nan, everywhere=True)},
    "dtype": lambda b, c: {**b, c.target: _other_dtype(b[c.target])},
    "one_per_entry": lambda b, c: {**_drop(b, c), c.target: ak.fill_none(ak.firsts(b[c.target]), 0)},
    "extra_object": lambda b, c: {**b, c.target: _extra_object(b[c.target])},
    "as_collection": lambda b, c: {**b, c.target: _as_collection(b[c.target], c.arg)},
    "zero_entries": lambda b, c: {k: v[:0] for k, v in b.items()},
    "no_branches": lambda b, c: {"Unrelated": ak.Array(np.zeros(N_EVENTS))},
}


# SPANet variants: dataset -> numpy array (a dict for a group), changed

def _read_h5(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: out.update({name: obj[()]}) if isinstance(obj, h5py.Dataset) else None)
    return out


def _write_h5(path: Path, datasets: dict[str, np.ndarray | dict]) -> None:
    with h5py.File(path, "w") as f:
        for name, a in datasets.items():
            if isinstance(a, dict):
                f.create_group(name).update(a)
            else:
                f[name] = a


def _spanet_value(d, c, padded=False):
    a = d[c.target].astype(np.float64)  # a copy: the valid contents are shared by the cases
    if a.ndim == 1:
        a[TARGET] = BAD_VALUES[c.arg]
    elif padded:  # the last slot of the first event from TARGET on that has a padded one
        a[TARGET + int(np.argmax(~d["INPUTS/Momenta/MASK"][TARGET:, -1])), -1] = np.nan
    else:
        a[TARGET, 0] = BAD_VALUES[c.arg]
    return {**d, c.target: a}


def _spanet_dtype(a: np.ndarray) -> np.ndarray:
    """Text where numbers belong; floats where a mask or pdg ids belong."""
    return a.astype(np.float32) if a.dtype.kind in "biu" else a.astype("S8")


_SPANET = {
    "drop": lambda d, c: {k: v for k, v in d.items() if k != c.target},
    "value": _spanet_value,
    "padded_nan": lambda d, c: _spanet_value(d, c, padded=True),
    "dtype": lambda d, c: {**d, c.target: _spanet_dtype(d[c.target])},
    "extra_row": lambda d, c: {**d, c.target: np.concatenate([d[c.target], d[c.target][:1]])},
    "flattened": lambda d, c: {**d, c.target: d[c.target].reshape(-1) if d[c.target].ndim > 1
                               else d[c.target][:, None]},
    "group": lambda d, c: {**{k: v for k, v in d.items() if k != c.target}, c.target: {"x": d[c.target]}},
    "zero_entries": lambda d, c: {k: v[:0] for k, v in d.items()},
    "empty_event": lambda d, c: {**d, "INPUTS/Momenta/MASK": np.where(np.arange(N_EVENTS)[:, None] == TARGET,
                                                                       False, d["INPUTS/Momenta/MASK"])},
}


# --- the runs -----------------------------------------------------------------------------------------

NUMPY_REPR = re.compile(r"np\.\w+\(")


def _check(case: Case, inp: Path, out: Path, code: int, err: str) -> None:
    if code == 0:
        data = read_events(out, require_truth=True)
        arrays = [*data.source.values(), *data.met.values(), *(data.weights,) * (data.weights is not None),
                  *(v for feats in data.truth.values() for v in feats.values())]
        assert all(np.isfinite(a).all() for a in arrays), case.id
        assert sorted(p.name for p in out.parent.iterdir()) == [out.name], case.id
        return
    lines = err.strip().splitlines()
    assert code == 2, (case.id, code, err)
    assert len(lines) == 1 and lines[0].startswith("lvd: error: "), (case.id, err)
    assert str(inp) in lines[0] and "Traceback" not in err and not NUMPY_REPR.search(err), (case.id, err)
    assert not list(out.parent.iterdir()), (case.id, err)  # neither the output nor a .partial file


def _run(case: Case, valid: dict[str, tuple[Path, dict]], tmp_path: Path, run_cli) -> None:
    path, contents = valid[case.fmt]
    inp = tmp_path / path.name
    _make(case, path, contents, inp)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "converted.h5"
    flags = rf.SPANET_FLAGS if case.fmt == "spanet" else []
    code, _, err = run_cli("convert", case.fmt, inp, out, *flags, "--chunk", CHUNK)
    _check(case, inp, out, code, err)


@pytest.mark.parametrize("case", REPRESENTATIVE, ids=lambda c: c.id)
def test_representative_malformed_inputs(case, valid, tmp_path, run_cli):
    _run(case, valid, tmp_path, run_cli)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c not in REPRESENTATIVE], ids=lambda c: c.id)
def test_every_malformed_input(case, valid, tmp_path, run_cli):
    _run(case, valid, tmp_path, run_cli)


def test_the_valid_files_convert(valid, tmp_path, run_cli):
    """The corpus's starting points are valid: a refusal of a variant is the variant's doing."""
    for fmt, (path, _) in valid.items():
        out = tmp_path / fmt / "converted.h5"
        code, _, err = run_cli("convert", fmt, path, out, *(rf.SPANET_FLAGS if fmt == "spanet" else []),
                               "--chunk", CHUNK)
        assert code == 0, err
        assert read_events(out, require_truth=True).n_events > N_EVENTS // 2


def test_corpus_size_is_the_documented_one():
    assert (CORPUS_SIZE, len(REPRESENTATIVE)) == (810, 65)
