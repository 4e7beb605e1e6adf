"""How wide the unfolded posteriors are against how well the detector measures: a coverage diagnosis (issue 13).

    python benchmarks/posterior_width.py UNFOLDED.h5 [UNFOLDED2.h5 ...] [--out TABLE.md]

For every file (an ``lvd unfold`` output of events with truth) and observable: the 68 % coverage of the
K posterior draws (rank-based, as ``lvd evaluate``), the mean posterior spread ``sqrt(mean(var_k))`` and the rms
distance of the posterior mean from the truth. For a calibrated posterior the two agree (the ratio is 1);
an over-dispersed one has a spread larger than its error (ratio < 1, coverage above nominal). For the charged
lepton it also prints the detector's own resolution (the reconstructed lepton against the truth), the floor a
posterior of the lepton pT could reach.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lvd.data.schema import read_events, source_layout
from lvd.evaluation.calibration import coverage, truth_ranks
from lvd.evaluation.report import naive_estimates
from lvd.measurement.observables import derived

OBSERVABLES = ("m_t_had", "m_t_lep", "m_ttbar", "pt_t_had", "pt_t_lep", "pt_ttbar", "y_t_had", "y_t_lep", "nu_pz",
               "lepton_pt", "b_had_pt", "b_lep_pt")


def widths(path: Path) -> tuple[list[str], float]:
    d = read_events(path, source_layout(path))
    unf, tru = derived(d.unfolded), derived(d.truth)
    k = next(iter(unf.values())).shape[1]
    rows = []
    for n in OBSERVABLES:
        u, t = np.asarray(unf[n], np.float64), np.asarray(tru[n], np.float64)
        cov = coverage(truth_ranks(u, t), k, 0.68)
        spread = np.sqrt(np.mean(u.var(axis=1, ddof=1)))
        error = np.sqrt(max(np.mean((u.mean(axis=1) - t) ** 2 - u.var(axis=1, ddof=1) / k), 0.0))  # finite-K corrected
        rows.append(f"| {n} | {cov['coverage']:.3f} ({cov['nominal']:.3f}) | {spread:.4g} | {error:.4g} "
                    f"| {error / spread:.3f} |")
    rel = (naive_estimates(d)["lepton_pt"] - tru["lepton_pt"]) / tru["lepton_pt"]
    lepton_resolution = float((np.percentile(rel, 75) - np.percentile(rel, 25)) / 1.349)
    return rows, lepton_resolution


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("unfolded", type=Path, nargs="+")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    text = []
    for p in a.unfolded:
        rows, res = widths(p)
        text += [f"`{p}` (detector lepton pT resolution, IQR/1.349: {100 * res:.2f} %)", "",
                 "| observable | 68 % coverage (nominal) | posterior spread | rms(posterior mean − truth) | ratio |",
                 "|---|---|---|---|---|", *rows, ""]
    out = "\n".join(text)
    print(out)
    if a.out:
        a.out.write_text(out)


if __name__ == "__main__":
    main()
