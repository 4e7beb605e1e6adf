"""``lvd``: one entry point, one subcommand per job.

Short flags mean the same thing in every command: ``-c`` checkpoint, ``-e`` events, ``-j`` worker processes,
``-k`` samples per event, ``-m`` model kind, ``-n`` run name, ``-o`` output, ``-s`` seed, ``-t`` truth file,
``-w`` weights. Choices are listed in ``--help`` and come from :mod:`lvd.config`, their one source.
"""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated

import typer

try:  # recent typer releases carry their own copy of click; older ones use click itself
    from typer._click import exceptions as parser_errors
except ImportError:
    from click import exceptions as parser_errors

from lvd import config
from lvd.cli import convert, histogram
from lvd.errors import LvdError
from lvd.version import __version__


def _choices(name: str, values) -> type[enum.Enum]:
    """A string enum of ``values`` (typer shows its members as the choices in ``--help``)."""
    return enum.Enum(name, {v: v for v in values}, type=str)


ModelKind = _choices("ModelKind", config.MODEL_KINDS)
Sampler = _choices("Sampler", config.SAMPLER_NAMES)
TopMassMethod = _choices("TopMassMethod", config.TOP_MASS_METHODS)
Spacing = _choices("Spacing", config.SPACINGS)
TruthRecord = _choices("TruthRecord", ("event", "process"))
Plots = _choices("Plots", ("all", "key", "none"))

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Unfold collider events with End-to-End Latent Variational Diffusion.")
generate_app = typer.Typer(no_args_is_help=True, help="Generate semi-leptonic tt̄ events into an lvd file.")
convert_app = typer.Typer(no_args_is_help=True, help="Convert other layouts to and from lvd files.")
app.add_typer(generate_app, name="generate")
app.add_typer(convert_app, name="convert")
measure_app = typer.Typer(no_args_is_help=True, help="Measure physics parameters from unfolded events.")
app.add_typer(measure_app, name="measure")


