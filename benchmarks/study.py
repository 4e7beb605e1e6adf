"""Training runs side by side: physics against events seen, and the held-out result of each (issue 13 study).

    python benchmarks/study.py TRAIN.h5 TEST.h5 --out study --steps 3000 \\
        --run "paper small" \\
        --run "chain small data.parton_representation=decay_chain" \\
        --run "vdm vdm_small data.parton_representation=decay_chain"

Each ``--run "NAME OPTIONS [key=value ...]"`` trains ``OPTIONS`` (a packaged name or a file) with the overrides,
for ``--steps`` steps (or ``--minutes`` of wall time: the same budget for every run), with the physics monitor
logging the mass and ν pz W1s at every validation — the learning curve. An ``ldm`` run first trains its
stage-1 VAE with the same options (with ``--minutes``, a fifth of the budget; its time is reported apart). The EMA model then unfolds the first
``--test-events`` events of TEST.h5 (``--samples`` K, dpm++ ``--sampler-steps``), ``lvd evaluate`` scores them,
and one row per run goes into ``DIR/study.md`` and ``DIR/study.json``:

* W1 of the four masses built from the unfolded on-shell decay products, of m(tt̄), pT(tt̄) and ν pz (with
  the W-mass quadratic solution's ν pz W1 beside it), the fraction of hadronic-top masses within ±15 GeV of
  172.5 GeV (truth's beside it);
* the classifier two-sample test AUC;
* the largest deviation from nominal of the 68 % and 95 % coverage over the report's headline observables;
* the mean over all evaluated observables of W1 / width, width = the truth's IQR/1.349 (a scale-free summary);
* the learning curve (the monitor's W1 of m_t_had, m_W_had and ν pz at each validation) in a second table.

Runs are skipped when their result is already in ``DIR/study.json`` (so a study can be extended).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np

from lvd import config
from lvd.data.schema import read_events
from lvd.evaluation.report import KEY_OBSERVABLES, evaluate
from lvd.measurement.observables import derived
from lvd.sampling.unfold import unfold_file
from lvd.training.loop import train
from lvd.training.monitor import physics_monitor

HEADLINE = ("m_t_had", "m_t_lep", "m_W_had", "m_W_lep", "m_ttbar", "pt_ttbar", "nu_pz")


def train_run(name: str, options: str, overrides: list[str], a) -> tuple[Path, dict]:
    budget = [f"train.steps={a.steps}", f"train.validate_every={a.validate_every}",
              f"train.checkpoint_every={a.validate_every}", "train.log_every=50",
              f"train.physics_events={a.physics_events}"]
    if a.minutes:
        budget.append(f"train.time_limit_minutes={a.minutes}")
    info: dict = {}
    extra: list[str] = []
    if config.load_options(options, overrides).model.kind == "ldm":
        # a wall-time budget is shared: a fifth for the stage-1 VAE (a cheap step: no detector encoder)
        split = [f"train.time_limit_minutes={0.2 * a.minutes}"] if a.minutes else []
        vae_opts = config.load_options(options, [*budget, *overrides, *split, "model.kind=vae", f"name={name}-vae",
                                                 "train.physics_events=0"])
        if a.minutes:
            budget[-1] = f"train.time_limit_minutes={0.8 * a.minutes}"
        t0 = time.time()
        vae = train(vae_opts, a.train, runs_dir=a.out / "runs")
        info["stage1_s"] = time.time() - t0
        extra.append(f"model.vae_checkpoint={vae.run_dir}")
    opts = config.load_options(options, [*budget, *overrides, *extra, f"name={name}"])
    t0 = time.time()
    r = train(opts, a.train, runs_dir=a.out / "runs", hooks=physics_monitor(opts))
    info |= {"train_s": time.time() - t0, "steps": r.step, "events_seen": r.step * opts.train.batch_size,
             "stopped_by": r.stopped_by, "run_dir": str(r.run_dir)}
    info["curve"] = [{k: h[k] for k in ("step", "w1_m_t_had", "w1_m_W_had", "w1_nu_pz", "w1_m_ttbar")}
                     for h in r.history if h["split"] == "physics"]
    return r.run_dir, info


def score(unfolded: Path, report: Path, a) -> dict:
    m = evaluate(unfolded, report, n_boot=2, seed=0, plots="key", c2st_steps=1500)
    obs = m["observables"]
    w1 = {n: obs[n]["distances"]["unfolded"]["wasserstein"]["value"] for n in obs}
    d = read_events(unfolded, require_truth=True)
    tru, unf = derived(d.truth), derived(d.unfolded)
    width = {n: np.subtract(*np.percentile(tru[n], [75, 25])) / 1.349 for n in w1}
    cov = {lv: max(abs(obs[n]["calibration"][f"coverage_{lv}"]["coverage"]
                       - obs[n]["calibration"][f"coverage_{lv}"]["nominal"]) for n in KEY_OBSERVABLES)
           for lv in ("68", "95")}
    return {"w1": {n: w1[n] for n in HEADLINE}, "w1_nu_pz_naive": obs["nu_pz"]["distances"]["naive"]["wasserstein"]["value"],
            "in_window_t_had": float(np.mean(np.abs(unf["m_t_had"] - 172.5) < 15)),
            "in_window_t_had_truth": float(np.mean(np.abs(tru["m_t_had"] - 172.5) < 15)),
            "c2st_auc": m["c2st"]["auc"], "coverage_dev_68": cov["68"], "coverage_dev_95": cov["95"],
            "mean_w1_over_width": float(np.mean([w1[n] / width[n] for n in w1 if width[n] > 0])),
            "n_observables": len(w1), "report": str(report)}


def table(results: dict) -> str:
    head = ("| run | steps | events seen | train min | m_t had/lep W1 | m_W had/lep W1 | m(tt̄) W1 | pT(tt̄) W1 "
            "| ν pz W1 (quadratic) | in ±15 GeV (truth) | C2ST AUC | max cov. dev. 68/95 | mean W1/width |")
    lines = [head, "|" + "---|" * 13]
    for name, r in results.items():
        w = r["w1"]
        lines.append(
            f"| {name} | {r['steps']:,} | {r['events_seen']:,} | {r['train_s'] / 60:.1f} "
            f"| {w['m_t_had']:.2f} / {w['m_t_lep']:.2f} | {w['m_W_had']:.2f} / {w['m_W_lep']:.2f} | {w['m_ttbar']:.1f} "
            f"| {w['pt_ttbar']:.1f} | {w['nu_pz']:.1f} ({r['w1_nu_pz_naive']:.1f}) "
            f"| {r['in_window_t_had']:.3f} ({r['in_window_t_had_truth']:.3f}) | {r['c2st_auc']:.3f} "
            f"| {r['coverage_dev_68']:.3f} / {r['coverage_dev_95']:.3f} | {r['mean_w1_over_width']:.3f} |")
    lines += ["", "Learning curves (physics monitor on validation events: W1 of m_t_had / m_W_had / ν pz / m(tt̄) in GeV)",
              "", "| run | " + " | ".join(f"step {s}" for s in _steps(results)) + " |",
              "|---|" + "---|" * len(_steps(results))]
    for name, r in results.items():
        by_step = {c["step"]: c for c in r["curve"]}
        cells = [(f"{by_step[s]['w1_m_t_had']:.1f} / {by_step[s]['w1_m_W_had']:.1f} / {by_step[s]['w1_nu_pz']:.0f}"
                  f" / {by_step[s]['w1_m_ttbar']:.0f}") if s in by_step else "" for s in _steps(results)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _steps(results: dict) -> list[int]:
    return sorted({c["step"] for r in results.values() for c in r["curve"]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train", type=Path)
    ap.add_argument("test", type=Path)
    ap.add_argument("--out", type=Path, default=Path("study"))
    ap.add_argument("--run", action="append", required=True, help='"NAME OPTIONS [key=value ...]"')
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=0.0, help="wall-time budget per run (0: --steps only)")
    ap.add_argument("--validate-every", type=int, default=500)
    ap.add_argument("--physics-events", type=int, default=2000)
    ap.add_argument("--test-events", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--sampler-steps", type=int, default=20)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    results_path = a.out / "study.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    test = a.out / f"test_{a.test_events}.h5"
    if not test.exists():
        from lvd.data.schema import write_events

        write_events(test, read_events(a.test, require_truth=True).take(slice(0, a.test_events)))
    for spec in a.run:
        name, options, *overrides = shlex.split(spec)
        if name in results:
            continue
        run_dir, info = train_run(name, options, overrides, a)
        unfolded = a.out / f"unfolded_{name}.h5"
        t0 = time.time()
        unfold_file(run_dir, test, unfolded, samples=a.samples, sampler="dpm++", steps=a.sampler_steps)
        info["unfold_s"] = time.time() - t0
        info |= score(unfolded, a.out / f"report_{name}", a)
        info["spec"] = spec
        results[name] = info
        results_path.write_text(json.dumps(results, indent=1))
        (a.out / "study.md").write_text(table(results))
        print(table({name: info}), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
