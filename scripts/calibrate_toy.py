"""Calibrate the toy generator against Pythia 8 + FastJet (needs the [generate] extra).

    python scripts/calibrate_toy.py record pythia_cal.npz --seed 11 --batches 40 --workers 2
    python scripts/calibrate_toy.py compare pythia_cal.npz

``record`` runs the Pythia pipeline of ``lvd generate pythia`` and keeps, for *every* generated event (not only
selected ones): the truth m(tt̄), top pT, pT(tt̄), the W lepton's pT/η and isolation flag, how many cuts the
event passed, and for each of the four quarks its pT/η and the nearest particle jet (pT, ΔR).

``compare`` generates toy events with the shipped configuration and prints, side by side with Pythia:
generator-level truth (all events), selected-event truth, the cut flow, jet multiplicities, the lepton
isolation efficiency in bins of the lepton pT, and the parton -> smeared-jet response in bins of the quark pT
(quantiles and P(jet pT > 25 GeV)). The toy's response tails, isolation curve and extra jets were fitted to
these tables (detector.TOY_DETECTOR, toy.ToyConfig).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from dataclasses import replace

import numpy as np

from lvd import physics
from lvd.data.generate import detector, toy

QUARKS = ("b_lep", "b_had", "q1", "q2")
PT_BINS = ((20, 30), (30, 40), (40, 60), (60, 100), (100, 200))
LEP_BINS = ((20, 25), (25, 30), (30, 40), (40, 60), (60, 100), (100, 200), (200, 1e9))


def _nearest_jet(q: np.ndarray, jet_p4: np.ndarray, jet_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pT of, and ΔR to, the nearest valid jet of each quark: ``[n, 4, 4], [n, J, 4] -> [n, 4], [n, 4]``."""
    dr = physics.delta_r(physics.eta(q)[:, :, None], physics.phi(q)[:, :, None],
                         physics.eta(jet_p4)[:, None, :], physics.phi(jet_p4)[:, None, :])
    dr = np.where(jet_valid[:, None, :], dr, np.inf)
    k = dr.argmin(-1)
    return np.take_along_axis(physics.pt(jet_p4), k, 1), np.take_along_axis(dr, k[..., None], 2)[..., 0]


