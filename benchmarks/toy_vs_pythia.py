"""The embedded toy generator against Pythia 8 + FastJet with the same detector model: is the toy a fair stand-in?

    lvd generate pythia pythia.h5 -e 3000 --seed 7 -j 2
    lvd generate toy toy.h5 -e 20000 --seed 7
    python benchmarks/toy_vs_pythia.py toy.h5 pythia.h5

Prints, for selected events, the mean and median of the truth m(tt̄), top pT (both tops) and lepton pT with
their relative differences and statistical errors; the selection cut flow stored in each file; and the
jet and b-tag multiplicity fractions side by side. For generator-level truth (all events, before the
selection), the isolation curve and the jet response behind the toy's calibration, see
``scripts/calibrate_toy.py``.
"""

from __future__ import annotations

import sys

import numpy as np

from lvd.data.schema import read_events
from lvd.data.summary import summarize
from lvd.measurement.observables import derived


def stats(x: np.ndarray, n: int | None = None) -> tuple[float, float, float, float]:
    """mean, its error, median, its error (normal approximation: 1.253 σ/√n). ``n``: independent entries
    (the two tops of an event recoil against each other, so they count as one event, not two)."""
    n = n or len(x)
    return float(x.mean()), float(x.std() / np.sqrt(n)), float(np.median(x)), float(1.253 * x.std() / np.sqrt(n))


def truth_observables(path: str) -> tuple[dict[str, np.ndarray], object]:
    d = read_events(path, require_truth=True)
    obs = derived(d.truth)
    lep = np.asarray(d.truth["lepton"]["pt"], np.float64)
    return {"m_ttbar": obs["m_ttbar"], "top_pt": np.concatenate([obs["pt_t_had"], obs["pt_t_lep"]]),
            "lepton_pt": lep}, d


def multiplicities(d) -> tuple[dict[int, float], dict[int, float]]:
    s = summarize(d)  # the counts lvd inspect prints
    frac = lambda counts: {int(k): v / d.n_events for k, v in counts.items() if v}  # noqa: E731
    return frac(s["jet_multiplicity"]), frac(s["btag_multiplicity"])


def main(toy_path: str, pythia_path: str) -> None:
    (t, dt), (p, dp) = truth_observables(toy_path), truth_observables(pythia_path)
    print(f"selected events: toy {dt.n_events:,}, pythia {dp.n_events:,}\n")
    print(f"{'observable [GeV]':18s} {'toy mean':>16s} {'pythia mean':>16s} {'Δ':>7s}  {'toy median':>16s} "
          f"{'pythia median':>16s} {'Δ':>7s}")
    for name in ("m_ttbar", "top_pt", "lepton_pt"):
        a, b = stats(t[name], dt.n_events), stats(p[name], dp.n_events)
        print(f"{name:18s} {a[0]:9.1f} ± {a[1]:4.1f} {b[0]:9.1f} ± {b[1]:4.1f} {100 * (a[0] / b[0] - 1):+6.1f}%  "
              f"{a[2]:9.1f} ± {a[3]:4.1f} {b[2]:9.1f} ± {b[3]:4.1f} {100 * (a[2] / b[2] - 1):+6.1f}%")
    print("\nselection (from the files' attributes)")
    for label, d in (("toy", dt), ("pythia", dp)):
        print(f"  {label}: {d.attrs.get('cutflow')}")
    (jt, bt), (jp, bp) = multiplicities(dt), multiplicities(dp)
    print("\njet multiplicity (fraction of selected events)")
    print("  n_jets  " + " ".join(f"{k:>6d}" for k in sorted(set(jt) | set(jp))))
    for label, f in (("toy", jt), ("pythia", jp)):
        print(f"  {label:7s} " + " ".join(f"{100 * f.get(k, 0):5.1f}%" for k in sorted(set(jt) | set(jp))))
    print("b-tag multiplicity")
    print("  n_b     " + " ".join(f"{k:>6d}" for k in sorted(set(bt) | set(bp))))
    for label, f in (("toy", bt), ("pythia", bp)):
        print(f"  {label:7s} " + " ".join(f"{100 * f.get(k, 0):5.1f}%" for k in sorted(set(bt) | set(bp))))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
