"""Training: the variance gradient touches only γ's shape, exact resume, Ctrl-C and cluster signals, atomic and
corrupted checkpoints."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lvd.data.loader import Loader, split_indices
from lvd.data.representation import Normalizer, raw_arrays
from lvd.data.schema import read_events
from lvd.distributed import make_mesh
from lvd.errors import CheckpointError
from lvd.models.base import Dims
from lvd.models.registry import build_model
from lvd.runs import checkpoint as ckpt
from lvd.training.loop import train
from lvd.training.state import init_state
from lvd.training.step import make_train_step


def _setup(opts, tiny_file):
    raw = raw_arrays(read_events(tiny_file, require_truth=True), opts.data)
    # normalised as the training loop does (on its training split), so the compiled step is the loop's
    train_idx, _ = split_indices(raw.n_events, opts.data.validation_fraction, opts.train.seed)
    norm = Normalizer.fit(raw.take(train_idx), opts.data)
    arrays = norm.apply(raw)
    graphdef, state = init_state(build_model(opts, Dims.from_normalizer(norm)), opts)
    loader = Loader(arrays, np.arange(arrays.n_events), opts.train.batch_size, 0, make_mesh())
    return graphdef, state, loader


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_variance_gradient_touches_only_the_schedule(tiny_options, tiny_file):
    """With and without the variance objective the main parameters take the same step; only γ's shape differs."""
    on, off = tiny_options(), tiny_options("loss.schedule_variance=false")
    graphdef, state, loader = _setup(on, tiny_file)
    batch = loader.train_batch(0)
    copy = lambda s: jax.tree.map(jnp.array, s)  # noqa: E731  (the step donates its input)
    s_on, m_on = make_train_step(graphdef, on)(copy(state), batch)
    s_off, _ = make_train_step(graphdef, off)(copy(state), batch)
    for a, b in zip(_leaves(s_on.main), _leaves(s_off.main), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_leaves(s_on.main), _leaves(state.main), strict=True))
    moved = [not np.array_equal(a, b) for a, b in zip(_leaves(s_on.sched), _leaves(state.sched), strict=True)]
    assert all(moved), "every γ-shape parameter follows the variance gradient"
    assert all(np.array_equal(a, b) for a, b in zip(_leaves(s_off.sched), _leaves(state.sched), strict=True))
    assert float(m_on["schedule_variance"]) > 0


def test_resume_continues_exactly(tiny_options, tiny_file, tmp_path):
    """Train 10 steps in one go, or stop at 5 (``train.stop_at``, the schedules still running to 10) and resume:
    the same loss at every step, the same parameters. (Ctrl-C and SIGTERM stops have their own tests.)"""
    full = tiny_options("train.log_every=1", "train.checkpoint_every=100", "train.validate_every=100")
    a = train(full, tiny_file, runs_dir=tmp_path / "a")
    stop5 = tiny_options("train.log_every=1", "train.checkpoint_every=100", "train.validate_every=100",
                         "train.stop_at=5")
    b1 = train(stop5, tiny_file, runs_dir=tmp_path / "b")
    assert b1.stopped_by == "stop_at" and b1.step == 5
    again = train(stop5, tiny_file, runs_dir=tmp_path / "b", checkpoint=b1.run_dir)
    assert again.step == 5 and not [h for h in again.history if h["split"] == "train"]
    b2 = train(full, tiny_file, runs_dir=tmp_path / "b", checkpoint=b1.run_dir)
    assert b2.run_dir == b1.run_dir, "a resumed run continues in its own folder"
    loss_a = {h["step"]: h["loss"] for h in a.history if h["split"] == "train"}
    loss_b = {h["step"]: h["loss"] for h in b1.history + b2.history if h["split"] == "train"}
    assert sorted(loss_b) == list(range(1, 11))
    for step in range(1, 11):
        assert loss_b[step] == pytest.approx(loss_a[step], rel=1e-5, abs=1e-6), step
    sa = ckpt.restore_state(ckpt.resolve(a.run_dir, "latest"), _template(full, tiny_file))
    sb = ckpt.restore_state(ckpt.resolve(b2.run_dir, "latest"), _template(full, tiny_file))
    assert int(sa.step) == int(sb.step) == 10
    for x, y in zip(_leaves(sa), _leaves(sb), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def _template(opts, tiny_file):
    return _setup(opts, tiny_file)[1]


def test_crash_during_save_keeps_previous_checkpoint(tiny_options, tiny_file, tmp_path, monkeypatch):
    atomicity = pytest.importorskip("orbax.checkpoint._src.path.atomicity")
    opts = tiny_options("train.checkpoint_every=5", "train.validate_every=100")
    original = atomicity.AtomicRenameTemporaryPath.finalize

    async def crash_at_step_10(self, *args, **kwargs):
        if self.get_final().name == "10":  # the written data stay in the temporary folder, never renamed
            raise RuntimeError("simulated crash while writing a checkpoint")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, "finalize", crash_at_step_10)
    with pytest.raises(Exception, match="simulated crash"):
        train(opts, tiny_file, runs_dir=tmp_path)
    monkeypatch.undo()
    run = next(tmp_path.glob("*/version_0"))
    step_dir = ckpt.resolve(run, "latest")
    assert step_dir.name == "5", "the last complete checkpoint is the one found"
    state = ckpt.restore_state(step_dir, _template(opts, tiny_file))
    assert int(state.step) == 5


