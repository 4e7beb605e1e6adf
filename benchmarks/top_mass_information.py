"""How much one event's detector record says about the top mass: a yardstick for the unfolded posteriors (issue 12).

    python benchmarks/top_mass_information.py RANGE.h5 [--events 100000]

On a sample generated with ``--top-mass-range`` (per-event masses in ``GENERATOR/top_mass``) it builds the
simplest detector-level top mass — one b-tagged and two untagged jets, the pair closest to m_W (within 10 GeV)
— and prints, per 5 GeV bin of the generated mass, the median and the IQR/1.349 of that 3-jet mass, and the
correlation between the two. The slope of the medians is the response a template method would start from; the
width per event against the slope is the per-event resolution on m_t. An unfolded posterior can be sharper (it
uses every object), but a model whose posterior does not move with the generated mass at all is missing
information that this cut-based estimate already has.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from lvd import physics
from lvd.data.schema import read_events, source_layout


def three_jet_mass(path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    d = read_events(path, source_layout(path))
    if d.generator is None or "top_mass" not in d.generator:
        raise SystemExit(f"{path}: no GENERATOR/top_mass (make it with lvd generate ... --top-mass-range)")
    n = min(n, d.n_events)
    s, mask = d.source, d.mask[:n]
    f = {k: np.asarray(s[k][:n], np.float64) for k in ("pt", "eta", "phi", "mass", "btag", "is_electron", "is_muon")}
    jet = mask & (f["is_electron"] < 0.5) & (f["is_muon"] < 0.5)
    p4 = np.where(jet[..., None], physics.p4_from_ptetaphim(f["pt"], f["eta"], f["phi"], f["mass"]), 0.0)
    best, score = np.full(n, np.nan), np.full(n, 10.0)  # accept |m_jj − m_W| < 10 GeV only
    for i, j, k in itertools.permutations(range(min(8, mask.shape[1])), 3):
        if j > k:
            continue
        ok = jet[:, i] & jet[:, j] & jet[:, k] & (f["btag"][:, i] > 0.5) & (f["btag"][:, j] < 0.5) & (f["btag"][:, k] < 0.5)
        w = p4[:, j] + p4[:, k]
        dw = np.abs(physics.mass(w) - physics.M_W)
        better = ok & (dw < score)
        score = np.where(better, dw, score)
        best = np.where(better, physics.mass(w + p4[:, i]), best)
    keep = np.isfinite(best)
    return best[keep], np.asarray(d.generator["top_mass"][:n], np.float64)[keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sample", type=Path)
    ap.add_argument("--events", type=int, default=100_000)
    a = ap.parse_args()
    m3, mt = three_jet_mass(a.sample, a.events)
    print(f"{len(m3):,} events with a triplet; correlation(m_jjj, m_t) = {np.corrcoef(m3, mt)[0, 1]:.3f}")
    print("| generated m_t (GeV) | events | median m_jjj | IQR/1.349 |\n|---|---|---|---|")
    edges = np.arange(np.floor(mt.min()), mt.max() + 5, 5.0)
    for lo in edges[:-1]:
        sel = (mt >= lo) & (mt < lo + 5)
        if sel.sum() > 100:
            q25, q50, q75 = np.percentile(m3[sel], [25, 50, 75])
            print(f"| {lo:.0f}–{lo + 5:.0f} | {sel.sum():,} | {q50:.1f} | {(q75 - q25) / 1.349:.1f} |")


if __name__ == "__main__":
    main()
