"""Realistic semi-leptonic tt̄: Pythia 8 (ISR, FSR, MPI, hadronisation) + FastJet + lvd's parametric detector.

Physics (docs/design.md §7):

* ``pp → tt̄`` at 13 TeV (``Top:gg2ttbar``, ``Top:qqbar2ttbar``), ``m_t = 172.5`` GeV, ``t → W b`` only;
  a process-level user hook keeps events where exactly one W decays to ``e/μ ν`` and the other to quarks
  (both lepton charges), so a rejected event costs only a new hard process;
* top mass and width (``PythiaConfig.top``, :mod:`lvd.data.generate.top_mass`): ``6:m0`` and a forced width
  ``6:mWidth`` (``6:doForceWidth = on``) from lvd's rule, so that both generators and the stored
  ``GENERATOR/top_width`` agree (Pythia's own width, 1.343 GeV at 172.5, scales the same way). For a mass
  range, every batch draws its mass and then re-initialises Pythia at it. Measured (``mpi=False``, 1000
  events = 2000 truth tops each, medians ±0.024 GeV): a fresh Pythia at 172.5 gives median 172.49 (IQR
  1.29 GeV); setting ``particleData.m0(6, 175)`` and ``mWidth`` between ``nextBatch`` calls without
  ``init()`` leaves them at 172.44 (the hard process keeps the Breit–Wigner set up at ``init()``); ``init()``
  again at 175 gives 174.96 (IQR 1.35), the very events of a fresh Pythia at 175 with the same seed (a fresh
  one with its own seed: 174.99). A re-initialisation costs ~0.1 s (0.3 s with MPI), a few % of a batch, and
  keeps the mass continuous, so there is no per-worker grid;
* truth, ``truth="event"`` (default): read from the event record, i.e. after the ISR recoil and before FSR
  off the decay products: tops at their last copy (status −62), Ws at their first copy after the recoil
  (status −22), the b from each top and the W daughters at their first copies (|status| 23);
  ``truth="process"``: the same particles from the process record (LHE-like, before any shower,
  pT(tt̄) = 0), captured by the hook;
* jets: anti-kT R = 0.4 (FastJet) on final-state particles with |η| < 4.9, without neutrinos, muons and the
  prompt W lepton; jets above 15 GeV. Flavour by ghost association of the last b- (and c-) hadrons of each
  decay chain with pT > 5 GeV: b over c over light;
* leptons: the prompt W lepton (its last copy) plus any other final-state e/μ with pT > 10 GeV and
  |η| < 2.5, isolated if ΣpT of the other visible particles (pT > 0.5 GeV, ΔR < 0.5) is below 0.12 (e) or
  0.25 (μ) of the lepton pT;
* the soft term: visible particles (no neutrinos, no muons) in neither a jet nor a lepton candidate.

The candidates go through :func:`lvd.data.generate.detector.simulate` with ``PYTHIA_DETECTOR``.

Reproducibility: worker ``w`` of shard ``k`` seeds Pythia from ``SeedSequence([seed, k, w])`` and draws
the detector randomness of its batch ``b`` from ``default_rng([seed, k, w, b])``; with a mass range that
generator first draws the batch's mass and Pythia seed (each re-initialisation re-seeds Pythia). The parent
writes the batches round-robin in worker order, so ``(seed, shard, workers, batch_size)`` fixes the file bit
for bit.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from lvd import physics
from lvd.data import channels
from lvd.data.generate import detector
from lvd.data.generate.top_mass import TopMass
from lvd.data.merge import combined_cross_section
from lvd.data.schema import EventData, EventWriter, Generated
from lvd.errors import LvdError

EXTRA_MESSAGE = "lvd generate pythia needs the [generate] extra: pip install 'lvd[generate]'"
TRUTH_NAMES: tuple[str, ...] = (*physics.DECAY_PRODUCTS, "W_lep", "W_had", "t_lep", "t_had")
TRUTH_DEFINITIONS = {
    "event": ("event record (after ISR recoil, before FSR off the decay products): tops at their last copy "
              "(status -62), Ws at their first copy after the recoil (status -22), b from the top and "
              "W daughters at first copy (|status| 23)"),
    "process": "process record (LHE-like, before shower): hard-process tops, Ws and decay products, pT(tt~) = 0",
}
MAX_SEED = 900_000_000
MB_TO_PB = 1e9
_NEUTRINOS = (12, 14, 16)


@dataclass(frozen=True)
class PythiaConfig:
    sqrt_s: float = 13000.0
    top: TopMass = TopMass()  # the tops' pole mass (fixed, or a range: one mass per batch) and width
    mpi: bool = True
    truth: str = "event"  # "event" or "process"
    batch_size: int = 400  # events per nextBatch call (the file depends on it)
    jet_radius: float = 0.4
    jet_min_pt: float = 15.0
    max_eta: float = 4.9  # calorimeter acceptance for jet inputs and the soft term
    hadron_min_pt: float = 5.0  # b/c hadrons used as ghosts
    ghost_scale: float = 1e-18
    lepton_min_pt: float = 10.0  # extra lepton candidates (the W lepton is always handed over)
    lepton_max_eta: float = 2.5
    iso_cone: float = 0.5
    iso_min_pt: float = 0.5
    iso_max_electron: float = 0.12
    iso_max_muon: float = 0.25
    min_lepton_slots: int = 4
    # "signal": the hook keeps e/μ + jets events only; "all": every W decay at Pythia's branching fractions,
    # each event labelled with its channel (lvd.data.channels)
    channels: Literal["signal", "all"] = "signal"
    detector: detector.DetectorConfig = detector.PYTHIA_DETECTOR


def _backends():
    """Import the optional packages, or raise the one-line LvdError naming the extra."""
    try:
        import awkward
        import fastjet
        import pythia8mc
    except ImportError:
        raise LvdError(EXTRA_MESSAGE) from None
    return pythia8mc, fastjet, awkward


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("pythia8mc", "fastjet", "awkward"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def pythia_seed(seed: int, shard: int, worker: int) -> int:
    """Pythia's seed for one worker, in ``[1, 900000000]``."""
    state = np.random.SeedSequence([int(seed), int(shard), int(worker)]).generate_state(1)[0]
    return int(state) % MAX_SEED + 1


