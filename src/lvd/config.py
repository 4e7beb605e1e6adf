"""Options: frozen dataclasses are the schema, YAML files and ``key=value`` overrides only change values.

A YAML file may name a ``base:`` file (relative to itself) whose values it overrides, recursively. Unknown or
mistyped options are an :class:`~lvd.errors.OptionsError` naming the option. The dataclass defaults are the
paper's options; every preset (:func:`paper`, :func:`small`, :func:`finetune`, ...) is a packaged
``options/<name>.yaml`` that states only what differs, with the reason beside it, so each value has one source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from lvd.errors import OptionsError

# The names below are the one source of the choices they list: registries, CLI choices and help texts derive
# from them.
ModelKind = Literal["lvd", "vdm", "ldm", "cvae", "cinn", "vae"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
SamplerName = Literal["ancestral", "ddim", "dpm++"]
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)
PartonRepresentationName = Literal["paper", "decay_chain", "ttbar_chain"]
PARTON_REPRESENTATIONS: tuple[str, ...] = get_args(PartonRepresentationName)
# "default" is each sampler's own preferred grid (ancestral: t; ddim, dpm++: lambda)
Spacing = Literal["default", "t", "lambda"]
SPACINGS: tuple[str, ...] = get_args(Spacing)[1:]
# lvd measure top-mass: the first is the default (lvd.measurement.top_mass says why)
TopMassMethod = Literal["mean", "likelihood"]
TOP_MASS_METHODS: tuple[str, ...] = get_args(TopMassMethod)


@dataclass(frozen=True)
class DataOptions:
    """Where the events live in the file and how they are represented for the networks (docs/design.md §2)."""

    source_group: str = "INPUTS/Source"  # padded detector objects
    met_group: str = "INPUTS/Met"
    truth_group: str = "TRUTH"
    weight_dataset: str = "WEIGHTS/weight"
    mask_name: str = "MASK"
    source_features: tuple[str, ...] = ("pt", "eta", "phi", "mass", "btag", "is_electron", "is_muon", "charge")
    met_features: tuple[str, ...] = ("met", "phi")
    # Names in the file where they differ from lvd's (SPANet-style files), as "lvd_name=file_name":
    # features of any group (e.g. [is_electron=etag, is_muon=utag, charge=qtag]; phi is also read from
    # sin_phi/cos_phi), and truth particles under truth_group (e.g. [b_lep=lt/b, q1=ht/q1, ...]).
    feature_names: tuple[str, ...] = ()
    particle_names: tuple[str, ...] = ()
    # 'kinematic': objects become (px, py, pz, log(E+1), log pT, η, sin φ, cos φ) + the other source features;
    # needs pt/eta/phi/mass. 'raw': the source features are used as they are (e.g. an imported .npz).
    detector_representation: Literal["kinematic", "raw"] = "kinematic"
    # How the truth becomes the vector a model learns (docs/representation.md). 'paper': 11 objects ×
    # (px, py, pz, log(E+1), m), the six decay products then the five resonances (55 numbers).
    # 'decay_chain': each top's (log pT, η, φ, mass), its W's mass and direction in the top frame, a W
    # daughter's direction in the W frame (24 numbers): masses are coordinates. 'ttbar_chain': one level up,
    # the tt̄ system (px, py, y, log of m(tt̄) above threshold) and the leptonic top's direction in its rest
    # frame, then each top's mass and decay as in decay_chain (23 numbers): pT(tt̄) and m(tt̄) are coordinates.
    parton_representation: PartonRepresentationName = "paper"
    # GeV: the line width the decay chains' top-mass coordinate is made Gaussian with. The top's own width (1.32)
    # for a sample at one mass; for a sample spanning a mass range (lvd generate --top-mass-range) about half the
    # range, or its masses sit in the narrow line's tails, where small errors are many GeV.
    top_line_width: float = 1.32
    validation_fraction: float = 0.05  # held out (a fixed, seeded subset) for the validation loss
    max_events: int = 0  # use only the first N events of the file (0: all)


@dataclass(frozen=True)
class ModelOptions:
    """Network sizes (defaults: the paper's options; docs/design.md §3)."""

    kind: ModelKind = "lvd"
    hidden: int = 96  # width H of every block
    latent_dim: int = 0  # L; 0 means L = H
    num_heads: int = 4
    detector_layers: int = 8  # transformer blocks of the detector encoder
    encoder_layers: int = 6  # VAE encoder blocks
    decoder_layers: int = 6  # VAE decoder blocks
    denoiser_layers: int = 10  # residual blocks of the denoiser
    expansion: int = 2  # inner width of each residual MLP, in units of its width
    time_embedding_dim: int = 32  # sinusoidal embedding of the noise level
    conditional_encoder: bool = True  # q(z | x, c) sees the detector embedding
    conditional_decoder: bool = False  # p(x | z, c) sees it too
    deterministic_encoder: bool = False  # z = mean of q (the paper's fine-tuning stage)
    normalized_latent: bool = True  # encoder mean projected to the sphere of radius √L
    # CINN
    flow_blocks: int = 12
    flow_layers: int = 2
    flow_hidden: int = 256
    # CVAE
    learned_prior: bool = False  # conditional Gaussian prior p(z | c) instead of N(0, I)
    # LDM stage 2: the frozen stage-1 VAE run or checkpoint
    vae_checkpoint: str = ""

    @property
    def latent(self) -> int:
        return self.latent_dim or self.hidden


@dataclass(frozen=True)
class ScheduleOptions:
    """The noise schedule γ(t) = log(σ²/α²) and the diffusion-loss weighting."""

    kind: Literal["learned", "linear", "cosine", "edm"] = "learned"  # shape of γ between its endpoints
    gamma_min: float = -13.3  # initial γ(0)
    gamma_max: float = 5.0  # initial γ(1)
    gamma_limit: float = 16.0  # learned endpoints are soft-clipped to ±limit
    learn_endpoints: bool = True  # endpoints train with the main loss
    hidden: int = 1024  # width of the monotone network (learned shape)
    weighting: Literal["sigmoid", "unit", "cosine", "edm"] = "sigmoid"
    sigmoid_offset: float = 2.0


@dataclass(frozen=True)
class LossOptions:
    """Scales of the loss terms (docs/design.md §3.2). A zero scale removes the term."""

    reconstruction: float = 1.0  # ‖D(z + e^{γ₀/2} ε₀) − x‖²
    diffusion: float = 1.0  # ½ γ'(t) w(γ_t) ‖ε̂ − ε‖²
    prior: float = 1.0  # KL(q(z₁ | z) ‖ N(0, I))
    consistency: float = 0.1  # ‖m²_res(x̂) − m²_daughters(x̂)‖², normalised
    vae_prior: float = 0.0  # KL(q(z | x) ‖ N(0, I)); also the CVAE's KL weight
    mass_match: float = 0.0  # ‖m²_daughters(x̂) − m²_daughters(x)‖²
    schedule_variance: bool = True  # train the shape of γ on the batch variance of the diffusion loss
    # The consistency and mass-match weights are 0 until consistency_start, then ramp up linearly over
    # consistency_warmup steps. Their gradients are orders of magnitude larger than the reconstruction's until
    # the decoder reconstructs well (masses are very sensitive to the energies), and would hold it back.
    consistency_start: int = 0
    consistency_warmup: int = 0


@dataclass(frozen=True)
class TrainOptions:
    seed: int = 0
    batch_size: int = 4096  # global batch (split over devices)
    steps: int = 1_000_000
    learning_rate: float = 5e-4
    schedule_learning_rate: float = 5e-4  # optimizer of the γ shape
    warmup_steps: int = 1000
    final_learning_rate_ratio: float = 0.01  # cosine decay from the peak to ratio × peak
    gradient_clipping: float = 1.0  # global norm
    ema_decay: float = 0.999  # parameter EMA used for validation and sampling
    log_every: int = 50
    validate_every: int = 1000
    checkpoint_every: int = 1000
    validation_batches: int = 16  # at most this many batches per validation (0: all)
    # physics while training: at every validation, the EMA model unfolds this many validation events with
    # physics_samples samples each (the run's sample.* sampler) and the mass W1s, ν pz W1 and the top-mass peak
    # width are logged next to the losses; 0 switches it off
    physics_events: int = 2000
    physics_samples: int = 2
    time_limit_minutes: float = 0.0  # stop (with a checkpoint) after this wall time; 0: none
    stop_at: int = 0  # stop (with a checkpoint) after this step, the schedules still running to `steps`; 0: none


@dataclass(frozen=True)
class SampleOptions:
    sampler: SamplerName = "dpm++"
    steps: int = 20
    spacing: Spacing = "default"
    samples: int = 1  # K posterior samples per event
    batch_size: int = 4096  # events per batch
    seed: int = 0


@dataclass(frozen=True)
class AcceptanceOptions:
    """The efficiency and fake classifiers (docs/cross_section.md): trained by ``lvd train`` after the model when
    the file holds every generated event (``--keep-unselected``), stored in the run, applied by ``lvd unfold``."""

    train: bool = True  # train them when the file allows
    # ε: a residual MLP (benchmarks/results/acceptance_toy.md: 128 × 4 blocks, batches of 1024 calibrate within
    # 0.01 in deciles where 64 × 2 left the fiducial region's mid-range 40 % too low)
    width: int = 128
    blocks: int = 4
    batch_size: int = 1024
    # f: the detector encoder (64 wide, 2 blocks, batches of 512: the fake fraction within 5 %)
    detector_width: int = 64
    detector_layers: int = 2
    detector_batch_size: int = 512
    num_heads: int = 4
    steps: int = 3000
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    validate_every: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Options:
    name: str = "lvd"
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    schedule: ScheduleOptions = field(default_factory=ScheduleOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    train: TrainOptions = field(default_factory=TrainOptions)
    sample: SampleOptions = field(default_factory=SampleOptions)
    acceptance: AcceptanceOptions = field(default_factory=AcceptanceOptions)

    def check(self) -> Options:
        """Cross-field validation; returns self."""
        m, s, t, d = self.model, self.schedule, self.train, self.data
        problems = [
            (m.hidden % m.num_heads != 0, f"model.hidden ({m.hidden}) must be divisible by model.num_heads ({m.num_heads})"),
            (s.gamma_min >= s.gamma_max, f"schedule.gamma_min ({s.gamma_min}) must be below schedule.gamma_max ({s.gamma_max})"),
            (max(abs(s.gamma_min), abs(s.gamma_max)) >= s.gamma_limit, "schedule.gamma_limit must exceed |gamma_min| and |gamma_max|"),
            (not 0.0 <= d.validation_fraction < 1.0, "data.validation_fraction must be in [0, 1)"),
            (not d.top_line_width > 0.0, "data.top_line_width must be > 0"),
            (t.batch_size <= 0, "train.batch_size must be positive"),
            (t.steps <= 0, "train.steps must be positive"),
            (t.learning_rate <= 0, "train.learning_rate must be positive"),
            (not 0.0 <= t.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
            (self.sample.samples <= 0, "sample.samples must be positive"),
            (t.physics_events < 0 or t.physics_samples <= 0, "train.physics_events must be >= 0 and "
                                                               "train.physics_samples positive"),
            (self.sample.steps <= 0, "sample.steps must be positive"),
            (self.sample.batch_size <= 0, "sample.batch_size must be positive"),
            (m.time_embedding_dim % 2 != 0, "model.time_embedding_dim must be even"),
        ]
        for bad, msg in problems:
            if bad:
                raise OptionsError(msg)
        return self


# --- presets: the packaged options files are their one source ------------------------------------------

def presets() -> tuple[str, ...]:
    """Names of the packaged options files (``options/<name>.yaml``), usable wherever a path is."""
    return tuple(sorted(p.name.removesuffix(".yaml") for p in resources.files("lvd").joinpath("options").iterdir()
                        if p.name.endswith(".yaml")))


def preset(name: str) -> Options:
    """The options of a packaged file, e.g. ``preset("small")``."""
    return load_options(name)


def paper() -> Options:
    """Stage 1 of the paper's two-stage recipe at the paper's size (``options/train.yaml``: the schema's defaults
    with the ``ttbar_chain`` representation and the settings its YAML states)."""
    return preset("train")


def finetune() -> Options:
    """Stage 2: deterministic encoder, lower learning rate, smaller consistency weight (``options/finetune.yaml``)."""
    return preset("finetune")


def small() -> Options:
    """CPU-sized (``options/small.yaml``)."""
    return preset("small")


# --- loading ----------------------------------------------------------------------------------

def _omegaconf():
    try:
        from omegaconf import OmegaConf
    except ImportError as e:  # the GPU machine's base image lacks it: say how to get it
        raise OptionsError("reading options needs omegaconf (pip install omegaconf)") from e
    return OmegaConf


def options_path(name_or_path: str | Path) -> Path:
    """A path to an options file: as given if it exists, else a packaged one (``small`` -> options/small.yaml)."""
    p = Path(name_or_path)
    if p.exists():
        if p.is_dir():
            raise OptionsError(f"{p}: is a folder, expected an options .yaml file")
        return p
    stem = p.name.removesuffix(".yaml")
    packaged = resources.files("lvd").joinpath("options", f"{stem}.yaml")
    # "small" and "options/small.yaml" (as the README writes it, in a folder without the repository) alike
    if p.parent in (Path("."), Path("options")) and packaged.is_file():
        with resources.as_file(packaged) as real:
            return Path(real)
    known = ", ".join(presets())
    raise OptionsError(f"{p}: no such options file (packaged options: {known})")


def _read_yaml_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, Any]]:
    """``[(file, DictConfig), ...]`` from the deepest ``base:`` to ``path``."""
    OmegaConf = _omegaconf()
    path = path.resolve()
    if path in seen:
        raise OptionsError(f"{path}: 'base:' files form a cycle")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # yaml.YAMLError and friends: report the file, not a traceback
        raise OptionsError(f"{path}: not a valid YAML options file: {str(e).splitlines()[0]}") from None
    if cfg is None or not hasattr(cfg, "keys"):
        return []
    chain: list[tuple[Path, Any]] = []
    base = cfg.pop("base", None)
    if base:
        base_path = (path.parent / str(base)) if not Path(str(base)).is_absolute() else Path(str(base))
        if not base_path.exists():
            base_path = options_path(str(base))
        chain = _read_yaml_chain(base_path, (*seen, path))
    return [*chain, (path, cfg)]


def load_options(path: str | Path | None = None, overrides: Sequence[str] = (),
                 defaults: Options | None = None) -> Options:
    """Defaults ← YAML chain of ``path`` ← ``overrides`` (``["train.steps=100", ...]``), validated."""
    OmegaConf = _omegaconf()
    from omegaconf.errors import OmegaConfBaseException

    merged = OmegaConf.structured(defaults or Options())
    sources: list[tuple[str, Any]] = []
    if path is not None:
        sources += [(str(p), c) for p, c in _read_yaml_chain(options_path(path))]
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise OptionsError(f"override {item!r}: expected key=value, e.g. train.steps=1000")
    if overrides:
        sources.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    for origin, cfg in sources:
        try:
            merged = OmegaConf.merge(merged, cfg)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", None) or "?"
            reason = str(e).splitlines()[0]
            raise OptionsError(f"{origin}: option '{key}': {reason}") from None
    try:
        opts = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise OptionsError(f"options: {str(e).splitlines()[0]}") from None
    return opts.check()


def to_yaml(opts: Options) -> str:
    return _omegaconf().to_yaml(_omegaconf().structured(opts))


def from_dict(d: dict) -> Options:
    """Rebuild options stored in a checkpoint (strict: unknown keys are an error)."""
    OmegaConf = _omegaconf()
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Options()), OmegaConf.create(d))).check()
    except OmegaConfBaseException as e:
        raise OptionsError(f"stored options do not match this lvd version: {str(e).splitlines()[0]}") from None


def to_dict(opts: Options) -> dict:
    return _omegaconf().to_container(_omegaconf().structured(opts))


def differences(opts: Options, reference: Options | None = None) -> dict[str, tuple[Any, Any]]:
    """``{"train.steps": (reference value, value), ...}`` for every option that differs."""
    a, b = _flatten(to_dict(reference or Options())), _flatten(to_dict(opts))
    return {k: (a.get(k), v) for k, v in b.items() if a.get(k) != v}


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
