"""Training the selection efficiency ε(partons) and the fake probability f(detector) of a generated sample.

A file generated with ``--keep-unselected`` (docs/format.md) holds what both need: the truth of every generated
event with its ``pass_selection`` flag and channel (``GENERATED``), and the selected events with their channel
(``GENERATOR/channel``). ε is trained on the generated signal events, f on the selected events of every
channel. Each is a weighted binary classifier (:mod:`lvd.models.classifier`) fitted by Adam on batches drawn
from ``(seed, step)``, keeping the parameters of the best validation loss; the same seed and file give the same
classifier (stored and applied by :mod:`lvd.runs.acceptance`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lvd.config import DataOptions
from lvd.data import channels
from lvd.data.representation import detector_arrays
from lvd.data.schema import EventData, Generated, decay_p4, read_events, read_generated
from lvd.errors import DataError, LvdError
from lvd.models.classifier import (
    DetectorClassifier,
    PartonClassifier,
    binary_cross_entropy,
    parton_features,
)
from lvd.runs.acceptance import AcceptanceOptions, Classifier, batched

DEFAULTS = AcceptanceOptions()

# --- fitting ---------------------------------------------------------------------------------------------

def fit(model: nnx.Module, apply: Callable[..., jax.Array], inputs: list[np.ndarray], labels: np.ndarray,
        weights: np.ndarray, opts: AcceptanceOptions) -> tuple[nnx.Module, list[dict[str, float]], np.ndarray]:
    """Minimise the weighted binary cross entropy of ``apply(model, *batch_inputs)`` (logits); returns the model
    at its best validation loss, the history and the validation events (a seeded random ``validation_fraction``)."""
    n = len(labels)
    order = np.random.default_rng([opts.seed, 0]).permutation(n)
    n_val = max(1, int(round(opts.validation_fraction * n)))
    val, train = order[:n_val], order[n_val:]
    if len(train) == 0 or np.unique(labels[train]).size < 2:
        raise LvdError(f"classifier: {len(train)} training events, with one class only; need both")
    graphdef, params = nnx.split(model)
    # a cosine decay to zero: the last steps average the batches' noise out, so the probabilities end calibrated
    tx = optax.adam(optax.cosine_decay_schedule(opts.learning_rate, opts.steps))
    opt_state = tx.init(params)

    def loss(params, xs, y, w):
        return binary_cross_entropy(apply(nnx.merge(graphdef, params), *xs), y, w)

    @jax.jit
    def step(params, opt_state, xs, y, w):
        value, grads = jax.value_and_grad(loss)(params, xs, y, w)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    evaluate = jax.jit(lambda params, xs, y, w: loss(params, xs, y, w) * jnp.sum(w))
    take = lambda idx: ([jnp.asarray(x[idx]) for x in inputs], jnp.asarray(labels[idx]),  # noqa: E731
                        jnp.asarray(weights[idx]))

    def validation(params) -> float:
        chunks = [val[i:i + 8192] for i in range(0, len(val), 8192)]
        total = sum(float(evaluate(params, *take(c))) for c in chunks)
        return total / float(weights[val].sum())

    best, best_loss, history = params, validation(params), []
    for i in range(1, opts.steps + 1):
        idx = train[np.random.default_rng([opts.seed, i]).integers(0, len(train), opts.batch_size)]
        params, opt_state, value = step(params, opt_state, *take(idx))
        if i % opts.validate_every == 0 or i == opts.steps:
            v = validation(params)
            history.append({"step": i, "train": float(value), "validation": v})
            if v < best_loss:
                best, best_loss = params, v
    return nnx.merge(graphdef, best), history, val


def platt_scaling(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """``(a, b)`` of the calibrated probability ``σ(a·s + b)``: the logistic regression of the labels on held-out
    events' logits ``s``. A flexible classifier's probabilities are over-confident where it fitted noise
    (a < 1 shrinks them); early stopping alone leaves that, and 1/ε magnifies it."""
    line = nnx.Linear(1, 1, rngs=nnx.Rngs(seed))
    line.kernel[...] = jnp.ones((1, 1))
    line.bias[...] = jnp.zeros((1,))
    opts = AcceptanceOptions(steps=400, batch_size=min(len(labels), 4096), learning_rate=0.02,
                             validation_fraction=0.2, validate_every=100, seed=seed)
    fitted, _, _ = fit(line, lambda m, x: m(x)[..., 0], [np.asarray(logits, np.float32)[:, None]], labels, weights, opts)
    return float(fitted.kernel[...][0, 0]), float(fitted.bias[...][0])


def _moments(x: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    flat = x.reshape(-1, x.shape[-1]) if valid is None else x[valid]
    mean, std = flat.mean(0), flat.std(0)
    return mean.astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)


def train_efficiency(generated: Generated, opts: AcceptanceOptions = DEFAULTS) -> Classifier:
    """ε(partons) from the generated signal events: label ``pass_selection``, weights the generator's."""
    signal = np.flatnonzero(generated.channel == channels.SIGNAL)
    if len(signal) == 0:
        raise LvdError("efficiency: no generated event of the signal channel")
    g = generated.take(signal)
    p4 = decay_p4(g.truth).astype(np.float32)
    features = np.asarray(parton_features(jnp.asarray(p4)))
    mean, std = _moments(features)
    model = PartonClassifier(opts.width, opts.blocks, rngs=nnx.Rngs(opts.seed))
    inputs, labels = [(features - mean) / std], g.pass_selection.astype(np.float32)
    weights = g.event_weights().astype(np.float32)
    model, history, val = fit(model, lambda m, x: m(x), inputs, labels, weights, opts)
    platt = platt_scaling(_logits(model, [x[val] for x in inputs]), labels[val], weights[val], opts.seed)
    return Classifier("efficiency", model, [mean], [std], opts, history, platt)