def _version(value: bool) -> None:
    if value:
        print(f"lvd {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    coordinator: Annotated[str | None, typer.Option(help="Multi-process: address HOST:PORT of process 0's coordinator.")] = None,
    num_processes: Annotated[int | None, typer.Option(help="Multi-process: number of processes.")] = None,
    process_id: Annotated[int | None, typer.Option(help="Multi-process: this process's index.")] = None,
) -> None:
    """Start JAX's distributed runtime when launched as one of several processes (explicit, Slurm or Open MPI)."""
    from lvd import distributed

    distributed.initialize(coordinator, num_processes, process_id)


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``"k/n"`` -> ``(k, n)`` with ``0 <= k < n``; None -> ``(0, 1)``."""
    if shard is None:
        return 0, 1
    try:
        k, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise LvdError(f"--shard {shard!r}: expected k/n, e.g. 0/4") from None
    if not 0 <= k < n:
        raise LvdError(f"--shard {shard!r}: need 0 <= k < n")
    return k, n


def _check_events(n: int) -> None:
    if n <= 0:
        raise LvdError(f"--events {n}: the number of events must be positive")


@generate_app.command("toy")
def generate_toy(
    out: Annotated[Path, typer.Argument(help="Output .h5 file (written atomically).")],
    n: Annotated[int, typer.Option("--events", "-e", help="Selected events to write.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; same seed, same file.")] = 0,
    shard: Annotated[str | None, typer.Option(help="k/n: shard k of n (independent random stream).")] = None,
    top_mass: Annotated[float | None, typer.Option(help="Top pole mass in GeV for every event (default 172.5).")] = None,
    top_mass_range: Annotated[str | None, typer.Option(help="LO:HI in GeV, e.g. 169:176: top masses drawn uniformly, one per event; stored per event in GENERATOR/top_mass.")] = None,
    top_width: Annotated[float | None, typer.Option(help="Top width in GeV at every mass (default: the LO SM width, ∝ m_t³(1-x)²(1+2x), x = m_W²/m_t², 1.32 GeV at 172.5).")] = None,
    keep_unselected: Annotated[bool, typer.Option("--keep-unselected", help="Every tt̄ channel at its branching fraction (τ, dileptonic and all-hadronic events too, labelled in GENERATOR/channel), and the truth of every generated event, selected or not, in GENERATED (for efficiencies and cross sections).")] = False,
) -> None:
    """Embedded LO tt̄ generator with a parametric detector (NumPy only, fast)."""
    from lvd.cli.progress import console, progress_bar
    from lvd.data.generate import toy
    from lvd.data.generate.top_mass import TopMass

    _check_events(n)
    k, _ = parse_shard(shard)
    top = TopMass.from_options(top_mass, top_mass_range, top_width)
    cfg = toy.ToyConfig(top=top)  # checks the masses against the toy's Breit–Wigner windows
    with progress_bar(n, "toy tt̄") as advance:
        attrs = toy.generate_file(out, n, seed=seed, shard=k, on_progress=advance, cfg=cfg,
                                  keep_unselected=keep_unselected)
    cf = attrs["cutflow"]
    console.print(f"wrote {out}: {n:,} selected events (selection efficiency "
                  f"{cf['min_btags'] / cf['generated']:.3f}, σ_LO = {attrs['cross_section_pb']:.0f} pb, "
                  f"top mass {top.describe()})")
    if keep_unselected:
        console.print(f"  {cf['generated']:,} generated tt̄ events in GENERATED (all channels), "
                      f"{attrs['luminosity_inv_fb']:.4g} fb⁻¹")


@generate_app.command("pythia")
def generate_pythia(
    out: Annotated[Path, typer.Argument(help="Output .h5 file (written atomically).")],
    n: Annotated[int, typer.Option("--events", "-e", help="Selected events to write.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; workers and shards derive theirs.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Worker processes.")] = 1,
    shard: Annotated[str | None, typer.Option(help="k/n: shard k of n (independent seeds).")] = None,
    truth: Annotated[TruthRecord, typer.Option(help="Truth record: event (after ISR recoil) or process (LHE-like).")] = TruthRecord.event,
    mpi: Annotated[bool, typer.Option(help="Multi-parton interactions (the underlying event; ~5x slower).")] = True,
    top_mass: Annotated[float | None, typer.Option(help="Top pole mass in GeV for every event (default 172.5).")] = None,
    top_mass_range: Annotated[str | None, typer.Option(help="LO:HI in GeV, e.g. 169:176: top masses drawn uniformly, one per batch of events (Pythia is re-initialised at each); stored per event in GENERATOR/top_mass.")] = None,
    top_width: Annotated[float | None, typer.Option(help="Top width in GeV at every mass (default: the LO SM width, ∝ m_t³(1-x)²(1+2x), x = m_W²/m_t², 1.32 GeV at 172.5).")] = None,
    keep_unselected: Annotated[bool, typer.Option("--keep-unselected", help="Every tt̄ channel at Pythia's branching fractions (labelled in GENERATOR/channel), and the truth of every generated event, selected or not, in GENERATED (for efficiencies and cross sections).")] = False,
) -> None:
    """Pythia 8 + FastJet semi-leptonic tt̄ (needs the \\[generate] extra: pip install 'lvd\\[generate]')."""
    from lvd.cli.progress import console, progress_bar
    from lvd.data.generate import pythia
    from lvd.data.generate.top_mass import TopMass

    _check_events(n)
    k, n_shards = parse_shard(shard)
    if workers < 1:
        raise LvdError(f"--workers {workers}: need at least 1")
    top = TopMass.from_options(top_mass, top_mass_range, top_width)
    with progress_bar(n, "pythia tt̄") as advance:
        attrs = pythia.generate_file(out, n, seed=seed, workers=workers, shard=k, n_shards=n_shards,
                                     truth=truth.value, mpi=mpi, on_progress=advance,
                                     cfg=pythia.PythiaConfig(top=top), keep_unselected=keep_unselected)
    cf = attrs["cutflow"]
    which = "tt̄ (all channels)" if keep_unselected else "e/μ+jets"
    console.print(f"wrote {out}: {n:,} selected events (selection efficiency "
                  f"{cf['min_btags'] / cf['generated']:.3f} of generated {which}, top mass {top.describe()}, "
                  f"σ = {attrs['cross_section_pb']:.1f} ± {attrs['cross_section_error_pb']:.1f} pb)")


@app.command("inspect")
def inspect_cmd(
    file: Annotated[Path, typer.Argument(help="An lvd event file (.h5).")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Counts, features, ranges, selection summary and weight sum of an event file."""
    from lvd.cli.inspect import inspect_file

    inspect_file(file, as_json=json_out)


