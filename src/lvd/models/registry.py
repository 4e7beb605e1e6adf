"""Model kinds by name (the only place that maps ``model.kind`` to a class)."""

from __future__ import annotations

from flax import nnx

from lvd.config import Options
from lvd.errors import OptionsError
from lvd.models.base import Dims, UnfoldingModel


def model_classes() -> dict[str, type[UnfoldingModel]]:
    from lvd.models.lvd import LVD

    classes: dict[str, type[UnfoldingModel]] = {"lvd": LVD}
    try:
        from lvd.models.baselines import BASELINES
    except ImportError:
        BASELINES = {}
    return classes | BASELINES


def build_model(opts: Options, dims: Dims, seed: int | None = None, abstract: bool = False) -> UnfoldingModel:
    """A freshly initialised model of kind ``opts.model.kind``; parameters drawn from ``seed`` (default: train seed).

    The initialisation runs as one compiled program (eager initialisation compiles every parameter's random
    draw separately, which costs seconds on a CPU). ``abstract=True`` gives shapes only (to restore into).
    """
    classes = model_classes()
    kind = opts.model.kind
    if kind not in classes:
        raise OptionsError(f"model.kind {kind!r} is not available (available: {', '.join(sorted(classes))})")
    seed = opts.train.seed if seed is None else seed
    create = lambda: classes[kind](opts, dims, rngs=nnx.Rngs(seed))  # noqa: E731
    return nnx.eval_shape(create) if abstract else nnx.jit(create)()
