"""Options: presets are the shipped YAML files, base inheritance, and errors that name the option."""

import pytest

from lvd import config
from lvd.errors import OptionsError


@pytest.mark.parametrize("name,preset", [("train", config.paper), ("finetune", config.finetune), ("small", config.small)])
def test_presets_are_the_yaml_files(name, preset):
    assert config.load_options(f"options/{name}.yaml") == preset()  # the repository's link to the packaged files
    assert config.load_options(name) == preset()  # packaged name
    assert name in config.presets()


def test_the_defaults_are_the_papers_options():
    """The schema's defaults are the paper's recipe, stated once; train.yaml changes only what the study chose
    (each with its reason beside it in the file)."""
    d = config.Options()
    assert (d.model.hidden, d.model.latent, d.model.detector_layers, d.model.denoiser_layers, d.train.batch_size,
            d.train.learning_rate, d.loss.consistency, d.loss.reconstruction, d.data.parton_representation) == (
        96, 96, 8, 10, 4096, 5e-4, 0.1, 1.0, "paper")
    assert set(config.differences(config.paper())) == {
        "name", "data.parton_representation", "model.latent_dim", "model.normalized_latent",
        "model.conditional_decoder", "loss.reconstruction"}


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\ntrain:\n  steps: 7\n  batch_size: 32\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nname: child\ntrain:\n  steps: 9\n")
    o = config.load_options(tmp_path / "child.yaml", ["train.learning_rate=0.002"])
    assert (o.name, o.train.steps, o.train.batch_size, o.train.learning_rate) == ("child", 9, 32, 0.002)


@pytest.mark.parametrize("override,needle", [
    ("train.stepz=3", "train.stepz"),
    ("train.steps=many", "train.steps"),
    ("model.kind=gan", "model.kind"),
    ("nonsense", "key=value"),
    ("model.hidden=50", "num_heads"),
    ("schedule.gamma_min=6", "gamma_min"),
])
def test_bad_options_name_the_option(override, needle):
    with pytest.raises(OptionsError, match=needle):
        config.load_options(None, [override])


def test_unknown_key_in_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("model:\n  hiden: 3\n")
    with pytest.raises(OptionsError, match=r"bad.yaml.*model.hiden"):
        config.load_options(tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(OptionsError, match="not a valid YAML"):
        config.load_options(tmp_path / "broken.yaml")


def test_round_trip_through_dict():
    o = config.small()
    assert config.from_dict(config.to_dict(o)) == o


def test_cli_reports_bad_option(tmp_path, run_cli, tiny_file):
    code, _, err = run_cli("train", "small", tiny_file, "train.stepz=1", "--runs-dir", tmp_path)
    assert code == 2 and "train.stepz" in err and "Traceback" not in err
    code, _, err = run_cli("train", "nosuch.yaml", tiny_file, "--runs-dir", tmp_path)
    assert code == 2 and "nosuch.yaml" in err
    assert not any(tmp_path.iterdir())


def test_top_line_width_default_is_the_top_width():
    from lvd import physics

    assert config.DataOptions().top_line_width == physics.GAMMA_TOP
    with pytest.raises(OptionsError):
        config.load_options("small", ["data.top_line_width=0"])
