"""``lvd``: one entry point, one subcommand per job (DESIGN 7)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from lvd.cli import publish
from lvd.errors import LvdError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Unfold collider events with End-to-End Latent Variational Diffusion.")
generate_app = typer.Typer(no_args_is_help=True, help="Generate semi-leptonic tt̄ events into an lvd file.")
convert_app = typer.Typer(no_args_is_help=True, help="Convert other layouts to and from lvd files.")
app.add_typer(generate_app, name="generate")
app.add_typer(convert_app, name="convert")


@app.callback()
def _global_options(
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


def _check_n(n: int) -> None:
    if n <= 0:
        raise LvdError(f"-n {n}: the number of events must be positive")


@generate_app.command("toy")
def generate_toy(
    out: Annotated[Path, typer.Argument(help="Output .h5 file (written atomically).")],
    n: Annotated[int, typer.Option("-n", "--events", help="Selected events to write.")] = 100_000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; same seed, same file.")] = 0,
    shard: Annotated[str | None, typer.Option(help="k/n: shard k of n (independent random stream).")] = None,
) -> None:
    """Embedded LO tt̄ generator with a parametric detector (NumPy only, fast)."""
    from lvd.cli.progress import console, progress_bar
    from lvd.data.generate import toy

    _check_n(n)
    k, _ = parse_shard(shard)
    with progress_bar(n, "toy tt̄") as advance:
        attrs = toy.generate_file(out, n, seed=seed, shard=k, on_progress=advance)
    cf = attrs["cutflow"]
    console.print(f"wrote {out}: {n:,} selected events (selection efficiency "
                  f"{cf['min_btags'] / cf['generated']:.3f}, σ_LO = {attrs['cross_section_pb']:.0f} pb)")


@generate_app.command("pythia")
def generate_pythia(
    out: Annotated[Path, typer.Argument(help="Output .h5 file (written atomically).")],
    n: Annotated[int, typer.Option("-n", "--events", help="Selected events to write.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed; workers and shards derive theirs.")] = 0,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker processes.")] = 1,
    shard: Annotated[str | None, typer.Option(help="k/n: shard k of n (independent seeds).")] = None,
    truth: Annotated[str, typer.Option(help="Truth record: 'event' (after ISR recoil) or 'process' (LHE-like).")] = "event",
    mpi: Annotated[bool, typer.Option(help="Multi-parton interactions (the underlying event; ~5x slower).")] = True,
) -> None:
    """Pythia 8 + FastJet semi-leptonic tt̄ (needs the [generate] extra)."""
    from lvd.cli.progress import console, progress_bar
    from lvd.data.generate import pythia

    _check_n(n)
    k, n_shards = parse_shard(shard)
    if workers < 1:
        raise LvdError(f"--workers {workers}: need at least 1")
    if truth not in ("event", "process"):
        raise LvdError(f"--truth {truth!r}: choose 'event' or 'process'")
    with progress_bar(n, "pythia tt̄") as advance:
        attrs = pythia.generate_file(out, n, seed=seed, workers=workers, shard=k, n_shards=n_shards,
                                     truth=truth, mpi=mpi, on_progress=advance)
    cf = attrs["cutflow"]
    console.print(f"wrote {out}: {n:,} selected events (selection efficiency "
                  f"{cf['min_btags'] / cf['generated']:.3f} of generated e/μ+jets)")


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


# Other people's files in, publishable histograms out (the command bodies are in lvd.cli.publish).
convert_app.command("delphes")(publish.convert_delphes)
convert_app.command("nanoaod")(publish.convert_nanoaod)
convert_app.command("spanet")(publish.convert_spanet)
app.command("histogram")(publish.histogram_cmd)


@app.command("train", context_settings={"allow_interspersed_args": True})
def train_cmd(
    options: Annotated[str, typer.Argument(help="Options .yaml (or a packaged name: small, train, finetune).")],
    data: Annotated[Path, typer.Argument(help="Training events (.h5 lvd file or original-layout .npz).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value option overrides, e.g. train.steps=1000.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model kind: lvd, vdm, ldm, cvae, cinn, vae.")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Resume (same options) or warm-start from a run/checkpoint.")] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Run name (folder under --runs-dir).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Per-event weights .npy (replaces the file's).")] = None,
    start_batch: Annotated[int | None, typer.Option("--start-batch", "-s", help="Accepted for the original code's convention; resuming is exact from the checkpoint's step.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run folders are created.")] = Path("runs"),
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Train a model (LVD by default) on simulated events; see options/*.yaml."""
    from lvd.cli.train import run_train

    run_train(options, data, overrides or [], model=model, checkpoint=checkpoint, name=name, weights=weights,
              start_batch=start_batch, runs_dir=runs_dir, quiet=quiet)


