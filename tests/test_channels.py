"""Every tt̄ channel at its branching fraction, and the truth of every generated event (``--keep-unselected``)."""

import h5py
import numpy as np
import pytest

from lvd import config, physics
from lvd.data import channels
from lvd.data.dataset import read_training_events
from lvd.data.generate import toy
from lvd.data.schema import read_events, read_generated
from lvd.errors import DataError


@pytest.fixture(scope="module")
def all_channels(tmp_path_factory):
    path = tmp_path_factory.mktemp("channels") / "all.h5"
    attrs = toy.generate_file(path, 3000, seed=21, keep_unselected=True)
    return path, attrs


def test_branching_fractions_are_physical():
    f = channels.fractions()
    assert f.sum() == pytest.approx(1.0, abs=1e-12)
    # the signal: 2 · BR(W → e or μ) · BR(W → hadrons) = 2 · 0.2172 · 0.6742
    assert channels.signal_fraction() == pytest.approx(2 * 2 * 0.1086 * 0.6742, rel=1e-12)
    modes = channels.draw_w_modes(np.random.default_rng(0), (400_000, 2))
    counts = np.bincount(channels.channel_of(modes[:, 0], modes[:, 1]), minlength=4)
    sigma = np.sqrt(f * (1 - f) / len(modes))
    np.testing.assert_array_less(np.abs(counts / len(modes) - f), 5 * sigma)


def test_tau_decay_products():
    """τ → ℓνν̄ at its branching fractions, the lepton with the Michel energy fraction (mean 7/20 for an
    unpolarised τ), of the τ's sign; other particles pass through untouched."""
    rng = np.random.default_rng(1)
    n = 200_000
    p4 = physics.p4_from_ptetaphim(np.full(n, 100.0), np.zeros(n), np.zeros(n), np.full(n, physics.PDG_MASS[15]))
    ids = np.where(rng.random(n) < 0.5, 15, -15)
    vis, vid = toy.tau_decay(rng, p4, ids)
    to_e, to_mu = np.abs(vid) == 11, np.abs(vid) == 13
    for frac, br in ((to_e.mean(), channels.BR_TAU_ELECTRON), (to_mu.mean(), channels.BR_TAU_MUON)):
        assert abs(frac - br) < 5 * np.sqrt(br * (1 - br) / n)
    assert (np.sign(vid[to_e | to_mu]) == np.sign(ids[to_e | to_mu])).all()
    z = vis[to_e | to_mu, 3] / p4[to_e | to_mu, 3]
    # Var z = E[z²] − E[z]² with E[z²] = ∫ z²(5 − 9z² + 4z³)/3 = 8/45
    assert abs(z.mean() - 7 / 20) < 5 * np.sqrt((8 / 45 - (7 / 20) ** 2) / len(z))
    others = np.array([11, -13, 5, 2])
    same, same_id = toy.tau_decay(rng, p4[:4], others)
    np.testing.assert_array_equal(same, p4[:4])
    np.testing.assert_array_equal(same_id, others)


def test_generated_rows_hold_every_channel_and_the_selected_events(all_channels):
    path, attrs = all_channels
    g, d = read_generated(path), read_events(path)
    with h5py.File(path) as f:
        assert g.n_events == attrs["cutflow"]["generated"] == f.attrs["n_generated"]
    assert int(g.pass_selection.sum()) == d.n_events == 3000
    # the k-th selected generated event is the file's event k
    rows = np.flatnonzero(g.pass_selection)
    for p in physics.DECAY_PRODUCTS:
        for k in ("pt", "eta", "phi", "mass", "pdgid"):
            np.testing.assert_array_equal(g.truth[p][k][rows], d.truth[p][k])
    np.testing.assert_array_equal(g.channel[rows], d.generator["channel"])
    # the generated mix is the branching fractions' (binomial errors)
    f = channels.fractions()
    sigma = np.sqrt(f * (1 - f) / g.n_events)
    np.testing.assert_array_less(np.abs(np.bincount(g.channel, minlength=4) / g.n_events - f), 5 * sigma)
    # the selection keeps fakes: τ+jets and dileptonic events pass, all-hadronic ones never (no fake leptons)
    selected = np.bincount(d.generator["channel"], minlength=4)
    assert selected[channels.TAU_JETS] > 0 and selected[channels.DILEPTON] > 0
    assert selected[channels.ALL_HADRONIC] == 0
    # every event stands for σ / N of cross section
    assert attrs["luminosity_inv_fb"] == pytest.approx(g.n_events / (1000 * attrs["cross_section_pb"]), rel=1e-12)