def top_settings(m_top: float, width: float) -> list[str]:
    """Pythia's top mass and (forced) width; ``repr`` keeps every digit of the drawn mass."""
    return [f"6:m0 = {float(m_top)!r}", f"6:mWidth = {float(width)!r}"]


def pythia_settings(cfg: PythiaConfig, seed: int) -> list[str]:
    """Every setting; the top mass only when fixed (a range sets it per batch, :meth:`PythiaGenerator.next_batch`)."""
    top = cfg.top
    s = [
        f"Beams:eCM = {cfg.sqrt_s}",
        "Top:gg2ttbar = on",
        "Top:qqbar2ttbar = on",
        *(top_settings(top.mass, float(top.width_at(top.mass))) if top.mass_range is None else []),
        # use 6:mWidth as given (Pythia would overwrite it with its own calculation at init)
        "6:doForceWidth = on",
        # t -> W b only (else ~0.2% t -> W s/d break the b bookkeeping)
        "6:onMode = off",
        "6:onIfMatch = 5 24",
        "Print:quiet = on",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]
    if not cfg.mpi:
        s.append("PartonLevel:MPI = off")
    return s


def _make_hook(p8, record: bool, veto: bool = True):
    """A process-level UserHooks: with ``veto``, keep exactly one W -> e/mu nu and one W -> q q' (any charges);
    with ``record``, also keep the process-record truth of every accepted hard process in ``records``."""

    class SemileptonicHook(p8.UserHooks):
        def __init__(self):
            super().__init__()
            self.record = record
            self.records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

        def canVetoProcessLevel(self):  # noqa: N802  (Pythia's name)
            return True

        def doVetoProcessLevel(self, process):  # noqa: N802
            if not veto:
                return False
            ws = _semileptonic_ws(process)
            if ws is None:
                return True
            if self.record:
                self.records.append(_process_truth(process, *ws))
            return False

    return SemileptonicHook()


def _semileptonic_ws(process) -> tuple[int, int] | None:
    """``(leptonic W, hadronic W)`` indices in the process record, or None unless exactly one W decays to
    e/mu nu and the other to quarks."""
    lep_w = had_w = None
    n_w = 0
    for i in range(process.size()):
        w = process[i]
        if w.idAbs() != 24:
            continue
        n_w += 1
        d1, d2 = w.daughter1(), w.daughter2()
        if d1 <= 0 or d2 != d1 + 1:
            return None
        a, b = sorted((process[d1].idAbs(), process[d2].idAbs()))
        if (a, b) in ((11, 12), (13, 14)) and lep_w is None:
            lep_w = i
        elif 1 <= a and b <= 5 and had_w is None:
            had_w = i
        else:
            return None
    if n_w != 2 or lep_w is None or had_w is None:
        return None
    return lep_w, had_w


