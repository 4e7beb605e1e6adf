"""Trained acceptance classifiers of a sample: the selection efficiency ε(partons) and the fake probability
f(detector) (:mod:`lvd.models.classifier`), their options, inference and storage.

A classifier is saved as ``meta.json`` (kind, options, input standardisation, training history) and
``params.npz`` (arrays only, read without pickle), each written atomically; :mod:`lvd.training.acceptance`
trains them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lvd.config import AcceptanceOptions, DataOptions
from lvd.data.schema import EventData, StagedFile, decay_p4
from lvd.errors import LvdError
from lvd.models.classifier import DetectorClassifier, PartonClassifier, parton_features

ACCEPTANCE_FOLDER = "acceptance"  # in a run folder: efficiency/ and fakes/


@dataclass
class Classifier:
    """A trained classifier: its module, the standardisation of its inputs and how it was trained."""

    kind: str  # "efficiency" or "fakes"
    model: nnx.Module
    mean: list[np.ndarray]  # per input array, over its last axis
    std: list[np.ndarray]
    options: AcceptanceOptions
    history: list[dict[str, float]]
    # Platt scaling (a, b): the probability is σ(a·s + b) of the network's logit s, fitted on held-out events
    platt: tuple[float, float] = (1.0, 0.0)

    def _standardise(self, inputs: list[jax.Array]) -> list[jax.Array]:
        return [(x - m) / s for x, m, s in zip(inputs, self.mean, self.std, strict=True)]

    def probability(self, *inputs: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """The classifier's probability for each event: ε for parton four-vectors ``[N, 6, 4]``; f for
        detector ``(objects, mask, met)`` as :func:`lvd.data.representation.detector_arrays` returns them."""
        graphdef, state = nnx.split(self.model)
        kind = self.kind
        scale, shift = self.platt

        @jax.jit
        def run(state, *xs):
            model = nnx.merge(graphdef, state)
            if kind == "efficiency":
                return jax.nn.sigmoid(scale * model(self._standardise([parton_features(xs[0])])[0]) + shift)
            objects, met = self._standardise([xs[0], xs[2]])
            return jax.nn.sigmoid(scale * model(objects * xs[1][..., None], xs[1], met) + shift)

        return batched(run, state, inputs, batch_size)


def batched(run, state, inputs: list[np.ndarray], batch_size: int = 8192) -> np.ndarray:
    """``run(state, *chunk)`` over the events of ``inputs`` in chunks of one shape (the last one padded), so the
    jitted ``run`` compiles once; the outputs ``[N]`` concatenated."""
    n = inputs[0].shape[0]
    b = max(1, min(batch_size, n))
    out = []
    for i in range(0, n, b):
        chunk = [np.concatenate([x[i:i + b], np.repeat(x[:1], max(0, i + b - n), axis=0)]) for x in inputs]
        out.append(np.asarray(run(state, *map(jnp.asarray, chunk)))[: min(b, n - i)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


# --- storage ---------------------------------------------------------------------------------------------

def save(c: Classifier, folder: str | os.PathLike) -> Path:
    """``folder/meta.json`` and ``folder/params.npz`` (each written atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = {"/".join(map(str, k)): np.asarray(v) for k, v in nnx.to_flat_state(nnx.state(c.model, nnx.Param))}
    staged = StagedFile(folder / "params.npz")
    with open(staged.tmp, "wb") as f:
        np.savez(f, **flat)
    staged.commit()
    meta = {"kind": c.kind, "options": dataclasses.asdict(c.options), "history": c.history, "platt": list(c.platt),
            "mean": [m.tolist() for m in c.mean], "std": [s.tolist() for s in c.std],
            "shapes": {"object_features": len(c.mean[0]), "met_features": len(c.mean[-1])}}
    staged = StagedFile(folder / "meta.json")
    Path(staged.tmp).write_text(json.dumps(meta))
    staged.commit()
    return folder


def load(folder: str | os.PathLike) -> Classifier:
    folder = Path(folder)
    try:
        meta: dict[str, Any] = json.loads((folder / "meta.json").read_text())
        arrays = dict(np.load(folder / "params.npz", allow_pickle=False))
    except (OSError, ValueError) as e:
        raise LvdError(f"{folder}: not a saved classifier ({e})") from None
    opts = AcceptanceOptions(**meta["options"])
    rngs = nnx.Rngs(0)
    if meta["kind"] == "efficiency":
        model = PartonClassifier(opts.width, opts.blocks, rngs=rngs)
    else:
        model = DetectorClassifier(meta["shapes"]["object_features"], meta["shapes"]["met_features"],
                                   opts.detector_width, opts.detector_layers, opts.num_heads, rngs=rngs)
    state = nnx.state(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    for key in flat:
        name = "/".join(map(str, key))
        if name not in arrays or arrays[name].shape != flat[key].shape:
            raise LvdError(f"{folder}/params.npz: parameter {name} is missing or has the wrong shape")
        flat[key] = flat[key].replace(jnp.asarray(arrays[name]))
    nnx.update(model, nnx.from_flat_state(flat))
    return Classifier(meta["kind"], model, [np.asarray(m, np.float32) for m in meta["mean"]],
                      [np.asarray(s, np.float32) for s in meta["std"]], opts, meta["history"],
                      tuple(meta.get("platt", (1.0, 0.0))))


def load_pair(folder: str | os.PathLike) -> tuple[Classifier, Classifier]:
    """The ``(efficiency, fakes)`` classifiers saved in ``folder`` (a run's ``acceptance/``)."""
    folder = Path(folder)
    return load(folder / "efficiency"), load(folder / "fakes")


def acceptance_weights(data: EventData, classifiers: tuple[Classifier, Classifier] | str | os.PathLike,
                       data_opts: DataOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(signal [N], efficiency [N, K])`` of unfolded events: 1 − f of each detector event and ε of each draw, by
    ``classifiers`` (the pair, or the folder it is saved in)."""
    from lvd.data.representation import detector_arrays

    eff, fakes = classifiers if isinstance(classifiers, tuple) else load_pair(classifiers)
    p4 = decay_p4(data.unfolded)  # [N, K, 6, 4]
    n, k = p4.shape[:2]
    efficiency = eff.probability(p4.reshape(n * k, 6, 4).astype(np.float32)).reshape(n, k)
    signal = 1.0 - fakes.probability(*detector_arrays(data, data_opts or DataOptions()))
    return signal.astype(np.float64), efficiency.astype(np.float64)
