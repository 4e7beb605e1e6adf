"""The command line: generation, inspection and argument errors (one line, exit status 2)."""

import json

from lvd.data.schema import read_events


def test_generate_and_inspect(tmp_path, run_cli):
    out = tmp_path / "t.h5"
    code, _, err = run_cli("generate", "toy", out, "-e", "1200", "--seed", "4")
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
    assert run_cli("generate", "toy", a, "-e", "300", "--shard", "0/2")[0] == 0
    assert run_cli("generate", "toy", b, "-e", "300", "--shard", "1/2")[0] == 0
    ta, tb = read_events(a).truth["lepton"]["pt"], read_events(b).truth["lepton"]["pt"]
    assert not (ta[:, None] == tb[None, :]).any()


def test_argument_errors(tmp_path, run_cli):
    for args, needle in ((("generate", "toy", tmp_path / "x.h5", "-e", "0"), "--events 0"),
                         (("generate", "toy", tmp_path / "x.h5", "--shard", "3/2"), "--shard"),
                         (("generate", "toy", tmp_path / "x.h5", "--shard", "one"), "k/n")):
        code, _, err = run_cli(*args)
        assert code == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()


def test_version_and_parser_errors_are_one_line(tmp_path, run_cli):
    import lvd

    code, out, _ = run_cli("--version")
    assert code == 0 and out.strip() == f"lvd {lvd.__version__}"
    for args, needle in ((("generate", "toy", tmp_path / "x.h5", "--bogus", "3"), "--bogus"),
                         (("train", "small", tmp_path / "x.h5", "--model", "gan"), "--model"),
                         (("evaluate", tmp_path / "x.h5", "--plots", "some"), "--plots")):
        code, _, err = run_cli(*args)
        assert code == 2 and needle in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_options_prints_the_resolved_options(run_cli, tmp_path):
    """What `lvd options` prints is a complete options file: read back, it gives the same options."""
    from lvd import config

    code, out, _ = run_cli("options", "small", "train.steps=123", "--model", "vdm")
    assert code == 0
    (tmp_path / "resolved.yaml").write_text(out)
    opts = config.load_options(tmp_path / "resolved.yaml")
    assert opts == config.load_options("small", ["train.steps=123", "model.kind=vdm"])
    assert opts.train.steps == 123 and opts.model.kind == "vdm"


def test_unfold_takes_sample_overrides_only(tiny_run, tiny_file, tmp_path, run_cli):
    from lvd.data.schema import read_events as read

    code, _, err = run_cli("unfold", tiny_run, tiny_file, tmp_path / "u.h5", "model.hidden=8")
    assert code == 2 and "sample.*" in err and not (tmp_path / "u.h5").exists()
    code, _, err = run_cli("unfold", tiny_run, tiny_file, tmp_path / "u.h5", "sample.steps=2", "sample.samples=3",
                           "--spacing", "t")
    assert code == 0, err
    d = read(tmp_path / "u.h5")
    assert d.attrs["sampler_steps"] == 2 and d.attrs["samples_per_event"] == 3 and d.attrs["sampler_spacing"] == "t"
