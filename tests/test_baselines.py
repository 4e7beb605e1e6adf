"""Baselines: the core maths of each model, and train -> unfold for every model kind."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_physical
from flax import nnx
from test_models import perturb
from tolerance import tolerance

from lvd import config
from lvd.data.schema import read_events
from lvd.models.base import Batch, Dims
from lvd.models.baselines.cinn import CINN
from lvd.models.baselines.cvae import CVAE
from lvd.models.baselines.vdm import VDM
from lvd.models.vae import gaussian_kl, gaussian_kl_between
from lvd.sampling.samplers import solver

D = 55


def dims(n_obj=12, n_met=3) -> Dims:
    return Dims(n_obj, n_met, (0.0,) * D, (1.0,) * D, (1.0,) * 5, (1.0,) * 5)


def small_opts(*overrides, kind):
    from conftest import TINY

    return config.load_options(None, [*TINY, f"model.kind={kind}", *overrides], defaults=config.small())


def test_cinn_inverts_and_its_log_determinant_is_the_jacobians():
    """The inverse and the log-determinant are exact: checked in float64 (parameters included) to float64
    round-off, and in float32 (how the model runs) to float32 round-off.

    Round-off measured over 50 seeds (parameters perturbed, x and c drawn), 3 blocks, D = 55, |z| up to 262:
    round trip max 8.4 ε·max|z| in float32 (3.7e-5 absolute) and 7.7 ε·max|z| in float64 (9.7e-14);
    log-determinant against the Jacobian's slogdet max 96 ε in float32 (1.1e-5) and 68 ε in float64 (1.5e-14).
    The round trip is bounded by 4 rounded layers per block (coupling, affine, forward and back) at the largest
    magnitude the flow reaches, the log-determinant by its 3·D summed O(1) log-scales (|s| ≤ 4); both
    tolerances are 10x that. A wrong inverse or a missing log-scale is off by O(1), 10³ times more in float32.
    """
    opts = small_opts("model.flow_blocks=3", "model.flow_hidden=16", "model.flow_layers=1", kind="cinn")
    blocks = opts.model.flow_blocks
    model = CINN(opts, dims(), rngs=nnx.Rngs(0))
    perturb(model, 0.3)
    graphdef, params = nnx.split(model)
    x = jax.random.normal(jax.random.key(1), (4, D))
    c = jax.random.normal(jax.random.key(2), (4, opts.model.hidden))

    @jax.jit
    def roundtrip(params, x, c):
        m = nnx.merge(graphdef, params)
        z, logdet = m.forward(x, c)

        def single(xi, ci):
            return nnx.merge(graphdef, params).forward(xi[None], ci[None])[0][0]

        jac = jax.vmap(jax.jacfwd(single))(x, c)  # [4, D, D]
        return z, logdet, m.inverse(z, c), jnp.linalg.slogdet(jac)[1]

    def check(z, logdet, back, slogdet, x, dtype):
        assert back.dtype == logdet.dtype == dtype
        rt = tolerance(dtype, ops=4 * blocks, scale=float(jnp.abs(z).max()))
        np.testing.assert_allclose(back, x, rtol=0, atol=rt)
        np.testing.assert_allclose(logdet, slogdet, rtol=0, atol=tolerance(dtype, ops=blocks * D))

    z, logdet, back, slogdet = roundtrip(params, x, c)
    check(z, logdet, back, slogdet, x, jnp.float32)
    assert float(jnp.abs(z - x).max()) > 0.1  # the flow is not the identity
    with jax.enable_x64(True):  # the same flow in float64: parameters too (float32 ones would round in float32)
        def to64(a):
            return jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

        x64 = to64(x)
        check(*roundtrip(jax.tree.map(to64, params), x64, to64(c)), x64, jnp.float64)


# The KLs in float32 against float64 closed forms: a few rounded operations on O(1) terms that cancel to ~1/4 of
# their size. Measured (these inputs and 1e5 perturbations of them) at most 2.6 ε relative; a wrong term is off
# by percents at least.
KL_REL = tolerance(np.float32, ops=8)


def test_gaussian_kl_closed_forms():
    m = jnp.array([[0.3, -1.0]])
    ls = jnp.array([[0.1, -0.4]])
    expected = np.mean(0.5 * (np.asarray(m) ** 2 + np.exp(2 * np.asarray(ls)) - 2 * np.asarray(ls) - 1))
    assert float(gaussian_kl(m, ls)[0]) == pytest.approx(expected, rel=KL_REL)
    mp, lsp = jnp.array([[1.0, 0.5]]), jnp.array([[0.2, -0.1]])
    sq, sp = np.exp(np.asarray(ls)), np.exp(np.asarray(lsp))
    expected = np.mean(np.log(sp / sq) + (sq**2 + (np.asarray(m) - np.asarray(mp)) ** 2) / (2 * sp**2) - 0.5)
    assert float(gaussian_kl_between(m, ls, mp, lsp)[0]) == pytest.approx(expected, rel=KL_REL)
    assert float(gaussian_kl_between(m, ls, jnp.zeros_like(m), jnp.zeros_like(ls))[0]) == pytest.approx(
        float(gaussian_kl(m, ls)[0]), rel=KL_REL)


def test_cvae_kl_term_is_the_closed_form():
    opts = small_opts("loss.vae_prior=1.0", "model.learned_prior=true", kind="cvae")
    model = CVAE(opts, dims(), rngs=nnx.Rngs(0))
    perturb(model, 0.2)
    key = jax.random.key(0)
    batch = Batch(x=jax.random.normal(key, (8, D)), objects=jax.random.normal(key, (8, 5, 12)),
                  mask=jnp.ones((8, 5), bool), met=jnp.zeros((8, 3)), weight=jnp.ones(8))

    @nnx.jit
    def both(model, batch):
        out = model.loss(batch, key)
        c = model.detector(batch.objects, batch.mask, batch.met)
        mq, lq = model.encoder(batch.x, c)
        mp, lp = model._prior(c)
        kl = 0.5 * jnp.mean(jnp.exp(2 * (lq - lp)) + ((mq - mp) / jnp.exp(lp)) ** 2 - 1 - 2 * (lq - lp), -1)
        return out.terms["vae_prior"], kl

    term, kl = both(model, batch)
    np.testing.assert_allclose(term, kl, rtol=KL_REL)  # the same float32 formula: measured equal (30 seeds)
    assert float(term.mean()) > 0


def test_vdm_sampler_recovers_an_analytic_gaussian(tiny_file):
    """VDM's sampling path with the exact ε̂ of Gaussian data gives the Gaussian back (shared samplers)."""
    opts = small_opts("schedule.kind=linear", kind="vdm")
    model = VDM(opts, dims(), rngs=nnx.Rngs(0))
    m = jnp.linspace(-1.0, 1.0, D)
    s = jnp.linspace(0.2, 1.5, D)

    def eps_exact(z_t, c, gamma_t):
        a2, s2 = jax.nn.sigmoid(-gamma_t)[:, None], jax.nn.sigmoid(gamma_t)[:, None]
        return jnp.sqrt(s2) * (z_t - jnp.sqrt(a2) * m) / (a2 * s**2 + s2)

    model.denoiser = eps_exact  # the analytic score replaces the network
    n = 4000
    keys = jax.random.split(jax.random.key(3), n)
    objects, mask, met = jnp.zeros((n, 3, 12)), jnp.ones((n, 3), bool), jnp.zeros((n, 3))
    x = jax.jit(lambda k: model.sample(objects, mask, met, k, solver("dpm++", 25)))(keys)
    # z₁ ~ N(0, I) instead of the exact marginal shifts the mean by α₁·(...) ≈ 0.08·m at γ_max = 5
    np.testing.assert_allclose(x.mean(0), m, atol=0.1 + 4 * float(s.max()) / np.sqrt(n))
    np.testing.assert_allclose(x.std(0), s, rtol=0.1)