def _record_worker(args: tuple[int, int]) -> dict[str, np.ndarray]:
    from lvd.data.generate import pythia

    seed, batches = args
    cfg = pythia.PythiaConfig()
    gen = pythia.PythiaGenerator(cfg, seed=seed)
    out: dict[str, list[np.ndarray]] = {}
    for b in range(batches):
        batch = gen.next_batch(np.random.default_rng([seed, b]), keep_internals=True)
        f, idx, cand, reco = (batch.internals[k] for k in ("flat", "truth_index", "candidates", "reco"))
        t_lep, t_had, lep = f.p4(idx["t_lep"]), f.p4(idx["t_had"]), f.p4(idx["lepton"])
        q = np.stack([f.p4(idx[k]) for k in QUARKS], axis=1)
        # particle jets smeared with the Pythia detector's calorimeter resolution, as the selection sees them
        smeared = cand.jet_p4 * detector.jet_scale(cfg.detector, cand.jet_p4, cand.jet_flavour,
                                                   np.random.default_rng([seed, b, 1]))[..., None]
        j_pt, j_dr = _nearest_jet(q, smeared, cand.jet_valid)
        n_jets = np.zeros(f.n, int)
        n_jets[reco.selected] = batch.data.mask[:, 1:].sum(1)
        rec = dict(m_ttbar=physics.mass(t_lep + t_had), pt_t_lep=physics.pt(t_lep), pt_t_had=physics.pt(t_had),
                   pt_ttbar=physics.pt(t_lep + t_had), lep_pt=physics.pt(lep), lep_eta=physics.eta(lep),
                   lep_iso=cand.lep_isolated[:, 0], stage=reco.stage, n_jets=n_jets,
                   q_pt=physics.pt(q), q_eta=physics.eta(q), j_pt=j_pt, j_dr=j_dr)
        for k, v in rec.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def record(path: str, seed: int, batches: int, workers: int) -> None:
    jobs = [(seed * 1000 + w, batches // workers) for w in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_record_worker, jobs)
    np.savez(path, **{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    print(f"{path}: {sum(len(p['stage']) for p in parts):,} generated events")


def toy_record(cfg: toy.ToyConfig, seed: int, chunks: int) -> dict[str, np.ndarray]:
    """The same per-event record for the toy events that reach the detector, plus ``stage_all``: the stage of
    every generated event (those failing the lepton cut are not built further)."""
    gen = toy.ToyGenerator(cfg, seed=seed)
    out: dict[str, list[np.ndarray]] = {}
    for c in range(chunks):
        rng = gen._rng(c)
        prop = gen.hard.propose(rng, cfg.proposals_per_chunk)
        w = gen.hard.weight(prop)
        keep = rng.random(w.shape) * gen.w_max < w
        vectors, _, cand, leptons, alive = gen.partons(rng, {k: v[keep] for k, v in prop.items()})
        reco = detector.simulate(cand, gen.detector, rng, leptons=leptons)
        stage_all = np.zeros(int(keep.sum()), np.int8)
        stage_all[alive] = reco.stage
        q = np.stack([vectors[k] for k in QUARKS], axis=1)
        smeared = cand.jet_p4 * detector.jet_scale(gen.detector, cand.jet_p4, cand.jet_flavour, rng)[..., None]
        j_pt, j_dr = _nearest_jet(q, smeared, cand.jet_valid)
        n_jets = np.zeros(len(reco.stage), int)
        n_jets[reco.selected] = reco.mask[:, 1:].sum(1)
        t_lep, t_had, lep = vectors["t_lep"], vectors["t_had"], vectors["lepton"]
        rec = dict(m_ttbar=physics.mass(t_lep + t_had), pt_t_lep=physics.pt(t_lep), pt_t_had=physics.pt(t_had),
                   lep_pt=physics.pt(lep), stage=reco.stage, n_jets=n_jets,
                   q_pt=physics.pt(q), q_eta=physics.eta(q), j_pt=j_pt, j_dr=j_dr, stage_all=stage_all)
        for k, v in rec.items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def generator_level_toy(seed: int, chunks: int) -> dict[str, np.ndarray]:
    """Toy truth of every generated event: the shipped physics with every efficiency 1 and no cuts."""
    open_det = replace(detector.TOY_DETECTOR, lepton_min_pt=0.0, lepton_max_eta=np.inf, lepton_eff_central=1.0,
                       lepton_eff_forward=1.0, sel_lepton_pt=0.0, sel_max_eta=np.inf, min_jets=0, min_btags=0)
    cfg = replace(toy.ToyConfig(), iso_max=1.0, iso_drop=0.0, detector=open_det)
    return toy_record(cfg, seed, chunks)


def _stats(x: np.ndarray) -> tuple[float, float]:
    return float(np.mean(x)), float(np.median(x))


def _truth_table(label: str, t: dict[str, np.ndarray], p: dict[str, np.ndarray]) -> None:
    print(f"\n{label} (toy {len(t['m_ttbar']):,} / pythia {len(p['m_ttbar']):,} events)")
    print(f"  {'[GeV]':10s} {'toy mean':>9s} {'py mean':>9s} {'Δ':>6s} {'toy med':>9s} {'py med':>9s} {'Δ':>6s}"
          f"   (Pythia stat. error on the mean)")
    for name, a, b in (("m(tt̄)", t["m_ttbar"], p["m_ttbar"]),
                       ("top pT", np.r_[t["pt_t_lep"], t["pt_t_had"]], np.r_[p["pt_t_lep"], p["pt_t_had"]]),
                       ("lepton pT", t["lep_pt"], p["lep_pt"])):
        (ma, da), (mb, db) = _stats(a), _stats(b)
        err = 100 * np.std(b) / np.sqrt(len(b)) / mb
        print(f"  {name:10s} {ma:9.1f} {mb:9.1f} {100 * (ma / mb - 1):+5.1f}% {da:9.1f} {db:9.1f} "
              f"{100 * (da / db - 1):+5.1f}%   (±{err:.1f}%)")


def compare(path: str, seed: int, chunks: int) -> None:
    p = dict(np.load(path))
    cfg = toy.ToyConfig()
    t = toy_record(cfg, seed, chunks)
    g = generator_level_toy(seed, max(1, chunks // 2))
    _truth_table("generator level, all events", g, p)
    sel = lambda r: {k: v[r["stage"] == 3] for k, v in r.items() if k != "stage_all"}  # noqa: E731
    _truth_table("selected events", sel(t), sel(p))

    cf = detector.cutflow_of(t["stage_all"])
    eff_t = [cf[k] / cf["generated"] for k in ("one_lepton", "min_jets", "min_btags")]
    eff_p = [(p["stage"] >= k).mean() for k in (1, 2, 3)]
    print("\nselection efficiency     1 lepton  ≥4 jets  ≥1 b-tag")
    print(f"  toy                    {eff_t[0]:8.3f} {eff_t[1]:8.3f} {eff_t[2]:9.3f}")
    print(f"  pythia                 {eff_p[0]:8.3f} {eff_p[1]:8.3f} {eff_p[2]:9.3f}")
    print("\njet multiplicity of selected events: 4 / 5 / 6 / 7 / 8+ (%)")
    for label, r in (("toy", t), ("pythia", p)):
        nj = r["n_jets"][r["stage"] == 3]
        fr = [np.mean(nj == k) for k in (4, 5, 6, 7)] + [np.mean(nj >= 8)]
        print(f"  {label:8s} " + " / ".join(f"{100 * x:4.1f}" for x in fr))

    print("\nW-lepton isolation efficiency (Pythia) vs the toy's curve")
    for lo, hi in LEP_BINS:
        m = (p["lep_pt"] > lo) & (p["lep_pt"] < hi) & (np.abs(p["lep_eta"]) < 2.5)
        mid = 0.5 * (lo + min(hi, 300.0))
        curve = cfg.iso_max - cfg.iso_drop * np.exp(-max(mid - 20.0, 0.0) / cfg.iso_scale)
        span = f"{lo:.0f}+" if hi > 1e6 else f"{lo:.0f}-{hi:.0f}"
        print(f"  pT {span:8s} pythia {p['lep_iso'][m].mean():.3f}  toy {curve:.3f}  (n={m.sum()})")

    print("\nparton -> smeared jet response (nearest jet within ΔR < 0.4; 0 if none), |η| < 2.5")
    print("  quantiles 5/16/50/84/95 %, and P(jet pT > 25 GeV)")
    for cols, label in ((slice(0, 2), "b"), (slice(2, 4), "light")):
        for lo, hi in PT_BINS:
            row = []
            for r in (p, t):
                qpt, qeta = r["q_pt"][:, cols].ravel(), r["q_eta"][:, cols].ravel()
                jpt, dr = r["j_pt"][:, cols].ravel(), r["j_dr"][:, cols].ravel()
                m = (qpt > lo) & (qpt < hi) & (np.abs(qeta) < 2.5)
                resp = np.where(dr[m] < 0.4, jpt[m] / qpt[m], 0.0)
                qs = np.quantile(resp, (0.05, 0.16, 0.5, 0.84, 0.95))
                row.append(" ".join(f"{x:4.2f}" for x in qs) + f"  {np.mean(resp * qpt[m] > 25):.3f}")
            print(f"  {label:5s} {lo:3d}-{hi:<3d}  pythia {row[0]}  | toy {row[1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("out")
    r.add_argument("--seed", type=int, default=11)
    r.add_argument("--batches", type=int, default=40)
    r.add_argument("--workers", type=int, default=2)
    c = sub.add_parser("compare")
    c.add_argument("record")
    c.add_argument("--seed", type=int, default=3)
    c.add_argument("--chunks", type=int, default=4)
    a = ap.parse_args()
    if a.cmd == "record":
        record(a.out, a.seed, a.batches, a.workers)
    else:
        compare(a.record, a.seed, a.chunks)


if __name__ == "__main__":
    main()