@app.command("unfold")
def unfold_cmd(
    run: Annotated[Path, typer.Argument(help="Run folder or checkpoint (a run uses its best checkpoint).")],
    data: Annotated[Path, typer.Argument(help="Detector-level events (.h5).")],
    out: Annotated[Path, typer.Argument(help="Output .h5: the inputs plus UNFOLDED/<particle>/<feature> [N, K].")],
    samples: Annotated[int | None, typer.Option("--samples", "-k", help="Posterior samples per event.")] = None,
    sampler: Annotated[str | None, typer.Option(help="ancestral, ddim or dpm++.")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    spacing: Annotated[str | None, typer.Option(help="Time grid: t or lambda (default: the sampler's).")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="Rows (events × samples) per batch.")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed.")] = None,
) -> None:
    """Draw K parton-level samples for every event of a file."""
    from lvd.cli.progress import console, progress_bar
    from lvd.data.schema import count_events
    from lvd.models.samplers import SAMPLERS
    from lvd.sampling.unfold import Unfolder, unfold_file

    if sampler is not None and sampler not in SAMPLERS:
        raise LvdError(f"--sampler {sampler!r}: choose one of {', '.join(SAMPLERS)}")
    if spacing is not None and spacing not in ("t", "lambda"):
        raise LvdError(f"--spacing {spacing!r}: choose t or lambda")
    for name, v in (("--samples", samples), ("--steps", steps), ("--batch", batch)):
        if v is not None and v <= 0:
            raise LvdError(f"{name} {v}: must be positive")
    from lvd import distributed

    multi = distributed.process_count() > 1
    u = None if multi else Unfolder.load(run)  # with several processes each loads its own (local devices)
    n = count_events(data)
    t0 = time.time()
    with progress_bar(n if not multi else None, f"unfold ({u.options.model.kind if u else 'process'})") as advance:
        attrs = unfold_file(run, data, out, samples=samples, sampler=sampler, steps=steps, spacing=spacing,
                            batch_size=batch, seed=seed, on_progress=advance, unfolder=u)
    dt = time.time() - t0
    if not distributed.is_main():
        return
    console.print(f"wrote {out}: {attrs['samples_per_event']} samples per event with {attrs['sampler']} "
                  f"({attrs['sampler_steps']} steps) from {attrs['checkpoint']} in {dt:.1f} s")


@app.command("evaluate")
def evaluate_cmd(
    unfolded: Annotated[Path, typer.Argument(help="Output of lvd unfold.")],
    truth: Annotated[Path | None, typer.Option("--truth", "-t", help="File with the parton-level truth (default: the unfolded file's own TRUTH).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder (default: <unfolded>_report).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicas for the uncertainties.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the classifier test.")] = 0,
    plots: Annotated[str, typer.Option(help="PNG/PDF plots: all, key (headline observables only) or none.")] = "all",
    c2st_steps: Annotated[int, typer.Option(help="Training steps of the classifier two-sample test.")] = 1500,
) -> None:
    """Distances, calibration, classifier test, plots and a report for unfolded samples."""
    from lvd.cli.headline import print_headline
    from lvd.cli.progress import console
    from lvd.evaluation.report import evaluate

    if bootstrap < 0:
        raise LvdError(f"--bootstrap {bootstrap}: must be >= 0")
    if plots not in ("all", "key", "none"):
        raise LvdError(f"--plots {plots}: expected all, key or none")
    if c2st_steps <= 0:
        raise LvdError(f"--c2st-steps {c2st_steps}: must be positive")
    out = out or unfolded.with_name(unfolded.stem + "_report")
    with console.status("evaluating") as status:
        result = evaluate(unfolded, out, truth, n_boot=bootstrap, seed=seed, plots=plots, c2st_steps=c2st_steps,
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
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for data, run, unfolded samples and report.")] = Path("lvd-demo"),
    quick: Annotated[bool, typer.Option(help="A few-minute version (tiny data and model) used by the tests.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of everything.")] = 0,
) -> None:
    """Generate toy data, train a small LVD, unfold held-out events, evaluate: the whole chain on this machine."""
    from lvd.cli.demo import run_demo

    run_demo(out, quick=quick, seed=seed)


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

    from lvd import benchmark, config
    from lvd.cli.progress import console

    opts = config.load_options(options, overrides or [])
    samplers = []
    for item in sampler or ["dpm++:20"]:
        name, _, n = item.partition(":")
        if not n.isdigit():
            raise LvdError(f"--sampler {item!r}: expected SAMPLER:STEPS, e.g. dpm++:20")
        samplers.append((name, int(n)))
    with console.status("benchmarking") as status:
        r = benchmark.run(opts, options, n_events=events, train_steps=steps, samplers=tuple(samplers),
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
    """Console entry point: user errors are one line on stderr and exit status 2, never a traceback."""
    try:
        app()
    except LvdError as e:
        print(f"lvd: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("lvd: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
