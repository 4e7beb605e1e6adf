"""Delphes- and NanoAOD-layout ROOT files and SPANet-style HDF5 files written from lvd toy events whose
truth is known, and a tree's branches read back and rewritten (changed) for the converters' fuzz test.

Every event carries a generator record with the features a real one has: beams, t/t̄ and W copies (the
truth is the last copy), a gluon radiated off the top and a photon off a W daughter (neither is a decay
product), a b copy after its shower (the truth is the first appearance), in a random order per event.
``categories`` turns chosen events into τ, di-leptonic, all-hadronic or chain-less records, ``failures``
makes chosen semi-leptonic events fail one cut, so the expected conversion is known event by event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import h5py
import numpy as np
import uproot

from lvd.data.schema import EventData

# record slots: (name, pdgid rule, mother slot); pdg ids and kinematics are filled per event
SLOTS = ("beam1", "beam2", "t0", "tb0", "t", "tb", "gluon", "Wp0", "b", "Wm", "bb", "Wp", "fp0", "fp1",
         "fm0", "fm1", "photon", "b_copy")
MOTHER = {"beam1": -1, "beam2": -1, "t0": "beam1", "tb0": "beam2", "t": "t0", "tb": "tb0", "gluon": "t",
          "Wp0": "t", "b": "t", "Wm": "tb", "bb": "tb", "Wp": "Wp0", "fp0": "Wp", "fp1": "Wp", "fm0": "Wm",
          "fm1": "Wm", "photon": "Wp", "b_copy": "b"}
FAILURES = ("few_jets", "no_btag", "veto_lepton", "soft_lepton")
CATEGORIES = ("tau", "dileptonic", "all_hadronic", "no_ttbar_chain")


@dataclass
class Plan:
    """Which events are changed how: ``kind [n]`` is '' (kept), a failure or a category name."""

    kind: np.ndarray
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def count(self, name: str) -> int:
        return int((self.kind == name).sum())


def make_plan(n: int, seed: int, fraction: float = 0.05, negative: float = 0.1) -> Plan:
    """Every failure and category on ``fraction`` of the events each; weights ±1.3 with ``negative`` of them < 0."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["", *FAILURES, *CATEGORIES], dtype=object)
    p = np.array([1 - fraction * (len(kinds) - 1), *[fraction] * (len(kinds) - 1)])
    kind = kinds[rng.choice(len(kinds), size=n, p=p)].astype(str)
    w = np.where(rng.random(n) < negative, -1.3, 1.3)
    return Plan(kind=kind, weights=w)


