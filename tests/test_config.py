import re

import pytest
import yaml
from typer.testing import CliRunner

from fsnet.config import CONFIG_DIR, DEFAULT_FILE, Config, load_config, saved_config_text
from fsnet.errors import ConfigError
from jobs.cli import app


def test_default_holds_every_key_with_a_comment():
    cfg = load_config()
    assert isinstance(cfg, Config)
    for number, line in enumerate(DEFAULT_FILE.read_text().splitlines(), start=1):
        if re.match(r"^\s*[A-Za-z_]\w*:", line):
            assert "#" in line, f"default.yaml line {number} has no comment: {line!r}"


def test_presets_hold_only_known_keys_and_load():
    for preset in sorted(CONFIG_DIR.glob("*.yaml")):
        load_config([preset.stem])


def test_precedence_default_preset_option_set():
    assert load_config().model.backbone == "alexnet"
    assert load_config(["tiny"]).model.backbone == "tiny"
    assert load_config(["tiny"], options=[("--x", "model.backbone", "resnet18")]).model.backbone == "resnet18"
    cfg = load_config(["tiny"], ["model.backbone=mobilenet_v2"], options=[("--x", "model.backbone", "resnet18")])
    assert cfg.model.backbone == "mobilenet_v2"
    # deep merge: tiny overrides stage1.epochs only; the rest of stage1 stays from default.yaml
    tiny = load_config(["tiny"])
    assert tiny.train.stage1.epochs == 2 and tiny.train.stage1.lr == 0.01


def test_later_preset_wins(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("split:\n  seed: 1\n  n_query: 0.2\n")
    second.write_text("split:\n  seed: 2\n")
    cfg = load_config([str(first), str(second)])
    assert (cfg.split.seed, cfg.split.n_query) == (2, 0.2)


def test_unknown_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: tiny\n  backbon: tiny\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'model\.backbon'"):
        load_config([str(bad)])
    with pytest.raises(ConfigError, match=r"--set nope\.x=1: unknown key 'nope'"):
        load_config(sets=["nope.x=1"])


def test_wrong_type_names_key_and_file(tmp_path):
    bad = tmp_path / "types.yaml"
    bad.write_text("model:\n  image_size: large\n")
    with pytest.raises(ConfigError, match=r"types\.yaml: model\.image_size: .*integer.*'large'"):
        load_config([str(bad)])
    with pytest.raises(ConfigError, match=r"--set train\.stage2\.epochs=-3: train\.stage2\.epochs"):
        load_config(sets=["train.stage2.epochs=-3"])
    with pytest.raises(ConfigError, match=r"'split' is a section"):
        load_config(sets=["split=3"])
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        load_config(sets=["model.backbone"])


def test_count_or_fraction():
    assert load_config(sets=["split.n_query=0.25"]).split.n_query == 0.25
    assert load_config(sets=["split.n_query=300"]).split.n_query == 300
    with pytest.raises(ConfigError, match="split.n_query"):
        load_config(sets=["split.n_query=1.5"])


def test_set_null_and_lists():
    cfg = load_config(sets=["source.attributes=[a, b]", "source.id_column=null", "catalog.formats=[JPEG]"])
    assert cfg.source.attributes == ["a", "b"] and cfg.source.id_column is None and cfg.catalog.formats == ["JPEG"]


def test_secrets_never_saved_or_shown():
    cfg = load_config(sets=["storage.key=AKIAEXAMPLEKEY", "storage.secret=very-secret-value"])
    assert cfg.storage.secret.get_secret_value() == "very-secret-value"
    saved = saved_config_text(cfg)
    assert "very-secret-value" not in saved and "AKIAEXAMPLEKEY" not in saved
    assert yaml.safe_load(saved)["storage"]["secret"] is None
    assert "very-secret-value" not in repr(cfg) and "very-secret-value" not in str(cfg)


def test_secret_not_echoed_in_errors():
    with pytest.raises(ConfigError) as err:
        load_config(sets=["storage.secret=[1, 2]"])
    assert "storage.secret" in str(err.value) and "[1, 2]" not in str(err.value)


def test_config_show_cli_redacts():
    result = CliRunner().invoke(app, ["config", "show", "-c", "tiny", "--set", "storage.secret=very-secret-value"])
    assert result.exit_code == 0, result.output
    assert "very-secret-value" not in result.output
    assert "**********" in result.output and "backbone: tiny" in result.output