def _process_truth(process, lep_w: int, had_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(top_p3 [3], p4m [10, 5], ids [10])`` in TRUTH_NAMES order from the process record."""

    def b_of(top):
        t = process[top]
        return next(k for k in (t.daughter1(), t.daughter2()) if process[k].idAbs() == 5)

    def row(i):
        p = process[i]
        return [p.px(), p.py(), p.pz(), p.e(), p.m()]

    w = process[lep_w]
    l1, l2 = w.daughter1(), w.daughter2()
    lep, nu = (l1, l2) if process[l1].idAbs() in (11, 13) else (l2, l1)
    w = process[had_w]
    q_a, q_b = w.daughter1(), w.daughter2()
    q1, q2 = (q_a, q_b) if process[q_a].pT() >= process[q_b].pT() else (q_b, q_a)
    t_lep, t_had = process[lep_w].mother1(), process[had_w].mother1()
    order = [b_of(t_lep), lep, nu, b_of(t_had), q1, q2, lep_w, had_w, t_lep, t_had]
    p4m = np.array([row(i) for i in order])
    ids = np.array([process[i].id() for i in order], np.int32)
    top = t_lep if process[t_lep].id() == 6 else t_had
    top_p3 = np.array([process[top].px(), process[top].py(), process[top].pz()])
    return top_p3, p4m, ids


# --- flat event records ----------------------------------------------------------------------------

class _Flat:
    """A batch of event records flattened to numpy: entry ``g`` of event ``evt[g]``; local index ``g - off``."""

    FIELDS = ("id", "status", "mother1", "daughter1", "daughter2", "px", "py", "pz", "e", "m")

    def __init__(self, ak, prt=None, arrays: dict[str, np.ndarray] | None = None,
                 counts: np.ndarray | None = None):
        if prt is not None:
            counts = np.asarray(ak.num(prt, axis=1), np.int64)
            arrays = {}
            for f in self.FIELDS:
                col = prt["p", f] if f in ("px", "py", "pz", "e") else prt[f]
                arrays[f] = np.asarray(ak.to_numpy(ak.flatten(col)))
        assert arrays is not None and counts is not None
        self.arrays = arrays
        self.counts = counts
        self.n = len(counts)
        self.off = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.evt = np.repeat(np.arange(self.n), counts)
        for k, v in arrays.items():
            setattr(self, k, v)
        self.absid = np.abs(self.id)
        self.pt = np.hypot(self.px, self.py)
        self.eta = np.arcsinh(self.pz / np.maximum(self.pt, 1e-12))
        self.phi = np.arctan2(self.py, self.px)
        self.base = self.off[self.evt]  # global index of entry 0 of each entry's event

    def subset(self, keep: np.ndarray) -> _Flat:
        """Only the events where ``keep`` [n] is True."""
        entries = keep[self.evt]
        return _Flat(None, arrays={k: v[entries] for k, v in self.arrays.items()}, counts=self.counts[keep])

    def pick(self, mask: np.ndarray, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Global index of the first (or last) entry matching ``mask`` in each event, and the match counts."""
        idx = np.flatnonzero(mask)
        ev = self.evt[idx]
        cnt = np.bincount(ev, minlength=self.n)
        if len(idx) == 0:
            return np.zeros(self.n, np.int64), cnt
        pos = np.searchsorted(ev, np.arange(self.n), side="right" if last else "left") - (1 if last else 0)
        return idx[np.clip(pos, 0, len(idx) - 1)], cnt

    def p4(self, g: np.ndarray) -> np.ndarray:
        return np.stack([self.px[g], self.py[g], self.pz[g], self.e[g]], axis=-1)


def _segments(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ranges ``starts[i] + arange(lengths[i])`` and the segment number of each element."""
    seg = np.repeat(np.arange(len(lengths)), lengths)
    first = np.cumsum(lengths) - lengths
    return starts[seg] + np.arange(len(seg)) - first[seg], seg


def _has_quark(absid: np.ndarray, q: int) -> np.ndarray:
    """Hadrons with quark ``q`` in the hundreds or thousands digit of |id| (no diquarks, no partons)."""
    hadron = (absid > 100) & (absid < 9_000_000) & ((absid // 10) % 10 != 0) & ((absid // 100) % 10 != 0)
    return hadron & (((absid // 100) % 10 == q) | ((absid // 1000) % 10 == q))


def _last_in_chain(f: _Flat, mask: np.ndarray) -> np.ndarray:
    """``mask`` entries that are not the mother of another ``mask`` entry (the last hadron of a chain)."""
    idx = np.flatnonzero(mask)
    is_mother = np.zeros(len(mask), bool)
    mothers = f.base[idx] + f.mother1[idx]
    is_mother[mothers[f.mother1[idx] > 0]] = True
    return mask & ~is_mother


def _truth(f: _Flat, idx: dict[str, np.ndarray], process: tuple[np.ndarray, np.ndarray] | None,
           rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """The file's truth of the events ``rows`` (a mask): from the event record, or the process record's."""
    truth = {}
    for k, name in enumerate(TRUTH_NAMES):
        if process is None:
            g = idx[name][rows]
            p4, mass, ids = f.p4(g), f.m[g], f.id[g]
        else:
            p4m, pid = process[0][rows, k], process[1][rows, k]
            p4, mass, ids = p4m[:, :4], p4m[:, 4], pid
        truth[name] = {"pt": physics.pt(p4), "eta": physics.eta(p4), "phi": physics.phi(p4),
                       "mass": mass, "pdgid": ids.astype(np.int32)}
    return truth


def _all_channel_truth_indices(f: _Flat) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Truth indices in every channel (the slots as in :meth:`lvd.data.generate.toy.ToyGenerator.partons_all_channels`),
    the per-event ``channel``, the prompt e/μ final copies (``lepton_final``, any number per event), and a
    well-formed flag.

    Each W's two daughters (first copies, |status| 23) are told apart by charge: a W⁺ gives a down-type fermion
    (odd |id|: ℓ⁺, d̄, s̄, b̄) of negative id and an up-type one (even |id|: ν, u, c) of positive id; a W⁻ the
    opposite.
    """
    st = np.abs(f.status)
    mother_abs = f.absid[f.base + f.mother1]
    top_last = (f.absid == 6) & (f.status == -62)
    w_first = (f.absid == 24) & (f.status == -22)
    b = (st == 23) & (f.absid == 5) & (mother_abs == 6)
    wd = (st == 23) & (mother_abs == 24)
    odd = f.absid % 2 == 1
    picks = {"t": f.pick(top_last & (f.id > 0), last=True), "tbar": f.pick(top_last & (f.id < 0), last=True),
             "W+": f.pick(w_first & (f.id > 0)), "W-": f.pick(w_first & (f.id < 0)),
             "b": f.pick(b & (f.id > 0)), "bbar": f.pick(b & (f.id < 0)),
             "down+": f.pick(wd & odd & (f.id < 0)), "up+": f.pick(wd & ~odd & (f.id > 0)),
             "down-": f.pick(wd & odd & (f.id > 0)), "up-": f.pick(wd & ~odd & (f.id < 0))}
    good = np.ones(f.n, bool)
    for _, cnt in picks.values():
        good &= cnt == 1
    g = {k: v[0] for k, v in picks.items()}
    mode = lambda down: np.select([f.absid[down] == 11, f.absid[down] == 13, f.absid[down] == 15],  # noqa: E731
                                  [channels.W_ELECTRON, channels.W_MUON, channels.W_TAU], channels.W_HADRONS)
    m_plus, m_minus = mode(g["down+"]), mode(g["down-"])
    lep_plus, lep_minus = m_plus != channels.W_HADRONS, m_minus != channels.W_HADRONS
    # the lepton side: the one leptonic W, the harder charged lepton's of two, the top's (W⁺) of none
    minus = np.where(lep_plus & lep_minus, f.pt[g["down-"]] > f.pt[g["down+"]], lep_minus & ~lep_plus)
    side = lambda a, b: np.where(minus, g[b], g[a])  # noqa: E731  (a: the W⁺/top side's, b: the W⁻ side's)
    other_down, other_up = side("down-", "down+"), side("up-", "up+")
    harder = f.pt[other_down] >= f.pt[other_up]
    idx = {"b_lep": side("b", "bbar"), "lepton": side("down+", "down-"), "neutrino": side("up+", "up-"),
           "b_had": side("bbar", "b"), "q1": np.where(harder, other_down, other_up),
           "q2": np.where(harder, other_up, other_down), "W_lep": side("W+", "W-"), "W_had": side("W-", "W+"),
           "t_lep": side("t", "tbar"), "t_had": side("tbar", "t"),
           "channel": channels.channel_of(m_plus, m_minus)}
    # the prompt e/μ of each W at its last copy (after QED radiation): follow the same-id daughters
    prompt = np.concatenate([g["down+"][good & np.isin(m_plus, (0, 1))], g["down-"][good & np.isin(m_minus, (0, 1))]])
    idx["lepton_final"] = _last_copies(f, prompt, good)
    return idx, good


def _last_copies(f: _Flat, start: np.ndarray, good: np.ndarray) -> np.ndarray:
    """The final copies of the particles ``start`` (global indices), following same-id daughters; an event
    whose chain breaks is marked not ``good``."""
    cur = start.copy()
    for _ in range(100):
        todo = np.flatnonzero(good[f.evt[cur]] & (f.status[cur] <= 0))
        if len(todo) == 0:
            break
        c = cur[todo]
        d1, d2 = f.base[c] + f.daughter1[c], f.base[c] + f.daughter2[c]
        ok1 = (f.daughter1[c] > 0) & (f.id[d1] == f.id[c])
        ok2 = (f.daughter2[c] > 0) & (f.id[d2] == f.id[c])
        good[f.evt[c[~(ok1 | ok2)]]] = False
        cur[todo] = np.where(ok1, d1, np.where(ok2, d2, c))
    return cur


# --- the generator ---------------------------------------------------------------------------------

@dataclass
class Batch:
    """Selected events of one batch and the batch's cut flow (all its events)."""

    data: EventData
    stage: np.ndarray  # cuts passed by each well-formed event, in generation order (detector.cutflow_of)
    n_malformed: int = 0
    # with channels="all": every well-formed event's truth, pass flag and channel
    generated: Generated | None = None
    # Pythia's running estimate of the generated process's cross section (pb) and its error, after this batch
    sigma_pb: float = 0.0
    sigma_error_pb: float = 0.0
    # with next_batch(keep_internals=True): every well-formed event's record ("flat"), truth indices
    # ("truth_index"), detector candidates ("candidates") and reconstruction ("reco"), for calibrations
    internals: dict[str, Any] | None = None


class PythiaGenerator:
    """One Pythia instance (one worker). :meth:`batches` yields :class:`Batch` objects forever."""

    def __init__(self, cfg: PythiaConfig = PythiaConfig(), seed: int = 0, shard: int = 0, worker: int = 0):
        self.p8, self.fastjet, self.ak = _backends()
        self.cfg, self.seed, self.shard, self.worker = cfg, int(seed), int(shard), int(worker)
        self.fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)
        self.jet_def = self.fastjet.JetDefinition(self.fastjet.antikt_algorithm, cfg.jet_radius)
        self.pythia = self.p8.Pythia("", False)
        # keep a reference to the hook: Pythia holds only a pointer to it
        if cfg.channels == "all" and cfg.truth == "process":
            raise LvdError("Pythia with every channel (--keep-unselected) reads the event record's truth only "
                           "(truth='event')")
        self.hook = _make_hook(self.p8, record=cfg.truth == "process", veto=cfg.channels == "signal")
        self.pythia.setUserHooksPtr(self.hook)
        for s in pythia_settings(cfg, pythia_seed(seed, shard, worker)):
            self._read(s)
        # with a mass range every batch initialises at its own mass
        if cfg.top.mass_range is None and not self.pythia.init():
            raise RuntimeError("Pythia initialisation failed")

    def _read(self, setting: str) -> None:
        if not self.pythia.readString(setting):
            raise RuntimeError(f"Pythia rejected the setting {setting!r}")

    def _init_at(self, m_top: float, seed: int) -> None:
        """Re-initialise at top mass ``m_top`` with Pythia seed ``seed`` (the events of a fresh Pythia there)."""
        for s in (*top_settings(m_top, float(self.cfg.top.width_at(m_top))), f"Random:seed = {seed}"):
            self._read(s)
        if not self.pythia.init():
            raise RuntimeError(f"Pythia initialisation at top mass {m_top:.3f} GeV failed")

    def batches(self) -> Iterator[Batch]:
        b = 0
        while True:
            yield self.next_batch(np.random.default_rng([self.seed, self.shard, self.worker, b]))
            b += 1

    def next_batch(self, rng: np.random.Generator, keep_internals: bool = False) -> Batch:
        """One ``nextBatch`` of Pythia through jets and the detector; ``rng`` draws the detector's randomness
        (and first, with a mass range, the batch's top mass and Pythia seed)."""
        cfg, top = self.cfg, self.cfg.top
        m_top = top.mass
        if top.mass_range is not None:
            m_top = float(rng.uniform(top.lo, top.hi))
            self._init_at(m_top, int(rng.integers(1, MAX_SEED + 1)))
        self.hook.records.clear()
        events = self.pythia.nextBatch(cfg.batch_size)
        f = _Flat(self.ak, events["prt"])
        process = self._align_process_truth(f) if cfg.truth == "process" else None
        indices = self._event_truth_indices if cfg.channels == "signal" else _all_channel_truth_indices
        idx, good = indices(f)
        n_malformed = int((~good).sum())
        if n_malformed:
            f = f.subset(good)
            idx = indices(f)[0]
            if process is not None:
                process = tuple(a[good] for a in process)
        if f.n == 0:
            raise RuntimeError(f"Pythia returned no usable event in a batch of {cfg.batch_size}")
        cand = self._candidates(f, idx)
        reco = detector.simulate(cand, cfg.detector, rng)
        sel = reco.selected
        truth = _truth(f, idx, process, sel)
        n_sel = int(sel.sum())
        generator = {"top_mass": np.full(n_sel, m_top), "top_width": np.full(n_sel, float(top.width_at(m_top)))}
        generated = None
        if cfg.channels == "all":
            generator["channel"] = idx["channel"][sel].astype(np.int32)
            generated = Generated(truth=_truth(f, idx, None, np.ones(f.n, bool)), pass_selection=sel.copy(),
                                  channel=idx["channel"])
        data = EventData(source=reco.source, mask=reco.mask, met=reco.met, truth=truth, generator=generator)
        internals = dict(flat=f, truth_index=idx, candidates=cand, reco=reco) if keep_internals else None
        info = self.pythia.infoPython()
        return Batch(data=data, stage=reco.stage, n_malformed=n_malformed, internals=internals, generated=generated,
                     sigma_pb=float(info.sigmaGen()) * MB_TO_PB, sigma_error_pb=float(info.sigmaErr()) * MB_TO_PB)

    # -- truth ------------------------------------------------------------------------------------

    def _align_process_truth(self, f: _Flat) -> tuple[np.ndarray, np.ndarray]:
        """Process-record truth ``([n, 10, 5], [n, 10])`` of each event, matched by the top momentum.

        The hook sees every accepted hard process, including ones whose event later failed and was
        regenerated, so records can outnumber events; the event record's first top copy (status -22)
        carries the hard-process momentum exactly.
        """
        recs = self.hook.records
        g, cnt = f.pick((f.id == 6) & (f.status == -22))
        if (cnt != 1).any():
            raise RuntimeError("event record without a unique hard-process top (status -22)")
        tops = np.stack([f.px[g], f.py[g], f.pz[g]], axis=-1)
        p4m = np.empty((f.n, len(TRUTH_NAMES), 5))
        ids = np.empty((f.n, len(TRUTH_NAMES)), np.int32)
        j = 0
        for i in range(f.n):
            while j < len(recs) and not np.allclose(recs[j][0], tops[i], rtol=1e-9, atol=1e-6):
                j += 1
            if j == len(recs):
                raise RuntimeError("could not match an event to its hard process")
            p4m[i], ids[i] = recs[j][1], recs[j][2]
            j += 1
        return p4m, ids

    def _event_truth_indices(self, f: _Flat) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Global indices of the truth particles in the event record, and a per-event well-formed flag."""
        st = np.abs(f.status)
        mother_abs = f.absid[f.base + f.mother1]
        first23 = st == 23
        top_last = (f.absid == 6) & (f.status == -62)
        w_first = (f.absid == 24) & (f.status == -22)
        b = first23 & (f.absid == 5) & (mother_abs == 6)
        wd = first23 & (mother_abs == 24)
        picks = {
            "t": f.pick(top_last & (f.id > 0), last=True), "tbar": f.pick(top_last & (f.id < 0), last=True),
            "W+": f.pick(w_first & (f.id > 0)), "W-": f.pick(w_first & (f.id < 0)),
            "b": f.pick(b & (f.id > 0)), "bbar": f.pick(b & (f.id < 0)),
            "lepton": f.pick(wd & ((f.absid == 11) | (f.absid == 13))),
            "neutrino": f.pick(wd & ((f.absid == 12) | (f.absid == 14))),
            "qa": f.pick(wd & (f.absid <= 5)), "qb": f.pick(wd & (f.absid <= 5), last=True),
        }
        good = np.ones(f.n, bool)
        for name, (_, cnt) in picks.items():
            good &= cnt == (2 if name in ("qa", "qb") else 1)
        g = {k: v[0] for k, v in picks.items()}
        lep_plus = f.id[g["lepton"]] < 0  # l+ comes from W+ from t
        sel = lambda a, b: np.where(lep_plus, g[a], g[b])  # noqa: E731
        qa_harder = f.pt[g["qa"]] >= f.pt[g["qb"]]
        idx = {
            "b_lep": sel("b", "bbar"), "lepton": g["lepton"], "neutrino": g["neutrino"],
            "b_had": sel("bbar", "b"),
            "q1": np.where(qa_harder, g["qa"], g["qb"]), "q2": np.where(qa_harder, g["qb"], g["qa"]),
            "W_lep": sel("W+", "W-"), "W_had": sel("W-", "W+"), "t_lep": sel("t", "tbar"), "t_had": sel("tbar", "t"),
        }
        # the prompt lepton's last copy (after QED radiation)
        idx["lepton_final"] = _last_copies(f, idx["lepton"], good)
        return idx, good

    # -- detector inputs --------------------------------------------------------------------------

    def _candidates(self, f: _Flat, idx: dict[str, np.ndarray]) -> detector.Candidates:
        """Jets, lepton candidates and the soft term of every event, for :func:`detector.simulate`."""
        cfg, ak, n = self.cfg, self.ak, f.n
        final = f.status > 0
        neutrino = np.isin(f.absid, _NEUTRINOS)
        visible = final & ~neutrino & (np.abs(f.eta) < cfg.max_eta)
        lep_final = idx["lepton_final"]

        # lepton candidates: the W lepton first, then other e/mu by falling pT
        is_lep = final & ((f.absid == 11) | (f.absid == 13)) & (f.pt > cfg.lepton_min_pt) & (np.abs(f.eta) < cfg.lepton_max_eta)
        is_lep[lep_final] = True
        cand = np.flatnonzero(is_lep)
        not_w = np.ones(len(f.id), bool)
        not_w[lep_final] = False
        cand = cand[np.lexsort((-f.pt[cand], not_w[cand], f.evt[cand]))]
        c_ev = f.evt[cand]
        # isolation: ΣpT of the other visible particles above iso_min_pt within the cone
        iso = np.flatnonzero(visible & (f.pt > cfg.iso_min_pt))
        iso_cnt = np.bincount(f.evt[iso], minlength=n)
        iso_off = np.concatenate([[0], np.cumsum(iso_cnt)[:-1]])
        pos, pair = _segments(iso_off[c_ev], iso_cnt[c_ev])
        other, lep = iso[pos], cand[pair]
        dr = physics.delta_r(f.eta[lep], f.phi[lep], f.eta[other], f.phi[other])
        near = (dr < cfg.iso_cone) & (other != lep)
        sum_pt = np.bincount(pair, weights=np.where(near, f.pt[other], 0.0), minlength=len(cand))
        limit = np.where(f.absid[cand] == 11, cfg.iso_max_electron, cfg.iso_max_muon)
        isolated = sum_pt < limit * f.pt[cand]
        n_lep = np.bincount(c_ev, minlength=n)
        width = max(cfg.min_lepton_slots, int(n_lep.max()))
        slot = np.arange(len(cand)) - (np.cumsum(n_lep) - n_lep)[c_ev]
        lep_p4 = np.zeros((n, width, 4))
        lep_p4[c_ev, slot] = f.p4(cand)
        lep_pdgid = np.zeros((n, width), np.int32)
        lep_pdgid[c_ev, slot] = f.id[cand]
        lep_iso = np.zeros((n, width), bool)
        lep_iso[c_ev, slot] = isolated
        lep_valid = np.zeros((n, width), bool)
        lep_valid[c_ev, slot] = True

        # jet inputs (real particles) followed by the ghost hadrons of each event
        inputs = visible & (f.absid != 13)
        inputs[lep_final] = False
        hadron_ok = f.pt > cfg.hadron_min_pt
        bh = _last_in_chain(f, _has_quark(f.absid, 5)) & hadron_ok
        ch = _last_in_chain(f, _has_quark(f.absid, 4)) & hadron_ok & ~bh
        real, ghost = np.flatnonzero(inputs), np.flatnonzero(bh | ch)
        src = np.concatenate([real, ghost])
        is_ghost = np.concatenate([np.zeros(len(real), bool), np.ones(len(ghost), bool)])
        order = np.lexsort((src, is_ghost, f.evt[src]))
        src, is_ghost = src[order], is_ghost[order]
        flav = np.where(is_ghost, np.where(bh[src], 5, 4), 0)
        scale = np.where(is_ghost, cfg.ghost_scale, 1.0)
        in_cnt = np.bincount(f.evt[src], minlength=n)
        in_off = np.concatenate([[0], np.cumsum(in_cnt)[:-1]])
        parts = ak.unflatten(ak.zip({"px": f.px[src] * scale, "py": f.py[src] * scale,
                                     "pz": f.pz[src] * scale, "E": f.e[src] * scale}), in_cnt)
        cs = self.fastjet.ClusterSequence(parts, self.jet_def)
        jets = cs.inclusive_jets(min_pt=cfg.jet_min_pt)
        consts = cs.constituent_index(min_pt=cfg.jet_min_pt)
        n_jet = np.asarray(ak.num(jets, axis=1), np.int64)
        jp4 = np.stack([np.asarray(ak.to_numpy(ak.flatten(jets[c]))) for c in ("px", "py", "pz", "E")], axis=-1)
        jet_ev = np.repeat(np.arange(n), n_jet)
        per_jet = np.asarray(ak.to_numpy(ak.flatten(ak.num(consts, axis=2))), np.int64)
        local = np.asarray(ak.to_numpy(ak.flatten(consts, axis=None)), np.int64)
        const_jet = np.repeat(np.arange(len(per_jet)), per_jet)
        const_pos = in_off[jet_ev[const_jet]] + local
        jet_flav = np.zeros(len(per_jet), np.int64)
        np.maximum.at(jet_flav, const_jet, flav[const_pos])
        in_jet = np.zeros(len(f.id), bool)
        in_jet[src[const_pos[~is_ghost[const_pos]]]] = True

        # pad jets, pT-ordered
        jpt = physics.pt(jp4)
        jorder = np.lexsort((-jpt, jet_ev))
        jp4, jet_flav, jet_ev = jp4[jorder], jet_flav[jorder], jet_ev[jorder]
        jslot = np.arange(len(jet_ev)) - (np.cumsum(n_jet) - n_jet)[jet_ev]
        jwidth = max(1, int(n_jet.max()) if n else 1)
        jet_p4 = np.zeros((n, jwidth, 4))
        jet_p4[jet_ev, jslot] = jp4
        jet_flavour = np.zeros((n, jwidth), np.int64)
        jet_flavour[jet_ev, jslot] = jet_flav
        jet_valid = np.zeros((n, jwidth), bool)
        jet_valid[jet_ev, jslot] = True

        # soft term: calorimeter-visible particles in neither a jet nor a lepton candidate
        soft = inputs & ~in_jet & ~is_lep
        s_ev = f.evt[soft]
        soft_pxy = np.stack([np.bincount(s_ev, weights=f.px[soft], minlength=n),
                             np.bincount(s_ev, weights=f.py[soft], minlength=n)], axis=-1)
        soft_sumet = np.bincount(s_ev, weights=f.pt[soft], minlength=n)
        return detector.Candidates(
            jet_p4=jet_p4, jet_flavour=jet_flavour, jet_valid=jet_valid,
            lep_p4=lep_p4, lep_pdgid=lep_pdgid, lep_isolated=lep_iso, lep_valid=lep_valid,
            soft_pxy=soft_pxy, soft_sumet=soft_sumet)


# --- workers and the file ------------------------------------------------------------------------

def _worker_main(cfg: PythiaConfig, seed: int, shard: int, worker: int, tasks: Any, out: Any) -> None:
    """Body of a worker process: for each request on ``tasks`` put ``("ok", Batch)`` on ``out`` (its batches
    in order 0, 1, 2, ...); stop at ``None``. A failure puts one ``("error", text)``."""
    try:
        gen = PythiaGenerator(cfg, seed=seed, shard=shard, worker=worker).batches()
        while tasks.get() is not None:
            out.put(("ok", next(gen)))
    except BaseException:  # noqa: BLE001  (report everything, the parent raises)
        out.put(("error", traceback.format_exc()))


class _WorkerPool:
    """``workers`` spawned processes read round-robin in worker order (batch ``k`` is batch ``k // W`` of
    worker ``k % W``), so the file does not depend on timing.

    Batches are requested ahead (at most two per worker), but no more than the selected events still
    needed are expected to fill, so that little work is thrown away at the end.
    """

    def __init__(self, cfg: PythiaConfig, seed: int, shard: int, workers: int):
        ctx = mp.get_context("spawn")
        self.workers, self.batch_size = workers, cfg.batch_size
        self.tasks = [ctx.Queue() for _ in range(workers)]
        self.results = [ctx.Queue() for _ in range(workers)]
        self.procs = [ctx.Process(target=_worker_main, args=(cfg, seed, shard, w, t, r), daemon=True,
                                  name=f"lvd-pythia-{w}")
                      for w, (t, r) in enumerate(zip(self.tasks, self.results, strict=True))]
        for p in self.procs:
            p.start()

    def batches(self, remaining: Callable[[], int]) -> Iterator[Batch]:
        """Batches in file order; ``remaining()`` is the number of selected events still needed."""
        requested = consumed = selected = 0
        while True:
            # expected selected events per batch: measured, or ~20% of the batch before the first one
            per_batch = selected / consumed if consumed else 0.2 * self.batch_size
            need = remaining()
            while requested == consumed or (requested - consumed < 2 * self.workers
                                             and (requested - consumed) * per_batch < 1.1 * need):
                self.tasks[requested % self.workers].put(requested // self.workers)
                requested += 1
            w = consumed % self.workers
            q, p = self.results[w], self.procs[w]
            while True:
                try:
                    kind, item = q.get(timeout=1.0)
                    break
                except queue.Empty:
                    if not p.is_alive():
                        raise RuntimeError(f"pythia worker {w} died (exit code {p.exitcode})") from None
            if kind == "error":
                raise RuntimeError(f"pythia worker {w} failed:\n{item}")
            consumed += 1
            selected += item.data.n_events
            yield item

    def close(self) -> None:
        # unfinished batches are not needed: stop the workers at once
        for p in self.procs:
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            p.join(timeout=10)
        for q in (*self.tasks, *self.results):
            q.close()
            q.cancel_join_thread()


def attrs(cfg: PythiaConfig, seed: int, shard: int, n_shards: int, workers: int,
          cutflow: dict[str, int], n_malformed: int, sigma: tuple[float, float] = (0.0, 0.0)) -> dict:
    v = versions()
    process = ("pp > t t~, W decays at Pythia's branching fractions (channel per event)" if cfg.channels == "all"
               else "pp > t t~ > (b l nu)(b q q'), l = e, mu")
    # Pythia's cross section already counts only the events its hook kept: the events stand for all of it
    cross_section = {"cross_section_pb": sigma[0], "cross_section_error_pb": sigma[1], "branching_fraction": 1.0,
                     "sum_weights_generated": float(cutflow["generated"]),
                     "channels": list(channels.CHANNELS) if cfg.channels == "all"
                     else [channels.CHANNELS[channels.SIGNAL]]}
    if sigma[0] > 0:
        cross_section["luminosity_inv_fb"] = cutflow["generated"] / (1000.0 * sigma[0])
    return {
        "generator": f"lvd pythia8 {v['pythia8mc']}",
        "process": f"{process} (Pythia 8 Top:gg2ttbar + Top:qqbar2ttbar)", **cross_section,
        "sqrt_s": cfg.sqrt_s, "seed": int(seed), "shard": int(shard), "n_shards": int(n_shards),
        "workers": int(workers), "batch_size": cfg.batch_size,
        "pythia_seeds": [pythia_seed(seed, shard, w) for w in range(workers)],
        "truth": cfg.truth, "truth_definition": TRUTH_DEFINITIONS[cfg.truth],
        "mpi": bool(cfg.mpi),
        "detector": ("parametric Delphes-ATLAS-like on FastJet anti-kT R=0.4 particle jets (pT > 15 GeV), "
                     "ghost-associated b/c hadron labels"),
        "jets": f"anti-kT R={cfg.jet_radius}, pT > {cfg.jet_min_pt} GeV, fastjet {v['fastjet']}",
        "pythia_settings": [s for s in pythia_settings(cfg, 0) if not s.startswith("Random:seed")],
        "cutflow": dict(cutflow), "n_malformed": int(n_malformed),
        "config": asdict(cfg), **cfg.top.attrs(),
    }


def generate_file(path, n_events: int, seed: int = 0, workers: int = 1, shard: int = 0, n_shards: int = 1,
                  truth: str = "event", mpi: bool = True, on_progress: Callable[[int], None] | None = None,
                  cfg: PythiaConfig | None = None, keep_unselected: bool = False) -> dict:
    """Write exactly ``n_events`` selected events to ``path`` (atomically); returns the file attrs.

    ``cfg`` overrides the remaining settings (``truth`` and ``mpi`` always come from the arguments).
    The cut flow counts the generated events up to the last one written, so ``cutflow['min_btags'] ==
    n_events`` (malformed event records, dropped, count as generated). ``keep_unselected``: every channel, and
    the truth of every well-formed generated event in ``GENERATED`` (docs/format.md).
    """
    _backends()
    if n_events < 1:
        raise LvdError(f"n_events {n_events}: need at least 1")
    if workers < 1:
        raise LvdError(f"workers {workers}: need at least 1")
    if truth not in TRUTH_DEFINITIONS:
        raise LvdError(f"truth {truth!r}: choose 'event' or 'process'")
    if seed < 0:
        raise LvdError(f"seed {seed}: must be >= 0")
    if not 0 <= shard < n_shards:
        raise LvdError(f"shard {shard} of {n_shards}: need 0 <= shard < n_shards")
    cfg = replace(cfg or PythiaConfig(), truth=truth, mpi=bool(mpi))
    if keep_unselected:
        cfg = replace(cfg, channels="all")
    cutflow = {"generated": 0, "one_lepton": 0, "min_jets": 0, "min_btags": 0}
    n_malformed = 0
    pool = _WorkerPool(cfg, seed, shard, workers) if workers > 1 else None
    try:
        with EventWriter(path) as writer:
            if pool is not None:
                source = pool.batches(lambda: n_events - writer.n_events)
            else:
                source = PythiaGenerator(cfg, seed=seed, shard=shard).batches()
            # Pythia's cross-section estimates: each worker's running one (its last batch's), or every batch's
            # when each batch re-initialises at its own top mass
            estimates: dict[int, tuple[float, float]] = {}
            for number, batch in enumerate(source):
                n_malformed += batch.n_malformed
                estimates[number if cfg.top.mass_range is not None else number % workers] = (
                    batch.sigma_pb, batch.sigma_error_pb)
                take = min(batch.data.n_events, n_events - writer.n_events)
                # count the generated events up to the last one written (malformed ones in full)
                through = detector.through_selected(batch.stage, take)
                for k, v in detector.cutflow_of(through).items():
                    cutflow[k] += v
                cutflow["generated"] += batch.n_malformed
                if keep_unselected:
                    writer.append_generated(batch.generated.take(slice(0, len(through))))
                if take > 0:
                    writer.append(batch.data.take(slice(0, take)))
                    if on_progress is not None:
                        on_progress(take)
                if writer.n_events >= n_events:
                    break
            sigma = combined_cross_section(list(estimates.values()))
            if cfg.top.mass_range is not None and estimates:  # the average over the batches' masses
                values = np.array(list(estimates.values()))
                sigma = (float(values[:, 0].mean()), float(np.sqrt((values[:, 1] ** 2).sum()) / len(values)))
            writer.attrs = attrs(cfg, seed, shard, n_shards, workers, cutflow, n_malformed, sigma)
    finally:
        if pool is not None:
            pool.close()
    return writer.attrs
