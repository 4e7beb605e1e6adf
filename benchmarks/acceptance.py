"""The efficiency and fake classifiers' calibration on an independent sample (issue 21's acceptance figures).

    python benchmarks/acceptance.py OUT_DIR [--events 100000] [--test-events 20000] [--steps 3000] [--generator toy]

Generates (``--keep-unselected``) a training and an independent test sample, trains ε(partons) on the training
sample's generated signal events and f(detector) on its selected events (:mod:`lvd.training.acceptance`), and
writes ``OUT_DIR/acceptance.md``: ε predicted vs observed in deciles of the prediction on the test sample's
generated signal events, and the fake fraction f estimates on its selected events against the true one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lvd.config import DataOptions
from lvd.data import channels
from lvd.data.representation import detector_arrays
from lvd.data.schema import decay_p4, read_events, read_generated
from lvd.runs.acceptance import AcceptanceOptions, save
from lvd.training.acceptance import train_acceptance


def generate(generator: str, path: Path, n: int, seed: int) -> None:
    if path.exists():
        return
    if generator == "toy":
        from lvd.data.generate import toy

        toy.generate_file(path, n, seed=seed, keep_unselected=True)
    else:
        from lvd.data.generate import pythia

        pythia.generate_file(path, n, seed=seed, workers=2, keep_unselected=True)


def deciles(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> list[tuple[float, float, float]]:
    """(mean predicted, observed, binomial error of the observed) in ten equal-count bins of the prediction."""
    edges = np.quantile(p, np.linspace(0, 1, 11))
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
    out = []
    for i in range(10):
        m = b == i
        obs = float(np.average(y[m], weights=w[m]))
        out.append((float(np.average(p[m], weights=w[m])), obs, float(np.sqrt(max(obs * (1 - obs), 1e-12) / m.sum()))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--test-events", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--generator", choices=["toy", "pythia"], default="toy")
    ap.add_argument("--seed", type=int, default=2100)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    train, test = a.out / "train.h5", a.out / "test.h5"
    generate(a.generator, train, a.events, a.seed)
    generate(a.generator, test, a.test_events, a.seed + 1)
    opts = AcceptanceOptions(steps=a.steps, seed=a.seed)
    t0 = time.time()
    eff, fakes = train_acceptance(train, opts=opts)
    minutes = (time.time() - t0) / 60
    save(eff, a.out / "efficiency")
    save(fakes, a.out / "fakes")

    g = read_generated(test)
    sig = g.take(np.flatnonzero(g.channel == channels.SIGNAL))
    p = eff.probability(decay_p4(sig.truth).astype(np.float32))
    y, w = sig.pass_selection.astype(float), sig.event_weights().astype(float)
    rows = deciles(p, y, w)
    worst = max(abs(pr - ob) for pr, ob, _ in rows)
    d = read_events(test)
    f = fakes.probability(*detector_arrays(d, DataOptions()))
    true_fake = float((d.generator["channel"] != channels.SIGNAL).mean())
    lines = [f"# Acceptance classifiers, {a.generator}: trained on {a.events:,} selected events "
             f"({g.n_events:,}-event test sample's generated truth), {a.steps} steps, {minutes:.1f} min",
             "", f"    python benchmarks/acceptance.py OUT --events {a.events} --test-events {a.test_events} "
             f"--steps {a.steps} --generator {a.generator}", "",
             f"Platt scaling: ε (a, b) = ({eff.platt[0]:.3f}, {eff.platt[1]:.3f}), f = ({fakes.platt[0]:.3f}, "
             f"{fakes.platt[1]:.3f}).", "",
             "| decile | ε predicted | ε observed | ± |", "|---|---|---|---|"]
    lines += [f"| {i + 1} | {pr:.4f} | {ob:.4f} | {er:.4f} |" for i, (pr, ob, er) in enumerate(rows)]
    lines += ["", f"Largest |predicted − observed|: **{worst:.4f}** (target ≤ 0.02). Mean ε predicted "
              f"{np.average(p, weights=w):.4f}, observed {np.average(y, weights=w):.4f}.", "",
              f"Fake fraction of the {d.n_events:,} selected test events: estimated **{f.mean():.4f}**, true "
              f"{true_fake:.4f} (relative {f.mean() / true_fake - 1:+.3f}; target within ±0.10)."]
    (a.out / "acceptance.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
