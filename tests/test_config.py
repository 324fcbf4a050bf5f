import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fsnet.config import (
    CONFIG_DIR,
    DEFAULT_FILE,
    Config,
    load_config,
    saved_config_text,
)
from fsnet.errors import ConfigError
from jobs.cli import app
from jobs.injected_fault import ENV as FAULT_ENV
from jobs.injected_fault import InjectedFault


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


# ----- config files that cannot be read as they are: one line naming the file (as given), line and column --------
@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model:\n  backbone: tiny\ntrain:\n  workers: 1\nmodel:\n  kind: fsn\n",
            r":5:1: key 'model' written twice \(first at line 1\)",
        ),
        ("model:\n  backbone: tiny\n  backbone: resnet18\n", r":3:3: key 'backbone' written twice \(first at line 2\)"),
        ("model:\n  backbone: [tiny\ntrain: {a: 1\n", r":3:6: not valid YAML: expected ',' or ']'"),
        ("model:\n\tbackbone: tiny\n", r":2:1: not valid YAML: found character '\\t'"),
        ("- model\n- train\n", r": expected a mapping of sections"),
    ],
)
def test_unreadable_yaml_is_one_line_naming_file_and_line(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config([str(bad)])
    assert re.match(re.escape(str(bad)) + message, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


def test_config_file_that_is_not_utf8_text(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("model:\n  backbone: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape(f"{latin1}:2: not UTF-8 text (byte 0xe9 at offset 22)")):
        load_config([str(latin1)])
    binary = tmp_path / "photo.yaml"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(ConfigError, match=re.escape(f"{binary}:1: not UTF-8 text")):
        load_config([str(binary)])


def test_merge_keys_may_be_overridden_and_set_is_unaffected(tmp_path):
    """``<<: *anchor`` then the same key is YAML's override, not a duplicate; --set values parse as before."""
    merged = tmp_path / "merged.yaml"
    merged.write_text("split: &base\n  seed: 2\n  n_query: 0.2\ntrain:\n  seed: 5\n")
    assert load_config([str(merged)]).split.seed == 2
    anchors = tmp_path / "anchors.yaml"
    anchors.write_text("model: &m {backbone: tiny, image_size: 64}\n")
    assert load_config([str(anchors)]).model.backbone == "tiny"
    cfg = load_config(["tiny"], ["model.backbone=resnet18", "model.backbone=alexnet", "eval.baselines=[attr_logp]"])
    assert (cfg.model.backbone, cfg.eval.baselines) == ("alexnet", ["attr_logp"])


def test_cli_prints_one_line_with_the_path_as_given(tmp_path):
    """``fsnet config show -c sub/bad.yaml`` from tmp_path: exit 2 and one line naming ``sub/bad.yaml:2:3``."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.yaml").write_text("model:\n  backbone: tiny\n  backbone: resnet18\n")
    fsnet = Path(sys.executable).with_name("fsnet")
    done = subprocess.run(
        [str(fsnet), "config", "show", "-c", "sub/bad.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: sub/bad.yaml:3:3: key 'backbone' written twice"), done.stderr


def test_a_preset_inherits_its_base_and_overrides_it(tmp_path):
    (tmp_path / "recipe.yaml").write_text("train:\n  batch_size: 8\n  seed: 3\nsplit:\n  seed: 5\n")
    (tmp_path / "child.yaml").write_text("base: recipe.yaml\ntrain:\n  seed: 4\n")  # a path beside the file
    cfg = load_config([str(tmp_path / "child.yaml")])
    assert (cfg.train.batch_size, cfg.train.seed, cfg.split.seed) == (8, 4, 5)
    # the shipped presets: cpu_mobilenet96 and cpu_mobilenet160 are the cpu recipe at a fixed input size
    cpu, small, large = (load_config([p]) for p in ("cpu", "cpu_mobilenet96", "cpu_mobilenet160"))
    assert (cpu.model.image_size, small.model.image_size, large.model.image_size) == ("auto", 96, 160)
    assert (small.model.roi_size, large.model.roi_size) == (4, 6)
    for preset in (small, large):
        assert preset.train == cpu.train
        assert preset.model.model_copy(update={"image_size": "auto", "roi_size": "auto"}) == cpu.model
    # later presets and --set still win over a base
    assert load_config(["cpu_mobilenet96", "tiny"]).model.image_size == 64
    assert load_config(["cpu_mobilenet96"], ["train.tuned_blocks=0"]).train.tuned_blocks == 0


def test_a_bad_base_is_one_error_naming_the_file(tmp_path):
    loop_a, loop_b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    loop_a.write_text("base: b.yaml\n")
    loop_b.write_text("base: a.yaml\n")
    with pytest.raises(
        ConfigError, match=r"a\.yaml: its base presets lead back to it \(.*a\.yaml -> .*b\.yaml -> .*a\.yaml\)"
    ):
        load_config([str(loop_a)])
    odd = tmp_path / "odd.yaml"
    odd.write_text("base: {model: tiny}\n")
    with pytest.raises(ConfigError, match=r"odd\.yaml: 'base' names a preset or a list of presets"):
        load_config([str(odd)])
    missing = tmp_path / "missing.yaml"
    missing.write_text("base: cpu_mobilenet97\n")
    with pytest.raises(ConfigError, match=r"missing\.yaml: base: cpu_mobilenet97: no such file and no preset"):
        load_config([str(missing)])
    typo = tmp_path / "typo.yaml"
    typo.write_text("base: typo_base.yaml\n")
    (tmp_path / "typo_base.yaml").write_text("model:\n  backbon: tiny\n")
    with pytest.raises(ConfigError, match=r"typo_base\.yaml: unknown key 'model\.backbon'"):
        load_config([str(typo)])


def test_the_shown_config_holds_no_test_only_keys():
    """Test-only fault injection lives outside the product's config (jobs/injected_fault.py)."""

    def keys(tree: dict, prefix: str = "") -> list[str]:
        found = []
        for name, value in tree.items():
            found.append(prefix + name)
            if isinstance(value, dict):
                found += keys(value, f"{prefix}{name}.")
        return found

    assert [k for k in keys(load_config().model_dump(mode="json")) if "fault" in k] == []


def test_an_injected_fault_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert InjectedFault.requested() is None
    monkeypatch.setenv(FAULT_ENV, "2:3")
    assert InjectedFault.requested() == InjectedFault(stage=2, step=3)
    monkeypatch.setenv(FAULT_ENV, "two")
    with pytest.raises(ConfigError, match=r"FSNET_INJECT_FAULT='two': expected <stage>:<step>"):
        InjectedFault.requested()
