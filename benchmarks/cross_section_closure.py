"""Cross-section closure on an independent sample: the unfolded, efficiency- and fake-corrected dσ/dx against the
generator's truth of every signal event (issue 21's acceptance table).

    python benchmarks/cross_section_closure.py TEST.h5 ACCEPTANCE_DIR OUT.md [--unfolded UNFOLDED.h5] [--bins 8]

``TEST.h5``: a sample generated with ``--keep-unselected`` (never seen by the classifiers); ``ACCEPTANCE_DIR``: the
``efficiency/`` and ``fakes/`` classifiers (``benchmarks/acceptance.py`` writes them). Without ``--unfolded`` the
draws are the selected events' own truth (an *oracle* unfolding: what the corrections do alone, the fakes' draws
then being their own non-signal truth rather than a signal posterior); with it, an ``lvd unfold`` output of
``TEST.h5``. For top pT, m(tt̄), y(tt̄) and pT(tt̄) in equal-count bins of the generated signal truth: χ²/bin of
the corrected dσ/dx against the truth with the estimate's statistical covariance, and the same for the
uncorrected one (every event signal, ε = 1), with the efficiency only, and with ε and the true labels (the
efficiency classifier alone); the total cross section against the truth's (the generated signal events over the
luminosity).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lvd.data import channels
from lvd.data.schema import read_events, read_generated
from lvd.data.unfolded import read_unfolded
from lvd.measurement.cross_section import Acceptance, cross_section
from lvd.measurement.histogram import observable_values
from lvd.measurement.phase_space import load_phase_space
from lvd.runs.acceptance import acceptance_weights

OBSERVABLES = ("pt_t_had", "m_ttbar", "y_ttbar", "pt_ttbar")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("test", type=Path)
    ap.add_argument("acceptance", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--unfolded", type=Path)
    ap.add_argument("--bins", type=int, default=8)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--minimum-efficiency", type=float, default=1e-4)
    ap.add_argument("--phase-space", choices=["full", "fiducial"], default="full")
    a = ap.parse_args()

    g = read_generated(a.test)
    truth_events = g.take(np.flatnonzero(g.channel == channels.SIGNAL))
    lumi = float(read_events(a.test).attrs["luminosity_inv_fb"])
    if a.unfolded is None:
        data = read_events(a.test)
        data.unfolded = {p: {k: v[:, None] for k, v in f.items() if k != "pdgid"} for p, f in data.truth.items()}
        what = "oracle (each selected event's own truth)"
    else:
        data = read_unfolded(a.unfolded)
        what = f"{a.unfolded.name} ({data.attrs.get('model')}, K = {data.unfolded['b_lep']['pt'].shape[1]})"
    signal, efficiency = acceptance_weights(data, a.acceptance)
    n, k = efficiency.shape
    space = load_phase_space(a.phase_space)
    inside = space.mask(data.unfolded)
    truth_events = truth_events.take(np.flatnonzero(space.mask(truth_events.truth)))
    unf, tru = observable_values(data.unfolded), observable_values(truth_events.truth)
    w = data.event_weights().astype(np.float64)
    is_signal = (data.generator["channel"] == channels.SIGNAL).astype(np.float64)
    variants = {"corrected": Acceptance(signal, efficiency),
                "ε, true labels": Acceptance(is_signal, efficiency),
                "efficiency only": Acceptance(np.ones(n), efficiency),
                "uncorrected": Acceptance(np.ones(n), np.ones((n, k)))}
    sigma_truth = truth_events.event_weights().astype(np.float64).sum() / lumi
    lines = [f"# Cross-section closure: {a.test.name}, {what}", "",
             f"    python benchmarks/cross_section_closure.py {a.test.name} {a.acceptance.name} OUT.md"
             + (f" --unfolded {a.unfolded.name}" if a.unfolded else "") + f" --bins {a.bins} --phase-space {a.phase_space}",
             "", f"Phase space: {space.describe()}.", "",
             f"{n:,} selected events ({(data.generator['channel'] != channels.SIGNAL).mean():.3f} non-signal), "
             f"{truth_events.n_events:,} generated signal events, L = {lumi:.4g} fb⁻¹. χ²/bin against the "
             "generated signal truth with the estimate's statistical covariance (+ posterior with K > 1).", "",
             "| observable | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    totals = {}
    for name in OBSERVABLES:
        edges = np.quantile(tru[name], np.linspace(0, 1, a.bins + 1))
        truth = np.histogram(tru[name], edges, weights=truth_events.event_weights())[0] / lumi / np.diff(edges)
        row = []
        for label, acc in variants.items():
            binned, tot = cross_section(unf[name], w, acc, lumi, edges, n_boot=a.bootstrap, seed=1,
                                        minimum_efficiency=a.minimum_efficiency, inside=inside)
            resid = binned.values - truth
            row.append(f"{resid @ np.linalg.solve(binned.cov_total, resid) / a.bins:.2f}")
            totals[label] = tot
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines += ["", f"Total cross section (truth {sigma_truth / 1000:.2f} pb): " + "; ".join(
        f"{label} {t['sigma_fb'] / 1000:.2f} ± {t['stat_fb'] / 1000:.2f} pb ({t['sigma_fb'] / sigma_truth - 1:+.3f})"
        for label, t in totals.items()) + "."]
    a.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
