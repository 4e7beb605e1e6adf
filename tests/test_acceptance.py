"""The efficiency and fake classifiers: features, the fitted probability, storage, refusals."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lvd import physics
from lvd.config import DataOptions
from lvd.data.generate import toy
from lvd.data.representation import detector_arrays
from lvd.data.schema import decay_p4, read_events, read_generated
from lvd.errors import DataError, LvdError
from lvd.models.classifier import binary_cross_entropy, parton_features
from lvd.runs.acceptance import AcceptanceOptions, load, save
from lvd.training import acceptance

TINY = AcceptanceOptions(width=16, blocks=1, batch_size=128, detector_width=16, detector_layers=1,
                      detector_batch_size=128, num_heads=2, steps=30, validate_every=10)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    path = tmp_path_factory.mktemp("acceptance") / "all.h5"
    toy.generate_file(path, 400, seed=41, keep_unselected=True)
    return path


def test_parton_features_are_the_kinematics():
    rng = np.random.default_rng(0)
    pt, eta, phi = rng.uniform(5, 300, (50, 6)), rng.uniform(-3, 3, (50, 6)), rng.uniform(-np.pi, np.pi, (50, 6))
    p4 = physics.p4_from_ptetaphim(pt, eta, phi, np.zeros((50, 6)))
    f = np.asarray(jax.jit(parton_features)(jnp.asarray(p4, jnp.float32)), np.float64)
    per = f[:, :24].reshape(50, 6, 4)
    tol = 1e3 * np.finfo(np.float32).eps  # float32 kinematics of O(1) numbers through a few operations
    np.testing.assert_allclose(per[..., 0], np.log1p(pt), atol=tol)
    np.testing.assert_allclose(per[..., 1], eta, atol=tol * 10)  # η = asinh(pz/pT): a condition number ≲ 10
    np.testing.assert_allclose(per[..., 2:], np.stack([np.cos(phi), np.sin(phi)], -1), atol=tol)
    tt = p4.sum(1)
    np.testing.assert_allclose(f[:, 24], np.log1p(physics.pt(tt)), atol=tol)
    np.testing.assert_allclose(f[:, 25], 0.5 * np.log((tt[:, 3] + tt[:, 2]) / (tt[:, 3] - tt[:, 2])), atol=tol * 10)
    np.testing.assert_allclose(f[:, 26], np.log(physics.mass(tt)), atol=tol * 10)
    visible = [0, 1, 3, 4, 5]  # not the neutrino
    passing = ((pt > 25) & (np.abs(eta) < 2.5))[:, visible]
    np.testing.assert_array_equal(f[:, 27], passing.sum(1))
    np.testing.assert_allclose(f[:, 28], np.log1p(pt[:, visible].min(1)), atol=tol)
    np.testing.assert_allclose(f[:, 29], np.abs(eta[:, visible]).max(1), atol=tol * 10)


def test_weighted_cross_entropy_is_its_closed_form():
    s, y, w = jnp.array([-3.0, 0.5, 40.0, -40.0]), jnp.array([1.0, 0.0, 1.0, 0.0]), jnp.array([1.0, 2.0, 0.5, 1.5])
    s64 = np.asarray(s, np.float64)
    # −log σ(s) = log(1 + e^−s), −log(1 − σ(s)) = log(1 + e^s)
    ref = (w * (y * np.logaddexp(0, -s64) + (1 - y) * np.logaddexp(0, s64))).sum() / w.sum()
    assert float(binary_cross_entropy(s, y, w)) == pytest.approx(ref, rel=10 * float(np.finfo(np.float32).eps))


def test_fit_is_the_maximum_likelihood_logistic_regression():
    """A linear logit fitted to labels drawn from σ(2x − 1) recovers (2, −1) within the statistical error."""
    rng = np.random.default_rng(1)
    n = 40_000
    x = rng.normal(size=(n, 1)).astype(np.float32)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2 * x[:, 0] - 1)))).astype(np.float32)
    model = nnx.Linear(1, 1, rngs=nnx.Rngs(0))
    opts = dataclasses.replace(TINY, steps=1500, batch_size=1024, learning_rate=0.05, validate_every=500)
    fitted, history, _ = acceptance.fit(model, lambda m, v: m(v)[..., 0], [x], y, np.ones(n, np.float32), opts)
    slope, intercept = float(fitted.kernel[...][0, 0]), float(fitted.bias[...][0])
    # Fisher information of logistic regression at (2, −1): standard errors ≈ 0.03 (slope), 0.02 (intercept)
    assert slope == pytest.approx(2.0, abs=0.15) and intercept == pytest.approx(-1.0, abs=0.1)
    assert history[-1]["step"] == opts.steps


def test_classifiers_train_save_and_load_exactly(sample, tmp_path):
    eff, fakes = acceptance.train_acceptance(sample, opts=TINY)
    g, d = read_generated(sample), read_events(sample)
    p4 = decay_p4(g.truth).astype(np.float32)
    objects, mask, met = detector_arrays(d, DataOptions())
    for c, inputs in ((eff, (p4,)), (fakes, (objects, mask, met))):
        p = c.probability(*inputs)
        assert p.shape == (inputs[0].shape[0],) and ((p > 0) & (p < 1)).all()
        back = load(save(c, tmp_path / c.kind))
        np.testing.assert_array_equal(back.probability(*inputs), p)
    # batching changes a probability at most by float32 round-off (other shapes compile to other programs)
    np.testing.assert_allclose(eff.probability(p4, batch_size=7), eff.probability(p4),
                               rtol=64 * np.finfo(np.float32).eps)


def test_samples_without_channels_are_refused(tmp_path):
    plain = tmp_path / "plain.h5"
    toy.generate_file(plain, 50, seed=3)
    with pytest.raises(DataError, match="plain.h5: no generated events' truth"):
        acceptance.train_acceptance(plain, opts=TINY)
    with pytest.raises(LvdError, match="no channel"):
        acceptance.train_fakes(read_events(plain), DataOptions(), TINY)
    with pytest.raises(LvdError, match="not a saved classifier"):
        load(tmp_path)


def test_platt_scaling_recovers_the_calibration():
    """Logits twice too confident (the true probability is σ(s/2 + 0.3)) are mapped back: a ≈ 1/2, b ≈ 0.3."""
    rng = np.random.default_rng(2)
    s = rng.normal(0.0, 3.0, 40_000).astype(np.float32)
    y = (rng.random(len(s)) < 1 / (1 + np.exp(-(s / 2 + 0.3)))).astype(np.float32)
    a, b = acceptance.platt_scaling(s, y, np.ones(len(s), np.float32))
    # standard errors of the logistic regression here are ≈ 0.01 (both)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(0.3, abs=0.06)