def _record(data: EventData, plan: Plan, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-slot ``[n]`` arrays pid, mother (local), pt, eta, phi, mass, then shuffled: ``[n, P]`` each."""
    t, n = data.truth, data.n_events
    lep_plus = t["lepton"]["pdgid"] < 0  # ℓ+ comes from W+ from t
    kin = {s: {k: np.zeros(n) for k in ("pt", "eta", "phi", "mass")} for s in SLOTS}
    pid = {s: np.zeros(n, np.int64) for s in SLOTS}

    def put(slot, particle, where=None, scale=1.0):
        where = np.ones(n, bool) if where is None else where
        for k in ("pt", "eta", "phi", "mass"):
            kin[slot][k] = np.where(where, t[particle][k] * (scale if k == "pt" else 1.0), kin[slot][k])
        pid[slot] = np.where(where, t[particle]["pdgid"] if "pdgid" in t[particle] else pid[slot], pid[slot])

    for k in ("pt", "eta", "phi", "mass"):
        kin["beam1"][k], kin["beam2"][k] = np.zeros(n), np.zeros(n)
    pid["beam1"][:], pid["beam2"][:] = 2212, 2212
    # tops and Ws: the last copies are the truth, the first copies differ
    for top_slot, first, side_plus in (("t", "t0", True), ("tb", "tb0", False)):
        is_lep = lep_plus if side_plus else ~lep_plus
        for slot, scale in ((top_slot, 1.0), (first, 0.9)):
            put(slot, "t_lep", is_lep, scale)
            put(slot, "t_had", ~is_lep, scale)
            pid[slot][:] = 6 if side_plus else -6
    for slot, scale, side_plus in (("Wp", 1.0, True), ("Wp0", 0.95, True), ("Wm", 1.0, False)):
        is_lep = lep_plus if side_plus else ~lep_plus
        put(slot, "W_lep", is_lep, scale)
        put(slot, "W_had", ~is_lep, scale)
        pid[slot][:] = 24 if side_plus else -24
    for slot, side_plus in (("b", True), ("bb", False)):
        is_lep = lep_plus if side_plus else ~lep_plus
        put(slot, "b_lep", is_lep)
        put(slot, "b_had", ~is_lep)
    put("b_copy", "b_lep", lep_plus, 0.8)
    put("b_copy", "b_had", ~lep_plus, 0.8)
    pid["b_copy"] = pid["b"].copy()
    # W daughters: W+ -> (fp0, fp1), W- -> (fm0, fm1); q2 first on the hadronic side so q1 is found by pT
    for slot, plus_part, minus_part in (("fp0", "lepton", "q2"), ("fp1", "neutrino", "q1"),
                                        ("fm0", "q2", "lepton"), ("fm1", "q1", "neutrino")):
        put(slot, plus_part, lep_plus)
        put(slot, minus_part, ~lep_plus)
    kin["gluon"] = {"pt": t["b_had"]["pt"] * 0.1, "eta": t["b_had"]["eta"], "phi": t["b_had"]["phi"],
                    "mass": np.zeros(n)}
    pid["gluon"][:] = 21
    kin["photon"] = {"pt": np.full(n, 2.0), "eta": np.zeros(n), "phi": np.zeros(n), "mass": np.zeros(n)}
    pid["photon"][:] = 22

    # the categories: change the W decays or remove the tops
    lep_w = np.where(lep_plus[:, None], np.array([["fp0", "fp1"]] * n), np.array([["fm0", "fm1"]] * n))
    had_w = np.where(lep_plus[:, None], np.array([["fm0", "fm1"]] * n), np.array([["fp0", "fp1"]] * n))
    sign = np.where(lep_plus, 1, -1)  # W+ gives ℓ+ (negative pdg id)
    for e in np.flatnonzero(plan.kind == "tau"):
        pid[lep_w[e, 0]][e], pid[lep_w[e, 1]][e] = -15 * sign[e], 16 * sign[e]
    for e in np.flatnonzero(plan.kind == "dileptonic"):
        pid[had_w[e, 0]][e], pid[had_w[e, 1]][e] = 13 * sign[e], -14 * sign[e]
    for e in np.flatnonzero(plan.kind == "all_hadronic"):
        pid[lep_w[e, 0]][e], pid[lep_w[e, 1]][e] = 2 * sign[e], -1 * sign[e]
    chainless = plan.kind == "no_ttbar_chain"
    for slot in ("t0", "t"):
        pid[slot] = np.where(chainless, 23, pid[slot])

    index = {s: i for i, s in enumerate(SLOTS)}
    mother = np.array([-1 if MOTHER[s] == -1 else index[MOTHER[s]] for s in SLOTS])
    # shuffle every event's record, keeping the links
    p = len(SLOTS)
    perm = np.argsort(rng.random((n, p)), axis=1)  # new position j holds old slot perm[e, j]
    inv = np.argsort(perm, axis=1)
    old_mother = np.broadcast_to(mother, (n, p))
    new_mother = np.where(old_mother >= 0, np.take_along_axis(inv, np.maximum(old_mother, 0), 1), -1)
    out = {"pid": np.stack([pid[s] for s in SLOTS], 1), "mother": new_mother}
    for k in ("pt", "eta", "phi", "mass"):
        out[k] = np.stack([kin[s][k] for s in SLOTS], 1)
    return {k: np.take_along_axis(v, perm, 1) for k, v in out.items()}


def _objects(data: EventData, plan: Plan):
    """Jets ``[n][var]`` and leptons from the toy's detector-level objects, with the planned failures."""
    src, mask = data.source, data.mask
    jet_mask = mask.copy()
    jet_mask[:, 0] = False
    jets = {k: np.asarray(src[k], np.float64).copy() for k in ("pt", "eta", "phi", "mass")}
    btag = src["btag"] > 0.5
    rank = np.cumsum(jet_mask, axis=1)  # 1 for the first real jet
    few = (plan.kind == "few_jets")[:, None] & (rank > 3) & jet_mask
    jets["pt"] = np.where(few, 20.0, jets["pt"])
    btag = btag & ~(plan.kind == "no_btag")[:, None]
    counts = jet_mask.sum(1)
    jet = {k: ak.unflatten(v[jet_mask], counts) for k, v in jets.items()}
    jet["btag"] = ak.unflatten(btag[jet_mask], counts)
    lepton = {k: np.asarray(src[k][:, 0], np.float64).copy() for k in ("pt", "eta", "phi", "charge")}
    lepton["pt"] = np.where(plan.kind == "soft_lepton", 20.0, lepton["pt"])
    is_e = src["is_electron"][:, 0] > 0.5
    return jet, lepton, is_e, plan.kind == "veto_lepton"


def _lists(values: dict[str, np.ndarray], present: np.ndarray) -> dict[str, ak.Array]:
    """``[n]`` values -> ``[n][0 or 1]`` lists, present where ``present``."""
    counts = present.astype(np.int64)
    return {k: ak.unflatten(v[present], counts) for k, v in values.items()}


def _append(a: dict[str, ak.Array], b: dict[str, ak.Array]) -> dict[str, ak.Array]:
    return {k: ak.concatenate([a[k], b[k]], axis=1) for k in a}


def write_delphes(path, data: EventData, plan: Plan, seed: int = 0, chunk: int = 50_000,
                  mode: str = "recreate") -> None:
    """A Delphes-layout file (tree ``Delphes``, branches ``Jet.PT`` ..., counters ``Jet_size``)."""
    with getattr(uproot, mode)(path) as f:
        for start in range(0, data.n_events, chunk):
            part = data.take(slice(start, start + chunk))
            p = Plan(plan.kind[start:start + chunk], plan.weights[start:start + chunk])
            branches = _delphes_branches(part, p, np.random.default_rng([seed, start]))
            if start == 0:
                f.mktree("Delphes", {k: v.type.content for k, v in branches.items()},
                         counter_name=lambda c: f"{c}_size", field_name=lambda outer, inner: f"{outer}.{inner}")
            f["Delphes"].extend(branches)


def _delphes_branches(data: EventData, plan: Plan, rng: np.random.Generator) -> dict[str, ak.Array]:
    n = data.n_events
    jet, lepton, is_e, veto = _objects(data, plan)
    # bit 0 is the working point; bit 1 (another working point) is set at random and must not matter
    bits = ak.values_astype(jet.pop("btag"), np.uint32) + 2 * ak.unflatten(
        rng.integers(0, 2, int(ak.sum(ak.num(jet["pt"])))).astype(np.uint32), ak.num(jet["pt"]))
    jets = {"PT": jet["pt"], "Eta": jet["eta"], "Phi": jet["phi"], "Mass": jet["mass"], "BTag": bits}
    lep = {"PT": lepton["pt"], "Eta": lepton["eta"], "Phi": lepton["phi"], "Charge": lepton["charge"]}
    extra_mu = {"PT": np.full(n, 15.0), "Eta": np.full(n, 1.0), "Phi": np.full(n, 0.5), "Charge": np.ones(n)}
    electrons = _lists(lep, is_e)
    muons = _append(_lists(lep, ~is_e), _lists(extra_mu, veto))
    rec = _record(data, plan, rng)
    counts = np.full(n, rec["pid"].shape[1])
    particle = {"PID": rec["pid"].astype(np.int32), "Status": np.full(rec["pid"].shape, 22, np.int32),
                "M1": rec["mother"].astype(np.int32), "M2": np.full(rec["pid"].shape, -1, np.int32),
                "PT": rec["pt"], "Eta": rec["eta"], "Phi": rec["phi"], "Mass": rec["mass"]}
    as_f32 = {k: ak.unflatten(v.ravel().astype(np.float32) if v.dtype.kind == "f" else v.ravel(), counts)
              for k, v in particle.items()}
    one = np.ones(n, bool)
    return {
        "Event": ak.zip(_lists({"Weight": plan.weights.astype(np.float32)}, one)),
        "Jet": ak.zip({k: ak.values_astype(v, np.float32) if k != "BTag" else v for k, v in jets.items()}),
        "Electron": ak.zip({k: ak.values_astype(v, np.float32) for k, v in electrons.items()}),
        "Muon": ak.zip({k: ak.values_astype(v, np.float32) for k, v in muons.items()}),
        "MissingET": ak.zip(_lists({"MET": data.met["met"].astype(np.float32),
                                    "Phi": data.met["phi"].astype(np.float32)}, one)),
        "Particle": ak.zip(as_f32),
    }


def write_nanoaod(path, data: EventData, plan: Plan, seed: int = 0) -> None:
    """A NanoAOD-layout file (tree ``Events``, ``nJet``/``Jet_pt`` ..., ``GenPart_genPartIdxMother``)."""
    n = data.n_events
    rng = np.random.default_rng(seed)
    jet, lepton, is_e, veto = _objects(data, plan)
    btag = jet.pop("btag")
    # every event: a jet on top of the lepton (NanoAOD clusters the lepton into a jet), b-like to make it count
    overlap = _lists({"pt": lepton["pt"] * 1.05, "eta": lepton["eta"], "phi": lepton["phi"],
                      "mass": np.full(n, 0.2)}, np.ones(n, bool))
    jets = _append({k: jet[k] for k in ("pt", "eta", "phi", "mass")}, overlap)
    disc = ak.concatenate([ak.where(btag, 0.9, 0.05), ak.unflatten(np.full(n, 0.95), np.ones(n, np.int64))], axis=1)
    n_jets = ak.num(jets["pt"])
    jet_branches = {**jets, "btagDeepFlavB": disc, "jetId": ak.unflatten(np.full(int(ak.sum(n_jets)), 6, np.int32),
                                                                          n_jets)}
    mass_e, mass_mu = 0.000511, 0.10566
    lep = {"pt": lepton["pt"], "eta": lepton["eta"], "phi": lepton["phi"], "charge": lepton["charge"].astype(np.int32)}
    # electrons failing the ID are invisible: one in some events must change nothing
    loose = rng.random(n) < 0.3
    bad_e = {"pt": np.full(n, 40.0), "eta": np.full(n, -1.0), "phi": np.full(n, 2.0), "charge": np.ones(n, np.int32)}
    electrons = _append(_lists({**lep, "mass": np.full(n, mass_e), "cutBased": np.full(n, 4, np.int32)}, is_e),
                        _lists({**bad_e, "mass": np.full(n, mass_e), "cutBased": np.ones(n, np.int32)}, loose))
    extra_mu = {"pt": np.full(n, 15.0), "eta": np.full(n, 1.0), "phi": np.full(n, 0.5), "charge": np.ones(n, np.int32)}
    muons = _append(_lists({**lep, "mass": np.full(n, mass_mu), "tightId": np.ones(n, bool),
                            "pfRelIso04_all": np.full(n, 0.05)}, ~is_e),
                    _lists({**extra_mu, "mass": np.full(n, mass_mu), "tightId": np.ones(n, bool),
                            "pfRelIso04_all": np.full(n, 0.05)}, veto))
    rec = _record(data, plan, rng)
    counts = np.full(n, rec["pid"].shape[1])
    gen = {"pdgId": rec["pid"].astype(np.int32), "genPartIdxMother": rec["mother"].astype(np.int16),
           "status": np.full(rec["pid"].shape, 22, np.int32), "pt": rec["pt"].astype(np.float32),
           "eta": rec["eta"].astype(np.float32), "phi": rec["phi"].astype(np.float32),
           "mass": rec["mass"].astype(np.float32)}
    branches = {
        "Jet": ak.zip({k: ak.values_astype(v, np.float32) if k != "jetId" else v for k, v in jet_branches.items()}),
        "Electron": ak.zip({k: ak.values_astype(v, np.float32) if k in ("pt", "eta", "phi", "mass") else v
                            for k, v in electrons.items()}),
        "Muon": ak.zip({k: ak.values_astype(v, np.float32) if k in ("pt", "eta", "phi", "mass", "pfRelIso04_all")
                        else v for k, v in muons.items()}),
        "GenPart": ak.zip({k: ak.unflatten(v.ravel(), counts) for k, v in gen.items()}),
        "MET_pt": data.met["met"].astype(np.float32), "MET_phi": data.met["phi"].astype(np.float32),
        "genWeight": plan.weights.astype(np.float32),
    }
    with uproot.recreate(path) as f:  # a TTree (assigning a dict would write an RNTuple)
        f.mktree("Events", {k: v.type.content if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()})
        f["Events"].extend(branches)


# --- SPANet-style HDF5 -------------------------------------------------------------------------------

SPANET_NAMES = {"b_lep": "lt/b", "lepton": "lt/l", "neutrino": "lt/nu", "b_had": "ht/b", "q1": "ht/q1", "q2": "ht/q2"}
SPANET_FLAGS = ["--source-group", "INPUTS/Momenta", "--names", "is_electron=etag,is_muon=utag,charge=qtag,met=MET",
                "--particles", ",".join(f"{k}={v}" for k, v in SPANET_NAMES.items())]


def write_spanet(path, data: EventData, names: dict[str, str] = SPANET_NAMES) -> None:
    """The toy events in a SPANet-style layout: INPUTS/Momenta with sin/cos φ and tags, truth under lt/ and ht/
    (read with :data:`SPANET_FLAGS`)."""
    src = data.source
    with h5py.File(path, "w") as f:
        g = f.create_group("INPUTS/Momenta")
        g["MASK"] = data.mask
        for k in ("pt", "eta", "mass", "btag"):
            g[k] = src[k]
        g["sin_phi"], g["cos_phi"] = np.sin(src["phi"]), np.cos(src["phi"])
        g["etag"], g["utag"], g["qtag"] = src["is_electron"], src["is_muon"], src["charge"]
        m = f.create_group("INPUTS/Met")
        m["MET"] = data.met["met"]
        m["sin_phi"], m["cos_phi"] = np.sin(data.met["phi"]), np.cos(data.met["phi"])
        for particle, sub in names.items():
            for k in ("pt", "eta", "phi", "mass", "pdgid"):
                f[f"TRUTH/{sub}/{k}"] = data.truth[particle][k]


# --- reading a tree back and rewriting it ---------------------------------------------------------------

# how the writers above name a collection's members: Delphes "Jet.PT" with counter "Jet_size", NanoAOD
# "Jet_pt" with counter "nJet"
STYLES = {"Delphes": (".", lambda c: f"{c}_size"), "Events": ("_", lambda c: f"n{c}")}


def read_tree(path, tree: str) -> dict[str, ak.Array]:
    """Every branch but the counters, by name."""
    with uproot.open(path) as f:
        t = f[tree]
        counters = {b.count_branch.name for b in t.values() if b.count_branch is not None}
        return {k: t[k].array(library="ak") for k in t.keys() if k not in counters}


def write_tree(path, tree: str, branches: dict[str, ak.Array]) -> None:
    """``branches`` as a tree of the writers' layout: members of one collection share a counter as long as
    their multiplicities agree (else each gets its own); an empty dict or zero entries give an empty tree."""
    sep, counter = STYLES[tree]
    groups: dict[str, dict[str, ak.Array]] = {}
    out: dict[str, ak.Array] = {}
    for name, a in branches.items():
        if a.ndim > 1 and sep in name:
            coll, member = name.split(sep, 1)
            groups.setdefault(coll, {})[member] = a
        else:
            out[name] = a
    for coll, members in groups.items():
        try:
            out[coll] = ak.zip(members)
        except ValueError:  # unequal multiplicities: written apart
            out.update({f"{coll}{sep}{m}": a for m, a in members.items()})
    with uproot.recreate(path) as f:
        f.mktree(tree, {k: a.type.content for k, a in out.items()}, counter_name=counter,
                 field_name=lambda outer, inner: f"{outer}{sep}{inner}")
        if out and len(next(iter(out.values()))):
            f[tree].extend(out)
