"""The top-mass measurement end to end (issue 12): a model trained on a mass range against one trained at 172.5.

    bash scripts/make_top_mass_samples.sh DATA toy           # or pythia (MPI off), or both
    python benchmarks/top_mass_study.py DATA --generator toy --out OUT --steps 4000 [key=value ...]

Trains two models with the same options and budget — on ``{gen}_train_range.h5`` (top masses uniform in
166–179 GeV) and on ``{gen}_train_nominal.h5`` (172.5 GeV only) — then, with each, unfolds the pseudo-data at
170, 172.5 and 175 GeV and the independent calibration samples at the same masses (``--samples`` K, DPM-Solver++
20 steps), and runs ``lvd measure top-mass`` (pseudo-data calibrated on the calibration samples). ``--init RUN``
starts from a trained run instead (with options that differ only in ``train.steps`` that run is continued in its
own folder, as ``lvd train`` resumes; otherwise a warm start: the run's normalisation, new optimiser schedules), and
``--nominal-run RUN`` takes a run trained at 172.5 as the nominal model as it is. Writes
``OUT/<model>/top_mass.json`` and ``top_mass.png`` per model and a side-by-side table ``OUT/top_mass.md``.
Rerun after an interruption, it resumes an unfinished training from its last checkpoint and skips the unfolded
files that exist.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lvd import config
from lvd.measurement.top_mass import measure
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train
from lvd.training.monitor import physics_monitor

MASSES = ("170", "172.5", "175")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--generator", default="toy")
    ap.add_argument("--out", type=Path, default=Path("top-mass-study"))
    ap.add_argument("--options", default="small")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--models", default="range,nominal")
    ap.add_argument("--init", type=Path, help="start every model from this run: with the same options but "
                    "train.steps the run is continued in its own folder to --steps in all (the learning-rate "
                    "schedule stretched to the new length); with other options, a warm start for --steps")
    ap.add_argument("--nominal-run", type=Path, help="an existing run trained at 172.5 only, used as the 'nominal' "
                    "model as it is (no training)")
    ap.add_argument("--calib-masses", default=",".join(MASSES),
                    help="masses of the calibration samples {gen}_calib_{m}.h5 (comma-separated)")
    ap.add_argument("--method", default="mean", help="lvd measure top-mass --method (mean or likelihood)")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_intermixed_args()
    a.out.mkdir(parents=True, exist_ok=True)
    g = a.generator
    rows = {}
    for prior in a.models.split(","):
        folder = a.out / prior
        folder.mkdir(exist_ok=True)
        run = folder / "run"
        if prior == "nominal" and a.nominal_run is not None:
            run.mkdir(exist_ok=True)
            (run / "done").write_text(str(a.nominal_run.absolute()))
        if not (run / "done").exists():
            # an interrupted run of this study (same name, same options) is resumed rather than restarted
            earlier = sorted(run.glob(f"top-mass-{g}-{prior}/version_*/checkpoints/latest/*"))  # a saved step
            start = a.init or (earlier[-1].parents[2] if earlier else None)
            opts = config.load_options(a.options, [f"train.steps={a.steps}", "train.validate_every=1000",
                                                    "train.checkpoint_every=1000", *a.overrides,
                                                    f"name=top-mass-{g}-{prior}"])
            r = train(opts, a.data / f"{g}_train_{prior}.h5", runs_dir=run, hooks=physics_monitor(opts),
                      checkpoint=start)
            run.mkdir(exist_ok=True)  # a continued run (--init) lives in its own folder, not under run/
            (run / "done").write_text(str(r.run_dir))
        run_dir = Path((run / "done").read_text())
        files = {}
        calib_masses = a.calib_masses.split(",")
        for kind, masses in (("pseudo", MASSES), ("calib", calib_masses)):
            for m in masses:
                out = folder / f"unfolded_{kind}_{m}.h5"
                if not out.exists():
                    unfold_file(run_dir, a.data / f"{g}_{kind}_{m}.h5", out, samples=a.samples, sampler="dpm++",
                                steps=20)
                files[kind, m] = out
        report = measure([files["pseudo", m] for m in MASSES], [files["calib", m] for m in calib_masses], folder,
                         method=a.method)
        rows[prior] = report
    lines = [f"method: {a.method}", "",
             "| training prior | calibration slope | " + " | ".join(f"m_t = {m}: raw / calibrated ± stat ± calib."
                                                                 for m in MASSES)
             + " | closure slope |", "|---|---|" + "---|" * len(MASSES) + "---|"]
    for prior, r in rows.items():
        cal, closure = r["calibration"], r.get("closure", {"slope": float("nan"), "slope_stat": float("nan")})
        cells = [f"{e['raw']:.3f} / {e['calibrated']:.2f} ± {e['calibrated_stat']:.2f} ± {e['calibration_stat']:.2f}"
                 for e in r["measurements"]]
        lines.append(f"| {prior} | {cal['slope']:.3f} ± {cal['cov'][1][1] ** 0.5:.3f} | " + " | ".join(cells)
                     + f" | {closure['slope']:.2f} ± {closure['slope_stat']:.2f} |")
    table = "\n".join(lines) + "\n"
    (a.out / "top_mass.md").write_text(table)
    (a.out / "top_mass.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
