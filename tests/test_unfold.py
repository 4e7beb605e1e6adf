"""Unfolding: output layout and provenance, per-event seeding, the Python API, the original calling convention."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

import lvd
from lvd.data import convert
from lvd.data.schema import read_events
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_file):
    from conftest import TINY

    from lvd import config

    opts = config.load_options(None, [*TINY, "train.steps=10"], defaults=config.small())
    return train(opts, tiny_file, runs_dir=tmp_path_factory.mktemp("runs"), progress=False)


def test_unfold_writes_samples_inputs_and_provenance(trained, tiny_file, tmp_path, run_cli):
    out = tmp_path / "unfolded.h5"
    code, _, err = run_cli("unfold", trained.run_dir, tiny_file, out, "-k", "3", "--steps", "4", "--sampler", "ddim")
    assert code == 0, err
    data = read_events(out)
    src = read_events(tiny_file)
    assert data.n_events == src.n_events
    np.testing.assert_array_equal(data.mask, src.mask)
    np.testing.assert_array_equal(data.truth["neutrino"]["pt"], src.truth["neutrino"]["pt"])
    assert set(data.unfolded) == {"b_lep", "lepton", "neutrino", "b_had", "q1", "q2",
                                  "W_lep", "W_had", "t_lep", "t_had", "ttbar"}
    for feats in data.unfolded.values():
        for v in feats.values():
            assert v.shape == (src.n_events, 3) and np.isfinite(v).all()
    a = data.attrs
    assert (a["sampler"], a["sampler_steps"], a["samples_per_event"], a["model"]) == ("ddim", 4, 3, "lvd")
    assert "checkpoint" in a and a["checkpoint_step"] == 10


def test_samples_do_not_depend_on_batching(trained, tiny_file, tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    unfold_file(trained.run_dir, tiny_file, a, samples=2, sampler="ancestral", steps=3, batch_size=2000, seed=5)
    unfold_file(trained.run_dir, tiny_file, b, samples=2, sampler="ancestral", steps=3, batch_size=96, seed=5)
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for p in ("neutrino", "t_had"):
            np.testing.assert_allclose(fa[f"UNFOLDED/{p}/pt"][()], fb[f"UNFOLDED/{p}/pt"][()], rtol=1e-5, atol=1e-4)
        # different samples of an event differ; another seed differs
        pt = fa["UNFOLDED/neutrino/pt"][()]
        assert not np.allclose(pt[:, 0], pt[:, 1])


def test_python_api(trained, tiny_file):
    events = read_events(tiny_file).take(slice(0, 50))
    samples = lvd.load(trained.run_dir).sample(events, k=4, steps=3)
    assert samples["t_lep"]["mass"].shape == (50, 4)
    again = lvd.load(trained.run_dir).sample(events, k=4, steps=3)
    np.testing.assert_array_equal(samples["t_lep"]["mass"], again["t_lep"]["mass"])


def test_original_calling_convention_on_npz(tiny_file, tmp_path):
    convert.write_original_npz(tmp_path / "train.npz", read_events(tiny_file).take(slice(0, 600)))
    from conftest import TINY

    cmd = [sys.executable, "train_lvd.py", "small", str(tmp_path / "train.npz"), "-n", "orig",
           "--runs-dir", str(tmp_path / "runs"), "--quiet", *TINY, "train.steps=3"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=__file__.rsplit("/tests/", 1)[0])
    assert r.returncode == 0, r.stderr[-2000:]
    assert list((tmp_path / "runs" / "orig").glob("version_0/checkpoints/latest/3"))
