"""Event files: lossless round trips, atomic writes, and one clear error per malformed input."""

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lvd.data import convert
from lvd.data.merge import merge_files
from lvd.data.schema import EventData, EventWriter, read_events, write_events
from lvd.errors import DataError


def small(toy_file, n=500) -> EventData:
    return read_events(toy_file).take(slice(0, n))


def assert_same(a: EventData, b: EventData):
    assert a.n_events == b.n_events
    np.testing.assert_array_equal(a.mask, b.mask)
    for k in a.source:
        np.testing.assert_array_equal(a.source[k], b.source[k])
    for k in a.met:
        np.testing.assert_array_equal(a.met[k], b.met[k])
    for p in a.truth or {}:
        for k in a.truth[p]:
            np.testing.assert_array_equal(a.truth[p][k], b.truth[p][k])


def test_round_trip_is_lossless(toy_file, tmp_path):
    data = small(toy_file)
    data.weights = np.random.default_rng(0).normal(1, 0.5, data.n_events).astype(np.float32)
    write_events(tmp_path / "x.h5", data)
    back = read_events(tmp_path / "x.h5")
    assert_same(data, back)
    np.testing.assert_array_equal(back.weights, data.weights)
    assert back.attrs["lvd_format"] == 1 and back.attrs["n_events"] == data.n_events
    assert back.attrs["cutflow"] == data.attrs["cutflow"]  # nested attrs survive (as JSON)


def test_writer_is_atomic_on_failure(toy_file, tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), EventWriter(out) as w:
        w.append(small(toy_file, 10))
        raise RuntimeError("crash in the middle")
    assert list(tmp_path.iterdir()) == []


def test_writer_never_replaces_a_good_file_on_failure(toy_file, tmp_path):
    out = tmp_path / "out.h5"
    write_events(out, small(toy_file, 10))
    before = out.read_bytes()
    with pytest.raises(RuntimeError), EventWriter(out) as w:
        w.append(small(toy_file, 20))
        raise RuntimeError("crash")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


# --- malformed inputs: each gives one line naming file, dataset and (first bad) event --------------

def _copy(toy_file, tmp_path, name="bad.h5"):
    path = tmp_path / name
    write_events(path, small(toy_file, 200))
    return path


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _replace(f, name, data):
    del f[name]
    f[name] = data