@app.command("merge")
def merge_cmd(
    out: Annotated[Path, typer.Argument(help="Merged output file.")],
    inputs: Annotated[list[Path], typer.Argument(help="Files to concatenate, in order.")],
) -> None:
    """Concatenate event files (e.g. generator shards) losslessly."""
    from lvd.cli.progress import console
    from lvd.data.merge import merge_files

    n = merge_files(out, inputs)
    console.print(f"wrote {out}: {n:,} events from {len(inputs)} files")


@convert_app.command("npz")
def convert_npz(
    inp: Annotated[Path, typer.Argument(help="Original-layout .npz (parton_features, detector_features, ...).")],
    out: Annotated[Path, typer.Argument(help="Output lvd .h5 file.")],
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Per-event weights .npy.")] = None,
    detector_features: Annotated[str | None, typer.Option(help="Comma-separated names of the detector features.")] = None,
    met_features: Annotated[str | None, typer.Option(help="Comma-separated names of the MET features.")] = None,
) -> None:
    """Import the original LVD code's .npz layout."""
    from lvd.cli.progress import console
    from lvd.data.convert import read_original_npz
    from lvd.data.schema import FileLayout, write_events

    data = read_original_npz(inp, weights, _split(detector_features), _split(met_features))
    layout = FileLayout(source_features=tuple(data.source), met_features=tuple(data.met))
    write_events(out, data, layout)
    console.print(f"wrote {out}: {data.n_events:,} events, detector features {', '.join(data.source)}")


# Other people's files in (lvd.cli.convert), publishable histograms out (lvd.cli.histogram).
convert_app.command("delphes")(convert.convert_delphes)
convert_app.command("nanoaod")(convert.convert_nanoaod)
convert_app.command("spanet")(convert.convert_spanet)
app.command("histogram")(histogram.histogram_cmd)