@pytest.mark.parametrize("kind", ["lvd", "vdm"])  # the CVAE and CINN: in test_every_model.py
def test_every_model_takes_the_decay_chain(kind, tiny_file):
    """Any model learns the 24 decay-chain coordinates: its loss and gradients are finite, and what it unfolds
    is physical (on shell, masses of the summed daughters equal the coordinates' masses)."""
    from lvd.data.loader import Loader
    from lvd.data.representation import Normalizer, raw_arrays
    from lvd.distributed import make_mesh
    from lvd.models.registry import build_model
    from lvd.sampling.unfold import daughters_to_particles

    opts = small_opts("data.parton_representation=decay_chain", "model.flow_blocks=2", "model.flow_hidden=16",
                      "model.flow_layers=1", kind=kind)
    raw = raw_arrays(read_events(tiny_file, require_truth=True).take(slice(0, 256)), opts.data)
    norm = Normalizer.fit(raw, opts.data)
    arrays = norm.apply(raw)
    assert arrays.x.shape == (256, 24)
    model = build_model(opts, Dims.from_normalizer(norm))
    batch = Loader(arrays, np.arange(256), 64, 0, make_mesh()).train_batch(0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # rest: e.g. the CINN's fixed permutations

    @jax.jit
    def loss_and_sample(params, rest, batch):
        def total(p):
            return jnp.mean(nnx.merge(graphdef, p, rest).loss(batch, jax.random.key(0)).total)

        value, grads = jax.value_and_grad(total)(params)
        keys = jax.random.split(jax.random.key(1), batch.objects.shape[0])
        unfolded = nnx.merge(graphdef, params, rest).unfold(batch.objects, batch.mask, batch.met, keys, solver("dpm++", 4))
        return value, grads, unfolded

    value, grads, unfolded = loss_and_sample(params, rest, batch)
    assert np.isfinite(float(value)) and all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert_physical(daughters_to_particles(np.asarray(unfolded)))
