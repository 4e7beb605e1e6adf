"""Every model kind trains and unfolds physical events (apart from test_baselines.py's closed forms, so the suite's
workers share the load)."""

import jax
import numpy as np
import pytest
from conftest import assert_physical
from flax import nnx
from test_baselines import small_opts

from lvd.data.schema import read_events
from lvd.runs import checkpoint as ckpt
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train


# The CVAE and the CINN train on the 24 decay-chain coordinates (the other models on the default 55): every model
# meets both representations between this test and the next, without compiling each model twice.
@pytest.mark.parametrize("kind, representation", [("lvd", "ttbar_chain"), ("vdm", "ttbar_chain"),
                                                  ("cvae", "decay_chain"), ("cinn", "decay_chain"),
                                                  ("ldm", "ttbar_chain")])
def test_every_model_trains_and_unfolds(kind, representation, tiny_file, tiny_run, tmp_path):
    extra = ["train.validate_every=5", "train.checkpoint_every=5", "model.flow_blocks=2",
             "model.flow_hidden=16", "model.flow_layers=1", f"data.parton_representation={representation}"]
    if kind == "ldm":
        vae = train(small_opts(*extra, kind="vae"), tiny_file, runs_dir=tmp_path)
        extra.append(f"model.vae_checkpoint={vae.run_dir}")
    if kind == "lvd":  # the session's shared tiny run is exactly this training; no need to repeat it
        meta = ckpt.read_meta(ckpt.resolve(tiny_run, "best"))
        run_dir, step, best = tiny_run, meta["step"], meta.get("best_validation", meta.get("validation_loss"))
    else:
        r = train(small_opts(*extra, kind=kind), tiny_file, runs_dir=tmp_path)
        run_dir, step, best = r.run_dir, r.step, r.best_validation
    assert step == 10 and best is not None and np.isfinite(best)
    out = tmp_path / f"{kind}.h5"
    attrs = unfold_file(run_dir, tiny_file, out, samples=2, steps=3)
    assert attrs["model"] == kind
    d = read_events(out)
    assert d.unfolded["b_had"]["pt"].shape == (d.n_events, 2)
    assert_physical(d.unfolded)  # on-shell daughters at their physical masses, whatever the model
    if kind == "ldm":
        # the frozen VAE did not move during stage 2
        meta_vae = ckpt.resolve(vae.run_dir, "latest")
        from lvd.sampling.unfold import Unfolder

        u_vae, u_ldm = Unfolder.load(meta_vae), Unfolder.load(ckpt.resolve(run_dir, "latest"))
        vae_params = nnx.to_pure_dict(u_vae.params.main)["vae"]
        ldm_params = nnx.to_pure_dict(u_ldm.params.rest)["vae"]
        for a, b in zip(jax.tree.leaves(vae_params), jax.tree.leaves(ldm_params), strict=True):
            np.testing.assert_array_equal(a, b)
