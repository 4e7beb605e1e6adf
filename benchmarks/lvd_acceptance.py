"""Unfolding quality of a run on held-out events: mass peaks and the neutrino pz distance (issue 3 acceptance).

    python benchmarks/lvd_acceptance.py UNFOLDED.h5

Prints the peak positions of the unfolded (from the decay products) top and W masses, and the 1-D Wasserstein
distance between unfolded and true neutrino pz next to that of the W-mass-constraint quadratic solution.
"""

import sys

import numpy as np
from scipy.stats import wasserstein_distance

from lvd.data.schema import read_events
from lvd.evaluation.observables import derived, peak_position, w_constraint_pz


def main(path: str) -> None:
    d = read_events(path, require_truth=True)
    unf = derived(d.unfolded)  # [N, K]
    tru = derived(d.truth)
    k = d.unfolded["neutrino"]["pt"].shape[1]
    print(f"{path}: {d.n_events} events, {k} samples each")
    for name, lo, hi in (("m_t_had", 140, 205), ("m_t_lep", 140, 205), ("m_W_had", 60, 100), ("m_W_lep", 60, 100)):
        u, t = unf[name], tru[name]
        inside = np.mean((u > lo) & (u < hi))
        print(f"{name}: unfolded peak {peak_position(u, lo, hi):7.2f} GeV (truth {peak_position(t, lo, hi):7.2f}); "
              f"unfolded IQR {np.subtract(*np.percentile(u, [75, 25])):6.2f} GeV; fraction in window {inside:.3f}")
    nu_u, nu_t = unf["nu_pz"].ravel(), tru["nu_pz"]
    naive = w_constraint_pz(d.source, d.met)
    w_u = wasserstein_distance(nu_u, nu_t)
    w_n = wasserstein_distance(naive, nu_t)
    print(f"neutrino pz W1: unfolded {w_u:.2f} GeV, W-mass quadratic {w_n:.2f} GeV, ratio {w_u / w_n:.3f}")
    print(f"neutrino pz per-event |Δ| median: unfolded (sample 0) {np.median(np.abs(unf['nu_pz'][:, 0] - nu_t)):.1f} GeV, "
          f"quadratic {np.median(np.abs(naive - nu_t)):.1f} GeV")


if __name__ == "__main__":
    main(sys.argv[1])