def test_corrupted_checkpoint_is_a_clear_error(tiny_options, tiny_file, tiny_run, tmp_path, run_cli):
    opts = tiny_options()
    run = shutil.copytree(tiny_run, tmp_path / "run")
    step_dir = ckpt.resolve(run, "latest")
    for f in (step_dir / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\0" * 7)
    with pytest.raises(CheckpointError, match=str(step_dir)):
        ckpt.restore_state(step_dir, _template(opts, tiny_file))
    code, _, err = run_cli("unfold", step_dir, tiny_file, tmp_path / "out.h5")
    assert code == 2 and "cannot be read" in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "out.h5").exists()
    code, _, err = run_cli("unfold", tmp_path / "nowhere", tiny_file, tmp_path / "out.h5")
    assert code == 2 and "no such run" in err


def test_validation_split_is_fixed_and_disjoint():
    tr, va = split_indices(1000, 0.1, seed=3)
    tr2, va2 = split_indices(1000, 0.1, seed=3)
    assert len(va) == 100 and not set(tr) & set(va) and len(tr) + len(va) == 1000
    np.testing.assert_array_equal(va, va2)


def test_weighted_loss_is_normalised_by_weight_sum(tiny_options, tiny_file):
    """Scaling every weight by a constant changes nothing; a zero-weight event does not contribute."""
    opts = tiny_options()
    graphdef, state, loader = _setup(opts, tiny_file)
    batch = loader.train_batch(0)
    step = make_train_step(graphdef, opts)
    copy = lambda s: jax.tree.map(jnp.array, s)  # noqa: E731
    _, m1 = step(copy(state), batch)
    _, m2 = step(copy(state), batch._replace(weight=batch.weight * 7.5))
    assert float(m1["loss"]) == pytest.approx(float(m2["loss"]), rel=1e-5)
    w = batch.weight.at[0].set(0.0)
    _, m3 = step(copy(state), batch._replace(weight=w))
    # the same batch with event 0 replaced by garbage but weight 0 gives the same loss
    garbage = batch._replace(weight=w, x=batch.x.at[0].set(50.0))
    _, m4 = step(copy(state), garbage)
    assert float(m3["loss"]) == pytest.approx(float(m4["loss"]), rel=1e-5)


def test_schedule_params_are_separate(tiny_options, tiny_file):
    graphdef, state, _ = _setup(tiny_options(), tiny_file)
    names = {str(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.sched)[0]}
    assert names and all("schedule" in n for n in names)
    model = nnx.merge(graphdef, state.sched, state.main, state.rest)
    assert hasattr(model, "schedule")