def train_fakes(data: EventData, data_opts: DataOptions, opts: AcceptanceOptions = DEFAULTS
                ) -> Classifier:
    """f(detector) from the selected events: label 1 for every channel but the signal."""
    if data.generator is None or "channel" not in data.generator:
        raise LvdError("fakes: the events carry no channel (GENERATOR/channel); generate with --keep-unselected")
    objects, mask, met = detector_arrays(data, data_opts)
    (om, os_), (mm, ms) = _moments(objects, mask), _moments(met)
    model = DetectorClassifier(objects.shape[-1], met.shape[-1], opts.detector_width, opts.detector_layers,
                               opts.num_heads, rngs=nnx.Rngs(opts.seed))
    inputs = [(objects - om) / os_ * mask[..., None], mask, (met - mm) / ms]
    labels = (data.generator["channel"] != channels.SIGNAL).astype(np.float32)
    weights = data.event_weights().astype(np.float32)
    model, history, val = fit(model, lambda m, o, k, e: m(o, k, e), inputs, labels, weights,
                              dataclasses.replace(opts, batch_size=opts.detector_batch_size))
    platt = platt_scaling(_logits(model, [x[val] for x in inputs]), labels[val], weights[val], opts.seed)
    return Classifier("fakes", model, [om, mm], [os_, ms], opts, history, platt)


def _logits(model: nnx.Module, inputs: list[np.ndarray]) -> np.ndarray:
    graphdef, state = nnx.split(model)
    return batched(jax.jit(lambda state, *xs: nnx.merge(graphdef, state)(*xs)), state, inputs)


def train_acceptance(path: str | os.PathLike, data_opts: DataOptions | None = None,
                     opts: AcceptanceOptions = DEFAULTS) -> tuple[Classifier, Classifier]:
    """ε and f of the sample in ``path`` (written with ``--keep-unselected``); ``data_opts``: how detector
    events are represented (default: lvd's)."""
    data_opts = data_opts or DataOptions()
    generated = read_generated(path)
    if generated is None:
        raise DataError(f"{path}: no generated events' truth (GENERATED); generate with --keep-unselected")
    return train_efficiency(generated, opts), train_fakes(read_events(path), data_opts, opts)