def test_truth_slots_follow_the_channel(all_channels):
    path, _ = all_channels
    g = read_generated(path)
    lep_id, q1_id = np.abs(g.truth["lepton"]["pdgid"]), np.abs(g.truth["q1"]["pdgid"])
    signal, tau = g.channel == channels.LEPTON_JETS, g.channel == channels.TAU_JETS
    dilepton, hadronic = g.channel == channels.DILEPTON, g.channel == channels.ALL_HADRONIC
    assert np.isin(lep_id[signal], (11, 13)).all() and (q1_id[signal] <= 4).all()
    assert (lep_id[tau] == 15).all() and (q1_id[tau] <= 4).all()
    assert np.isin(lep_id[dilepton], (11, 13, 15)).all() and np.isin(q1_id[dilepton], (11, 12, 13, 14, 15, 16)).all()
    assert (lep_id[hadronic] <= 4).all() and (q1_id[hadronic] <= 4).all()
    # q1 is the harder of the other side's two fermions, in every channel
    assert (g.truth["q1"]["pt"] >= g.truth["q2"]["pt"]).all()
    # four-momentum: the daughters sum to their top in every channel (float32 storage)
    p4 = lambda name: physics.p4_from_ptetaphim(*(g.truth[name][k].astype(np.float64)  # noqa: E731
                                                  for k in ("pt", "eta", "phi", "mass")))
    for top, daughters in (("t_lep", ("b_lep", "lepton", "neutrino")), ("t_had", ("b_had", "q1", "q2"))):
        m = physics.mass(sum(p4(d) for d in daughters))
        np.testing.assert_allclose(m, g.truth[top]["mass"], rtol=2e-3)


def test_training_reads_the_signal_channel_only(all_channels):
    path, _ = all_channels
    data, _ = read_training_events(path, config.small())
    d = read_events(path)
    assert data.n_events == int((d.generator["channel"] == channels.SIGNAL).sum()) < d.n_events
    assert (data.generator["channel"] == channels.SIGNAL).all()


def test_default_files_are_unchanged(tmp_path):
    """Without --keep-unselected the toy writes the signal channel alone, as before: no channel label, no
    GENERATED group; its attributes state the signal's share of σ."""
    path = tmp_path / "signal.h5"
    attrs = toy.generate_file(path, 200, seed=2)
    assert read_generated(path) is None and "channel" not in read_events(path).generator
    assert attrs["branching_fraction"] == pytest.approx(channels.signal_fraction())
    n = attrs["cutflow"]["generated"]
    assert attrs["luminosity_inv_fb"] == pytest.approx(n / (1000 * attrs["cross_section_pb"]
                                                            * channels.signal_fraction()), rel=1e-12)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f["GENERATED/channel"].__setitem__(0, 7), "unknown channel 7 at generated event 0"),
    (lambda f: f["GENERATED/pass_selection"].__setitem__(np.flatnonzero(~f["GENERATED/pass_selection"][()])[0],
                                                          True), "rows of GENERATED pass the selection"),
    (lambda f: f["GENERATED/q1/pt"].__setitem__(3, np.nan), "GENERATED/q1/pt has NaN/inf at event 3"),
    (lambda f: f.__delitem__("GENERATED/b_lep/eta"), "missing dataset GENERATED/b_lep/eta"),
])
def test_malformed_generated_rows_are_refused(all_channels, tmp_path, edit, message):
    path, _ = all_channels
    bad = tmp_path / "bad.h5"
    bad.write_bytes(path.read_bytes())
    with h5py.File(bad, "r+") as f:
        edit(f)
    with pytest.raises(DataError, match=message):
        read_generated(bad)


def test_merged_shards_keep_their_generated_events_and_luminosity(all_channels, tmp_path):
    from lvd.data.merge import merge_files

    path, attrs = all_channels
    other = tmp_path / "other.h5"
    attrs2 = toy.generate_file(other, 1000, seed=22, keep_unselected=True)
    out = tmp_path / "merged.h5"
    merge_files(out, [path, other])
    g, g1, g2 = read_generated(out), read_generated(path), read_generated(other)
    assert g.n_events == g1.n_events + g2.n_events
    np.testing.assert_array_equal(g.truth["lepton"]["pt"], np.concatenate([g1.truth["lepton"]["pt"],
                                                                           g2.truth["lepton"]["pt"]]))
    with h5py.File(out) as f:
        merged = {k: f.attrs[k] for k in ("cross_section_pb", "cross_section_error_pb", "sum_weights_generated",
                                          "luminosity_inv_fb", "n_generated")}
    w1, w2 = attrs["cross_section_error_pb"] ** -2, attrs2["cross_section_error_pb"] ** -2
    sigma = (attrs["cross_section_pb"] * w1 + attrs2["cross_section_pb"] * w2) / (w1 + w2)
    assert merged["cross_section_pb"] == pytest.approx(sigma, rel=1e-12)
    assert merged["cross_section_error_pb"] == pytest.approx((w1 + w2) ** -0.5, rel=1e-12)
    assert merged["sum_weights_generated"] == merged["n_generated"] == g.n_events
    assert merged["luminosity_inv_fb"] == pytest.approx(g.n_events / (1000 * sigma), rel=1e-12)
    signal_only = tmp_path / "signal.h5"
    toy.generate_file(signal_only, 100, seed=23)
    with pytest.raises(DataError, match="cannot merge"):
        merge_files(tmp_path / "bad.h5", [path, signal_only])
