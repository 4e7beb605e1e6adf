"""Classifier two-sample test: how well can a small network tell unfolded events from true ones?

The AUC of a classifier trained on half of the events and scored on the other half: 0.5 means the two
multi-dimensional distributions are indistinguishable, 1 means disjoint. The uncertainty is the bootstrap
standard deviation of the held-out AUC. Training is one jitted ``lax.scan`` over full-batch Adam steps.

Negative event weights (NLO samples): the classifier trains on |w| (a loss with negative terms is unbounded
below and need not converge), and the held-out AUC is scored with the signed weights. Any fixed classifier
scores 0.5 on indistinguishable samples, so the test stays valid; only its power depends on the training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lvd.errors import DataError


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve (probability that a positive scores above a negative; ties count ½)."""
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order].astype(bool), w[order]
    # group ties: each positive beats the negatives strictly below it and half of those tied with it
    uniq, start = np.unique(s, return_index=True)
    neg_w = np.add.reduceat(np.where(~y, w, 0.0), start)
    pos_w = np.add.reduceat(np.where(y, w, 0.0), start)
    neg_below = np.concatenate([[0.0], np.cumsum(neg_w)[:-1]])
    total = pos_w.sum() * neg_w.sum()
    return float(np.sum(pos_w * (neg_below + 0.5 * neg_w)) / total) if total > 0 else 0.5


def _mlp_init(key, sizes):
    params = []
    for k, (a, b) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:], strict=True), strict=True):
        params.append((jax.random.normal(k, (a, b)) * np.sqrt(2.0 / a), jnp.zeros((b,))))
    return params


def _mlp(params, x):
    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return (x @ w + b)[:, 0]


def c2st(truth: np.ndarray, other: np.ndarray, w_truth: np.ndarray | None = None, w_other: np.ndarray | None = None,
         seed: int = 0, hidden: int = 64, steps: int = 1500, n_boot: int = 100, paired: bool = False
         ) -> dict[str, float]:
    """AUC (and bootstrap error) of an MLP separating ``other [M, F]`` from ``truth [N, F]``.

    ``paired``: row i of both is the same event (its truth and one unfolded sample). The train/test split then
    keeps each pair on one side: a classifier that has seen an event's truth would otherwise call its unfolded
    copy in the test half "truth" and push the AUC below 0.5 for a good unfolding.
    """
    if paired and len(truth) != len(other):
        raise ValueError(f"paired classifier test needs equal sizes, got {len(truth)} and {len(other)}")
    x = np.concatenate([truth, other]).astype(np.float64)
    y = np.concatenate([np.zeros(len(truth)), np.ones(len(other))])
    w = np.concatenate([np.ones(len(truth)) if w_truth is None else w_truth,
                        np.ones(len(other)) if w_other is None else w_other]).astype(np.float64)
    for label, name in ((0, "truth"), (1, "unfolded")):
        if not w[y == label].sum() > 0:
            raise DataError(f"classifier test: the {name} events' weights sum to {w[y == label].sum():.6g}; "
                            "the AUC needs a positive total per class")
    # balance the classes, standardise the features
    w = np.where(y == 1, w / w[y == 1].sum(), w / w[y == 0].sum())
    w_train = np.abs(w)
    w_train = np.where(y == 1, w_train / w_train[y == 1].sum(), w_train / w_train[y == 0].sum())
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-9)
    rng = np.random.default_rng(seed)
    test = np.tile(rng.random(len(truth)) < 0.5, 2) if paired else rng.random(len(x)) < 0.5
    xtr, ytr, wtr = (jnp.asarray(a[~test], jnp.float32) for a in (x, y, w_train))
    tx = optax.adam(3e-3)
    params = _mlp_init(jax.random.key(seed), [x.shape[1], hidden, hidden, 1])

    def loss(p):
        logits = _mlp(p, xtr)
        return jnp.sum(wtr * optax.sigmoid_binary_cross_entropy(logits, ytr)) / jnp.sum(wtr)

    @jax.jit
    def fit(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
        return p

    params = fit(params)
    scores = np.asarray(jax.jit(_mlp)(params, jnp.asarray(x[test], jnp.float32)))
    yt, wt = y[test], w[test]
    auc = weighted_auc(scores, yt, wt)
    reps = [weighted_auc(scores, yt, wt * rng.poisson(1.0, len(yt))) for _ in range(n_boot)]
    return {"auc": auc, "error": float(np.std(reps, ddof=1)) if n_boot > 1 else float("nan"),
            "n_test": int(test.sum()), "features": int(x.shape[1])}
