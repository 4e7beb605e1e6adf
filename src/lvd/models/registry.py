"""Model kinds by name: the only place that maps ``model.kind`` (one of :data:`lvd.config.MODEL_KINDS`) to a class."""

from __future__ import annotations

from flax import nnx

from lvd.config import MODEL_KINDS, Options
from lvd.errors import OptionsError
from lvd.models.base import Dims, UnfoldingModel
from lvd.models.baselines import CINN, CVAE, LDM, VAE, VDM
from lvd.models.lvd import LVD

MODEL_CLASSES: dict[str, type[UnfoldingModel]] = {"lvd": LVD, "vdm": VDM, "ldm": LDM, "vae": VAE, "cvae": CVAE,
                                                   "cinn": CINN}
assert set(MODEL_CLASSES) == set(MODEL_KINDS), "every model kind of the options has exactly one class"


def model_class(kind: str) -> type[UnfoldingModel]:
    """The class of a model kind; an unknown kind raises with the list of valid ones."""
    if kind not in MODEL_CLASSES:
        raise OptionsError(f"model.kind {kind!r} is not available (available: {', '.join(MODEL_KINDS)})")
    return MODEL_CLASSES[kind]


def build_model(opts: Options, dims: Dims, seed: int | None = None, abstract: bool = False) -> UnfoldingModel:
    """A freshly initialised model of kind ``opts.model.kind``; parameters drawn from ``seed`` (default: train seed).

    The initialisation runs as one compiled program (eager initialisation compiles every parameter's random
    draw separately, which costs seconds on a CPU). ``abstract=True`` gives shapes only (to restore into).
    """
    cls = model_class(opts.model.kind)
    seed = opts.train.seed if seed is None else seed
    create = lambda: cls(opts, dims, rngs=nnx.Rngs(seed))  # noqa: E731
    return nnx.eval_shape(create) if abstract else nnx.jit(create)()
