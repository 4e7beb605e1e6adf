"""The semi-leptonic tt̄ truth from a generator record that links each particle to its mother.

Rules (the same for Delphes' ``Particle`` and NanoAOD's ``GenPart``):

* a *copy* is a particle whose mother has the same PDG id (a top or W recoiling in the shower); a *chain*
  is a particle and its copies; the resonances t, t̄, W± are taken at the chain's last copy;
* the decay products of a chain are the particles whose mother is any member of the chain and whose id
  differs from it, radiated gluons and photons excepted: a top must have exactly one b and one W, a W
  exactly two products; they are taken where they appear (before their own shower);
* a W decays leptonically to (e, ν_e) or (μ, ν_μ), hadronically to two quarks, or to (τ, ν_τ); an event
  is kept when one W of the tt̄ pair decays to e/μ and the other to quarks; τ, di-leptonic, all-hadronic
  events and records without a well-formed tt̄ chain are counted by :data:`CATEGORIES` and skipped;
* q1 is the harder (larger pT) of the hadronic W's quarks;
* a NaN/inf truth value is reported by :func:`nonfinite` (the caller drops the event); elsewhere in the record
  it is harmless (a beam's η, say).

Only mother links are needed (NanoAOD stores no daughters); everything is vectorised over a chunk of events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lvd import physics

CATEGORIES: tuple[str, ...] = ("semileptonic", "tau", "dileptonic", "all_hadronic", "no_ttbar_chain")
SEMILEPTONIC, TAU, DILEPTONIC, ALL_HADRONIC, NO_CHAIN = range(len(CATEGORIES))
TRUTH_PARTICLES: tuple[str, ...] = (*physics.DECAY_PRODUCTS, "W_lep", "W_had", "t_lep", "t_had")
DEFINITION = ("generator record: t, t̄ and W at the last copy of their chains; b, W daughters where they "
              "first appear (before their shower); q1 = the harder quark of W_had")
_RADIATION = (21, 22)


@dataclass
class Record:
    """Generator particles of n events, flattened in event order.

    ``counts [n]``; ``pid, mother [total]`` (mother: index within the event, negative for none);
    ``pt, eta, phi, mass [total]``; ``branches``: feature -> the file's branch, for the messages.
    """

    counts: np.ndarray
    pid: np.ndarray
    mother: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    mass: np.ndarray
    branches: dict[str, str] = field(default_factory=dict)


def extract(rec: Record) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
    """``(truth, category)``: particle -> feature -> ``[n]`` (pt, eta, phi, mass float32; pdgid int32) for
    :data:`TRUTH_PARTICLES`, meaningful where ``category [n] == SEMILEPTONIC``."""
    n, total = len(rec.counts), len(rec.pid)
    if total == 0:
        empty = {f: np.zeros(n, np.float32) for f in ("pt", "eta", "phi", "mass")}
        return ({p: {**empty, "pdgid": np.zeros(n, np.int32)} for p in TRUTH_PARTICLES},
                np.full(n, NO_CHAIN, np.int8))
    event = np.repeat(np.arange(n), rec.counts)
    first = np.cumsum(rec.counts) - rec.counts
    pid = rec.pid.astype(np.int64)
    apid = np.abs(pid)
    local = rec.mother.astype(np.int64)
    has_mother = (local >= 0) & (local < rec.counts[event])
    mother = np.where(has_mother, first[event] + local, 0)
    copy = has_mother & (pid[mother] == pid)
    is_last = np.ones(total, bool)
    is_last[mother[copy]] = False
    chain = _chain_roots(np.where(copy, mother, np.arange(total)))
    last_of = np.arange(total)
    last_of[chain[is_last]] = np.flatnonzero(is_last)
    products = _Products(np.flatnonzero(has_mother & ~copy & ~np.isin(apid, _RADIATION)), chain, mother)

    top, n_top = _one_per_event(is_last & (pid == 6), event, n)
    antitop, n_antitop = _one_per_event(is_last & (pid == -6), event, n)
    ok = (n_top == 1) & (n_antitop == 1)
    sides = []
    for t in (top, antitop):
        (d0, d1), count = products.of(chain[t])
        b = np.where(apid[d0] == 5, d0, d1)
        w = np.where(apid[d0] == 5, d1, d0)
        ok &= (count == 2) & (apid[b] == 5) & (apid[w] == 24)
        (f0, f1), count = products.of(chain[w])
        ok &= count == 2
        lo, hi = np.minimum(apid[f0], apid[f1]), np.maximum(apid[f0], apid[f1])
        sides.append(dict(t=t, b=b, w=last_of[w], f0=f0, f1=f1,
                          lep=((lo == 11) & (hi == 12)) | ((lo == 13) & (hi == 14)),
                          tau=(lo == 15) | (hi == 15) | (hi == 16), had=(lo >= 1) & (hi <= 5)))
    a, b = sides
    category = np.select(
        [~ok, a["tau"] | b["tau"], (a["lep"] & b["had"]) | (a["had"] & b["lep"]), a["lep"] & b["lep"],
         a["had"] & b["had"]],
        [NO_CHAIN, TAU, SEMILEPTONIC, DILEPTONIC, ALL_HADRONIC], NO_CHAIN).astype(np.int8)

    lep_side = a["lep"]  # the top whose W decays to e/μ

    def pick(key):
        return np.where(lep_side, a[key], b[key]), np.where(lep_side, b[key], a[key])

    (t_lep, t_had), (b_lep, b_had), (w_lep, w_had) = pick("t"), pick("b"), pick("w")
    (l0, h0), (l1, h1) = pick("f0"), pick("f1")
    charged = apid[l0] % 2 == 1  # e, μ are odd; their neutrinos even
    lepton, neutrino = np.where(charged, l0, l1), np.where(charged, l1, l0)
    harder = rec.pt[h0] >= rec.pt[h1]
    q1, q2 = np.where(harder, h0, h1), np.where(harder, h1, h0)
    index = dict(b_lep=b_lep, lepton=lepton, neutrino=neutrino, b_had=b_had, q1=q1, q2=q2,
                 W_lep=w_lep, W_had=w_had, t_lep=t_lep, t_had=t_had)
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, which nonfinite() reports
        truth = {p: {"pt": rec.pt[g].astype(np.float32), "eta": rec.eta[g].astype(np.float32),
                     "phi": rec.phi[g].astype(np.float32), "mass": rec.mass[g].astype(np.float32),
                     "pdgid": pid[g].astype(np.int32)}
                 for p, g in index.items()}
    return truth, category


def nonfinite(truth: dict[str, dict[str, np.ndarray]], branches: dict[str, str]) -> dict[str, np.ndarray]:
    """Record branch (``branches``: feature -> branch) -> ``[n]`` events with a NaN/inf truth value from it."""
    out = {}
    for f in ("pt", "eta", "phi", "mass"):
        bad = np.logical_or.reduce([~np.isfinite(feats[f]) for feats in truth.values()])
        if bad.any():
            out[branches.get(f, f)] = bad
    return out


def _chain_roots(parent: np.ndarray) -> np.ndarray:
    """First copy of every particle's chain: follow ``parent`` (itself for a first copy) by pointer doubling."""
    root = parent
    for _ in range(64):  # 2^64 generations: a loop in a corrupt record stops here
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return root


def _one_per_event(mask: np.ndarray, event: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first particle matching ``mask`` in each event (0 where none) and the match counts."""
    hits = np.flatnonzero(mask)
    count = np.bincount(event[hits], minlength=n)
    out = np.zeros(n, np.int64)
    found = count > 0
    out[found] = hits[(np.cumsum(count) - count)[found]]
    return out, count


class _Products:
    """Decay products grouped by the chain of their mother."""

    def __init__(self, particles: np.ndarray, chain: np.ndarray, mother: np.ndarray):
        parent = chain[mother[particles]]
        order = np.argsort(parent, kind="stable")
        self.particles, self.parent = particles[order], parent[order]

    def of(self, chains: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
        """The first two products of each chain ``[m]`` (index 0 where missing) and their number."""
        lo = np.searchsorted(self.parent, chains, side="left")
        count = np.searchsorted(self.parent, chains, side="right") - lo
        if len(self.particles) == 0:
            zero = np.zeros(len(chains), np.int64)
            return (zero, zero), count
        last = len(self.particles) - 1
        return (self.particles[np.minimum(lo, last)], self.particles[np.minimum(lo + 1, last)]), count