CASES = {
    "missing_group": (lambda f: f.__delitem__("INPUTS/Met"), ["INPUTS/Met/met", "missing"]),
    "missing_feature": (lambda f: f.__delitem__("INPUTS/Source/eta"), ["INPUTS/Source/eta", "missing"]),
    "wrong_shape": (lambda f: _replace(f, "INPUTS/Source/pt", np.zeros((200, 7), np.float32)),
                    ["INPUTS/Source/pt", "shape (200, 7)", "(200, 11)"]),
    "nan_in_real_entry": (lambda f: f["INPUTS/Source/phi"].__setitem__((17, 0), np.nan),
                          ["INPUTS/Source/phi", "NaN/inf", "event 17", "object 0"]),
    "inf_in_met": (lambda f: f["INPUTS/Met/met"].__setitem__(42, np.inf), ["INPUTS/Met/met", "event 42"]),
    "nan_in_truth": (lambda f: f["TRUTH/neutrino/eta"].__setitem__(5, np.nan), ["TRUTH/neutrino/eta", "event 5"]),
    "no_real_object": (lambda f: f["INPUTS/Source/MASK"].__setitem__(33, np.zeros(11, bool)),
                       ["INPUTS/Source/MASK", "event 33", "no real object"]),
    "unknown_version": (lambda f: f.attrs.__setitem__("lvd_format", 7), ["lvd_format", "7"]),
    "wrong_dtype_mask": (lambda f: _replace(f, "INPUTS/Source/MASK", np.ones((200, 11), np.float32)),
                         ["INPUTS/Source/MASK", "dtype float32", "bool"]),
    "wrong_dtype_string": (lambda f: _replace(f, "INPUTS/Met/phi", np.array(["x"] * 200, dtype="S1")),
                           ["INPUTS/Met/phi", "dtype"]),
    "zero_events": (lambda f: _replace(f, "INPUTS/Source/MASK", np.zeros((0, 11), bool)), ["no events"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_is_one_clear_error(case, toy_file, tmp_path, run_cli):
    path = _copy(toy_file, tmp_path)
    edit, expected = CASES[case]
    _edit(path, edit)
    with pytest.raises(DataError) as e:
        read_events(path, require_truth=True)
    msg = str(e.value)
    assert str(path) in msg
    for piece in expected:
        assert piece in msg, (piece, msg)
    code, out, err = run_cli("inspect", path)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and str(path) in err


def test_nan_in_padding_is_fine(toy_file, tmp_path):
    path = _copy(toy_file, tmp_path)
    mask = read_events(path).mask
    i, j = np.argwhere(~mask)[0]
    _edit(path, lambda f: f["INPUTS/Source/pt"].__setitem__((i, j), np.nan))
    read_events(path)


def test_empty_file(tmp_path, run_cli):
    path = tmp_path / "empty.h5"
    path.touch()
    with pytest.raises(DataError, match="empty file"):
        read_events(path)
    with h5py.File(tmp_path / "nogroups.h5", "w"):
        pass
    with pytest.raises(DataError, match="empty file"):
        read_events(tmp_path / "nogroups.h5")
    assert run_cli("inspect", path)[0] == 2


def test_truncated_file(toy_file, tmp_path, run_cli):
    path = tmp_path / "trunc.h5"
    data = toy_file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="trunc.h5") as e:
        read_events(path)
    assert "truncated" in str(e.value)
    code, _, err = run_cli("inspect", path)
    assert code == 2 and "Traceback" not in err


def test_missing_file(tmp_path, run_cli):
    code, _, err = run_cli("inspect", tmp_path / "nope.h5")
    assert code == 2 and "no such file" in err


def test_console_script_prints_no_traceback(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    exe = shutil.which("lvd") or [sys.executable, "-m", "lvd.cli.main"]
    cmd = [exe, "inspect", str(bad)] if isinstance(exe, str) else [*exe, "inspect", str(bad)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("lvd: error:") and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


# --- original .npz layout ----------------------------------------------------------------------

def test_npz_import_matches_native(toy_file, tmp_path):
    native = small(toy_file, 300)
    convert.write_original_npz(tmp_path / "orig.npz", native)
    w = np.linspace(0.5, 1.5, 300).astype(np.float32)
    np.save(tmp_path / "w.npy", w)
    imported = convert.read_original_npz(tmp_path / "orig.npz", weights=tmp_path / "w.npy")
    np.testing.assert_array_equal(imported.mask, native.mask)
    for k in native.source:
        np.testing.assert_array_equal(imported.source[k], native.source[k])
    for k in native.met:
        np.testing.assert_array_equal(imported.met[k], native.met[k])
    for p in ("b_lep", "lepton", "neutrino", "b_had", "q1", "q2"):
        for k in ("pt", "eta", "phi"):
            np.testing.assert_allclose(imported.truth[p][k], native.truth[p][k], rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(imported.weights, w)


def test_npz_cli_and_errors(toy_file, tmp_path, run_cli):
    native = small(toy_file, 100)
    convert.write_original_npz(tmp_path / "orig.npz", native)
    code, _, err = run_cli("convert", "npz", tmp_path / "orig.npz", tmp_path / "conv.h5")
    assert code == 0, err
    assert read_events(tmp_path / "conv.h5").n_events == 100
    with np.load(tmp_path / "orig.npz") as z:
        arrays = {k: z[k] for k in z.files}
    broken = dict(arrays)
    del broken["met_features"]
    np.savez(tmp_path / "nomet.npz", **broken)
    code, _, err = run_cli("convert", "npz", tmp_path / "nomet.npz", tmp_path / "o.h5")
    assert code == 2 and "met_features" in err and not (tmp_path / "o.h5").exists()
    np.save(tmp_path / "short.npy", np.ones(7))
    code, _, err = run_cli("convert", "npz", tmp_path / "orig.npz", tmp_path / "o.h5", "-w", tmp_path / "short.npy")
    assert code == 2 and "(100,)" in err and not (tmp_path / "o.h5").exists()
    nan = dict(arrays)
    nan["parton_features"] = nan["parton_features"].copy()
    nan["parton_features"][12, 3] = np.nan
    np.savez(tmp_path / "nan.npz", **nan)
    with pytest.raises(DataError, match="parton_features.*event 12"):
        convert.read_original_npz(tmp_path / "nan.npz")


# --- merging shards ------------------------------------------------------------------------------

def test_merge_is_lossless(toy_file, tmp_path, run_cli):
    full = small(toy_file, 600)
    parts = [full.take(slice(0, 250)), full.take(slice(250, 600))]
    for i, p in enumerate(parts):
        p.attrs = {**p.attrs, "seed": i, "cutflow": {"generated": 10 + i, "one_lepton": 5, "min_jets": 3, "min_btags": 2}}
        write_events(tmp_path / f"s{i}.h5", p)
    code, _, err = run_cli("merge", tmp_path / "m.h5", tmp_path / "s0.h5", tmp_path / "s1.h5")
    assert code == 0, err
    merged = read_events(tmp_path / "m.h5")
    assert_same(full, merged)
    assert merged.attrs["cutflow"]["generated"] == 21
    assert [s["seed"] for s in merged.attrs["merged_from"]] == [0, 1]


def test_merge_refuses_incompatible(toy_file, tmp_path):
    a = small(toy_file, 50)
    b = small(toy_file, 50)
    b.truth = None
    write_events(tmp_path / "a.h5", a)
    write_events(tmp_path / "b.h5", b)
    with pytest.raises(DataError, match="differ"):
        merge_files(tmp_path / "m.h5", [tmp_path / "a.h5", tmp_path / "b.h5"])
    assert not (tmp_path / "m.h5").exists()