@app.command("train", context_settings={"allow_interspersed_args": True})
def train_cmd(
    options: Annotated[str, typer.Argument(help="Options .yaml (or a packaged name: small, train, finetune).")],
    data: Annotated[Path, typer.Argument(help="Training events (.h5 lvd file or original-layout .npz).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value option overrides, e.g. train.steps=1000.")] = None,
    model: Annotated[ModelKind | None, typer.Option("--model", "-m", help="Model kind (default: the options').")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Resume (same options) or warm-start from a run/checkpoint.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Run name (folder under --runs-dir).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Per-event weights .npy (replaces the file's).")] = None,
    start_batch: Annotated[int | None, typer.Option("--start-batch", help="Accepted for the original code's convention; resuming is exact from the checkpoint's step.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders are created.")] = Path("runs"),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    ensemble: Annotated[int | None, typer.Option("--ensemble", help="Train N members differing only in train.seed (seed + m), as runs NAME-0 ... NAME-{N-1}; rerun to continue an interrupted ensemble.")] = None,
) -> None:
    """Train a model (LVD by default) on simulated events; see options/*.yaml."""
    from lvd.cli.train import run_train

    run_train(options, data, overrides or [], model=model and model.value, checkpoint=checkpoint, name=name, weights=weights,
              start_batch=start_batch, runs_dir=runs_dir, quiet=quiet, ensemble=ensemble)


@app.command("unfold", context_settings={"allow_interspersed_args": True})
def unfold_cmd(
    args: Annotated[list[str], typer.Argument(metavar="RUN [RUN ...] DATA OUT [sample.key=value ...]", help="Run folder(s) or checkpoint(s) (a run uses its best checkpoint; several runs: an ensemble, pooled), the detector-level events (.h5), the output .h5 (the inputs plus UNFOLDED/<particle>/<feature> [N, K]), then sample.key=value overrides of the (first) checkpoint's sampling options, e.g. sample.steps=30.")],
    samples: Annotated[int | None, typer.Option("--samples", "-k", help="Posterior samples per event (sample.samples).")] = None,
    sampler: Annotated[Sampler | None, typer.Option(help="Sampler (sample.sampler).")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps (sample.steps).")] = None,
    spacing: Annotated[Spacing | None, typer.Option(help="Time grid (sample.spacing; default: the sampler's own).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Rows (events × samples) per batch (sample.batch_size).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", "-s", help="Sampling seed (sample.seed).")] = None,
) -> None:
    """Draw K parton-level samples for every event of a file.

    Every sampling option defaults to the value stored in the checkpoint (its options' sample.* section, as
    trained); flags and sample.key=value overrides change them for this unfolding only. With several runs (an
    ensemble: lvd train --ensemble N) each member draws K samples per event, written as K·M draws per event.
    """
    from lvd.cli.unfold import run_unfold

    flags = {"samples": samples, "sampler": sampler and sampler.value, "steps": steps,
             "spacing": spacing and spacing.value, "batch_size": batch, "seed": seed}
    run_unfold(args, flags)


@app.command("options")
def options_cmd(
    options: Annotated[str, typer.Argument(help="Options .yaml (or a packaged name: small, train, finetune, ...).")] = "train",
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value option overrides, e.g. train.steps=1000.")] = None,
    model: Annotated[ModelKind | None, typer.Option("--model", "-m", help="Model kind (default: the options').")] = None,
    changed: Annotated[bool, typer.Option("--changed", help="Only the options that differ from the defaults.")] = False,
) -> None:
    """Print the resolved options (defaults ← YAML chain ← overrides) as YAML, without training."""
    from lvd.cli.train import resolve_options

    opts = resolve_options(options, overrides or [], model and model.value, None)
    if changed:
        for k, (default, value) in sorted(config.differences(opts).items()):
            print(f"{k}: {value}    # default {default}")
    else:
        print(config.to_yaml(opts), end="")


@measure_app.command("top-mass")
def measure_top_mass_cmd(
    unfolded: Annotated[list[Path], typer.Argument(help="Output(s) of lvd unfold (e.g. data, or pseudo-data at several masses).")],
    calibration: Annotated[list[Path] | None, typer.Option("--calibration", help="Unfolded samples at known masses (repeatable) for the calibration curve.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for top_mass.json and the plot.")] = Path("top_mass"),
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicas for the statistical uncertainty.")] = 200,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the bootstrap.")] = 0,
    method: Annotated[TopMassMethod, typer.Option(help="mean: the events' posterior-mean top mass, calibrated (robust; needs --calibration to be a mass); likelihood: the prior-divided likelihood of the posterior draws (exact only for exact posteriors).")] = config.TOP_MASS_METHODS[0],
) -> None:
    """The top mass from unfolded events, calibrated on samples at known masses unfolded by the same model
    (docs/design.md §8)."""
    from lvd.cli.progress import console
    from lvd.measurement.top_mass import measure

    if bootstrap < 2:
        raise LvdError(f"--bootstrap {bootstrap}: need at least 2 replicas")
    method = getattr(method, "value", method)
    with console.status("measuring the top mass"):
        report = measure(unfolded, calibration or [], out, n_boot=bootstrap, seed=seed, method=method)
    cal = report.get("calibration")
    if cal:
        console.print(f"calibration on {len(cal['points'])} samples: slope {cal['slope']:.3f} ± "
                      f"{cal['cov'][1][1] ** 0.5:.3f}, raw − true at 172.5 GeV {cal['offset'] + (cal['slope'] - 1) * 172.5:+.2f} GeV")
    elif method == "mean":
        console.print("no --calibration: the raw values are the events' mean posterior-mean top mass, which leans "
                      "toward the training prior; they are not a measurement until calibrated")
    for e in report["measurements"]:
        line = f"{e['file']}: raw {e['raw']:.2f} ± {e['stat']:.2f} GeV"
        if e["calibrated"] is not None:
            line += (f", calibrated {e['calibrated']:.2f} ± {e['calibrated_stat']:.2f} (stat) "
                     f"± {e['calibration_stat']:.2f} (calibration) GeV")
        if e["true_mass"] is not None:
            line += f" (generated {e['true_mass']:.2f})"
        console.print(line)
    if "closure" in report:
        c = report["closure"]
        console.print(f"closure: calibrated against generated, slope {c['slope']:.3f} ± {c['slope_stat']:.3f}")
    console.print(f"written: {out / 'top_mass.json'}, {out / 'top_mass.png'}")


@app.command("reweight")
def reweight_cmd(
    unfolded: Annotated[Path, typer.Argument(help="Output of lvd unfold.")],
    out: Annotated[Path, typer.Argument(help="Output .h5: the same events with samples that follow the data's distribution.")],
    observable: Annotated[list[str] | None, typer.Option("--observable", help="Observable(s) to iterate in (repeatable, reweighted in their product: use independent ones; default pt_t_had).")] = None,
    reference: Annotated[Path | None, typer.Option("--reference", "-r", help="The same model's unfolding of independent simulated events from its training distribution: its draws replace the training truth as the prior (corrects for the model's own imperfection; recommended).")] = None,
    iterations: Annotated[int, typer.Option(help="Reweighting iterations (0: the plain unfolding, resampled).")] = 4,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the resampling.")] = 0,
) -> None:
    """Iteratively replace the training prior by the data's unfolded distribution (iterative Bayesian unfolding
    on the posterior samples, no retraining; docs/design.md §8)."""
    from lvd.cli.progress import console
    from lvd.measurement.reweight import reweight_file

    s = reweight_file(unfolded, out, tuple(observable or ("pt_t_had",)), iterations, seed, reference)
    console.print(f"wrote {out}: samples reweighted in {', '.join(s['reweighted_observables'])} over "
                  f"{s['reweighting_iterations']} iterations (median {s['effective_draws_median']:.1f} effective draws "
                  "per event)")


@app.command("evaluate")
def evaluate_cmd(
    unfolded: Annotated[Path, typer.Argument(help="Output of lvd unfold.")],
    truth: Annotated[Path | None, typer.Option("--truth", "-t", help="File with the parton-level truth (default: the unfolded file's own TRUTH).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: <unfolded>_report).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicas for the uncertainties.")] = 20,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the bootstrap and the classifier test.")] = 0,
    plots: Annotated[Plots, typer.Option(help="PNG/PDF plots: all, key (headline observables only) or none.")] = Plots.all,
    c2st_steps: Annotated[int, typer.Option(help="Training steps of the classifier two-sample test.")] = 1500,
) -> None:
    """Distances, calibration, classifier test, plots and a report for unfolded samples."""
    from lvd.cli.headline import print_headline
    from lvd.cli.progress import console
    from lvd.evaluation.report import evaluate

    if bootstrap < 0:
        raise LvdError(f"--bootstrap {bootstrap}: must be >= 0")
    if c2st_steps <= 0:
        raise LvdError(f"--c2st-steps {c2st_steps}: must be positive")
    out = out or unfolded.with_name(unfolded.stem + "_report")
    with console.status("evaluating") as status:
        result = evaluate(unfolded, out, truth, n_boot=bootstrap, seed=seed, plots=plots.value, c2st_steps=c2st_steps,
                          on_progress=lambda s: status.update(f"evaluating: {s}"))
    print_headline(result)
    console.print(f"report: {out / 'report.md'} (metrics.json, metrics.csv, plots/)")


@app.command("compare")
def compare_cmd(
    reports: Annotated[list[Path], typer.Argument(help="Report folders written by lvd evaluate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("comparison"),
) -> None:
    """Several models' metrics side by side (best per row marked) and overlay plots."""
    from lvd.cli.progress import console
    from lvd.evaluation.compare import compare

    path = compare(reports, out)
    console.print(path.read_text())
    console.print(f"written: {path}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for data, unfolded samples and report (and the run).")] = Path("lvd-demo"),
    train: Annotated[bool, typer.Option("--train", help="Train a small LVD from scratch instead of using the shipped one.")] = False,
    quick: Annotated[bool, typer.Option(help="About a minute: fewer events and samples (and a tiny model with --train).")] = False,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Seed of the fresh events, the sampling (and the training).")] = 0,
) -> None:
    """Unfold fresh toy events with the LVD model shipped with lvd and evaluate them (--train: the whole chain
    from scratch: generate, train, unfold, evaluate)."""
    from lvd.cli.demo import run_demo

    run_demo(out, quick=quick, seed=seed, from_scratch=train)


@app.command("bench")
def bench_cmd(
    options: Annotated[str, typer.Argument(help="Options .yaml or packaged name (small, train, ...).")] = "small",
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.batch_size=4096.")] = None,
    steps: Annotated[int, typer.Option(help="Timed train steps.")] = 20,
    sampler: Annotated[list[str] | None, typer.Option(help="SAMPLER:STEPS to time (repeatable); default dpm++:20.")] = None,
    events: Annotated[int, typer.Option(help="Toy events to generate (0: automatic).")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the results as JSON.")] = None,
) -> None:
    """Train-step and unfolding speed, FLOP rate against this machine's matmul rate, peak memory."""
    import dataclasses
    import json

    from rich.table import Table

    from lvd import config, speed
    from lvd.cli.progress import console

    opts = config.load_options(options, overrides or [])
    samplers = []
    for item in sampler or ["dpm++:20"]:
        name, _, n = item.partition(":")
        if not n.isdigit():
            raise LvdError(f"--sampler {item!r}: expected SAMPLER:STEPS, e.g. dpm++:20")
        samplers.append((name, int(n)))
    with console.status("benchmarking") as status:
        r = speed.run(opts, options, n_events=events, train_steps=steps, samplers=tuple(samplers),
                      say=lambda s: status.update(f"benchmarking: {s}"))
    t = Table(title="lvd bench", title_justify="left")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for k, v in r.table():
        t.add_row(k, v)
    console.print(t)
    if json_out is not None:
        json_out.write_text(json.dumps(dataclasses.asdict(r), indent=1))
        console.print(f"written: {json_out}")


def _split(s: str | None) -> list[str] | None:
    return None if s is None else [x.strip() for x in s.split(",") if x.strip()]


def main() -> None:
    """Console entry point: user errors are one line on stderr and exit status 2, never a traceback.

    That includes what the argument parser rejects (an unknown option, a choice not in the list, a missing
    argument): one line naming the option, with the command's ``--help`` as the hint.
    """
    try:
        code = app(standalone_mode=False)
    except parser_errors.NoArgsIsHelpError as e:
        print(e.ctx.get_help(), file=sys.stderr)
        sys.exit(2)
    except parser_errors.UsageError as e:
        where = f" (see {e.ctx.command_path} --help)" if e.ctx is not None else ""
        print(f"lvd: error: {e.format_message()}{where}", file=sys.stderr)
        sys.exit(2)
    except LvdError as e:
        print(f"lvd: error: {e}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        print("lvd: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
