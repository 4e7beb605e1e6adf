"""The command line: generation, inspection and argument errors (one line, exit status 2)."""

import json

from lvd.data.schema import read_events


def test_generate_and_inspect(tmp_path, run_cli):
    out = tmp_path / "t.h5"
    code, _, err = run_cli("generate", "toy", out, "-n", "1200", "--seed", "4")
    assert code == 0, err
    assert read_events(out).n_events == 1200
    code, text, _ = run_cli("inspect", out)
    text = " ".join(text.split())  # rich wraps at the terminal width
    assert code == 0 and "1,200 events" in text and "selection:" in text and "b_lep.pt" in text
    code, text, _ = run_cli("inspect", out, "--json")
    summary = json.loads(text)
    assert summary["n_events"] == 1200 and summary["weights"]["sum"] == 1200
    assert sum(summary["jet_multiplicity"].values()) == 1200


def test_shards_use_independent_streams(tmp_path, run_cli):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert run_cli("generate", "toy", a, "-n", "300", "--shard", "0/2")[0] == 0
    assert run_cli("generate", "toy", b, "-n", "300", "--shard", "1/2")[0] == 0
    ta, tb = read_events(a).truth["lepton"]["pt"], read_events(b).truth["lepton"]["pt"]
    assert not (ta[:, None] == tb[None, :]).any()


def test_argument_errors(tmp_path, run_cli):
    for args, needle in ((("generate", "toy", tmp_path / "x.h5", "-n", "0"), "-n 0"),
                         (("generate", "toy", tmp_path / "x.h5", "--shard", "3/2"), "--shard"),
                         (("generate", "toy", tmp_path / "x.h5", "--shard", "one"), "k/n")):
        code, _, err = run_cli(*args)
        assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()
