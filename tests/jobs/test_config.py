"""Layered YAML config: merging, overrides, and one-line errors naming the key and the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from downbeat.jobs.config import PROJECT_ROOT, load_config, to_yaml
from downbeat.jobs.specs import child_configs, load_spec
from downbeat.pipelines.errors import ConfigError

BASE = PROJECT_ROOT / "conf" / "base.yaml"
LOCAL = PROJECT_ROOT / "conf" / "local.yaml"


def conf_file(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"extends: {BASE}\n{text}" if "extends" not in text else text)
    return path


def test_local_overrides_base_key_by_key():
    cfg = load_config(LOCAL)

    assert cfg.spark.shuffle_partitions == 4  # from local.yaml
    assert cfg.spark.driver_memory == "4g"  # from base.yaml
    assert cfg.spark.conf == {"spark.ui.enabled": "false"}
    assert cfg.source_files == (str(LOCAL.parent / "base.yaml"), str(LOCAL))


@pytest.mark.parametrize("name", ["base.yaml", "local.yaml", "cluster.yaml"])
def test_every_shipped_config_file_loads(name):
    cfg = load_config(PROJECT_ROOT / "conf" / name)

    assert cfg.delta.engine in ("auto", "spark", "delta-rs")


def test_set_overrides_come_last_and_are_typed():
    cfg = load_config(LOCAL, ["spark.shuffle_partitions=16", "delta.engine=delta-rs", "spark.master=null"])

    assert (cfg.spark.shuffle_partitions, cfg.delta.engine, cfg.spark.master) == (16, "delta-rs", None)


def test_set_into_a_mapping_keeps_dots_in_the_entry_name():
    cfg = load_config(LOCAL, ["spark.conf.spark.sql.ansi.enabled=true"])

    assert cfg.spark.conf == {"spark.ui.enabled": "false", "spark.sql.ansi.enabled": "true"}


def test_unknown_key_in_a_file_names_the_key_and_the_file(tmp_path):
    path = conf_file(tmp_path, "spark:\n  shuffle_partitons: 8\n")

    with pytest.raises(
        ConfigError, match=re.escape(f"unknown config key 'spark.shuffle_partitons' (in {path})")
    ):
        load_config(path)


def test_unknown_section_in_a_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'sparkk'"):
        load_config(conf_file(tmp_path, "sparkk: {}\n"))


@pytest.mark.parametrize("key", ["no.such.key", "spark.nope", "lakehouse.root.deeper", "source_files"])
def test_unknown_key_in_set_names_it(key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}' \\(from --set\\)"):
        load_config(LOCAL, [f"{key}=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "spark.shuffle_partitions=many",
            "'spark.shuffle_partitions' must be an integer, got 'many' \\(in --set\\)",
        ),
        ("spark.shuffle_partitions=true", "must be an integer, got True"),
        ("delta.engine=duckdb", "'delta.engine' must be one of auto, spark, delta-rs, got 'duckdb'"),
        ("lakehouse.root=3", "'lakehouse.root' must be a string, got 3"),
        ("spark=3", "'spark' must be a section, got 3"),
        ("spark.conf=[1]", "'spark.conf' must be a mapping"),
    ],
)
def test_wrong_types_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(LOCAL, [override])


def test_wrong_type_in_a_file_names_the_file(tmp_path):
    path = conf_file(tmp_path, "spark:\n  log_level: LOUD\n")

    with pytest.raises(
        ConfigError, match=f"'spark.log_level' must be one of .* \\(in {re.escape(str(path))}\\)"
    ):
        load_config(path)


def test_set_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match=r"--set expects key=value, got 'spark\.master'"):
        load_config(LOCAL, ["spark.master"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"config file {tmp_path}/absent.yaml not found")):
        load_config(tmp_path / "absent.yaml")


def test_missing_parent_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"config file .*/nothing\.yaml not found"):
        load_config(conf_file(tmp_path, "extends: nothing.yaml\n"))


def test_extends_cycle_is_an_error(tmp_path):
    conf_file(tmp_path, "extends: b.yaml\n", "a.yaml")
    conf_file(tmp_path, "extends: a.yaml\n", "b.yaml")

    with pytest.raises(ConfigError, match="'extends' forms a cycle"):
        load_config(tmp_path / "a.yaml")


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = conf_file(tmp_path, "spark:\n  master: [local\n")

    with pytest.raises(ConfigError, match=re.escape(f"config file {path}: invalid YAML at line")):
        load_config(path)


def test_a_file_that_extends_nothing_must_set_every_key(tmp_path):
    path = tmp_path / "alone.yaml"
    path.write_text("spark:\n  master: local[1]\n")

    with pytest.raises(ConfigError, match=r"missing config key 'spark\.app_name'"):
        load_config(path)


def test_shown_config_loads_back_to_the_same_config(tmp_path):
    cfg = load_config(LOCAL, ["mlflow.experiment=ünïcode", "spark.conf.spark.ui.enabled=true"])
    shown = tmp_path / "shown.yaml"
    shown.write_text(to_yaml(cfg))

    assert load_config(shown) == cfg
    assert yaml.safe_load(to_yaml(cfg))["spark"]["conf"] == {"spark.ui.enabled": "true"}


def test_config_is_frozen():
    cfg = load_config(LOCAL)

    with pytest.raises(AttributeError):
        cfg.spark.master = "yarn"  # type: ignore[misc]


def test_a_date_given_for_a_text_key_is_kept_as_its_iso_text():
    cfg = load_config(None, ["split.cutoff_date=2018-07-15"])
    assert cfg.split.cutoff_date == "2018-07-15"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("train.p_hard", "'model.hybrid.p_hard'"),
        ("train.learning_rate", "'optim.learning_rate'"),
        ("train.pnfrec_beta", "'model.pnfrec.beta'"),
        ("train.p_task", "'model.hybrid.p_task' / 'model.bert4rec.p_task'"),
    ],
)
def test_a_key_of_the_old_flat_train_section_names_where_it_moved(tmp_path, old, new):
    with pytest.raises(ConfigError, match=re.escape(f"config key '{old}' moved to {new} (from --set)")):
        load_config(None, [f"{old}=1"])
    section, key = old.split(".")
    base = PROJECT_ROOT / "conf" / "base.yaml"
    path = conf_file(tmp_path, f"extends: {base}\n{section}:\n  {key}: 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"config key '{old}' moved to {new} (in {path})")):
        load_config(path)


def test_each_architecture_reads_its_own_section():
    cfg = load_config(None, ["model.sasrec.beta=0.0", "model.pnfrec.beta=0.25", "model.hybrid.k=9"])

    assert (cfg.model.sasrec.beta, cfg.model.pnfrec.beta, cfg.model.hybrid.k) == (0.0, 0.25, 9)
    assert cfg.model.gsasrec.sampled_negatives == 1000  # untouched sections keep base.yaml's values
    with pytest.raises(ConfigError, match=re.escape("unknown config key 'model.gsasrec.beta' (from --set)")):
        load_config(None, ["model.gsasrec.beta=1"])


def test_an_architectures_defaults_replace_only_what_base_yaml_gave(tmp_path):
    pooled = PROJECT_ROOT / "conf" / "models" / "pooled.yaml"
    cfg = load_config(LOCAL, architecture="pooled")

    assert (cfg.model.dim, cfg.model.max_length, cfg.optim.learning_rate) == (8, 400, 0.01)  # pooled.yaml
    assert cfg.spark.shuffle_partitions == 4  # local.yaml, which pooled.yaml does not name
    assert cfg.source_files == (str(BASE), str(pooled), str(LOCAL))
    assert load_config(LOCAL).model.dim == 64  # no architecture, no defaults of one
    assert load_config(LOCAL, architecture="sasrec").model.dim == 64  # an architecture without a file

    mine = conf_file(tmp_path, "model:\n  dim: 32\n")
    cfg = load_config(mine, ["optim.learning_rate=0.002"], architecture="pooled")
    assert (cfg.model.dim, cfg.optim.learning_rate, cfg.model.max_length) == (32, 0.002, 400)


def test_an_unknown_key_in_an_architectures_defaults_names_that_file(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE.read_text())
    (tmp_path / "models").mkdir()
    bad = tmp_path / "models" / "hybrid.yaml"
    bad.write_text("model:\n  hybrid:\n    p_hrad: 0.5\n")
    job = conf_file(tmp_path, "extends: base.yaml\n")

    assert load_config(job).model.hybrid.p_hard == 1.0
    message = f"unknown config key 'model.hybrid.p_hrad' (from {bad})"
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(job, architecture="hybrid")


def test_the_demos_children_train_under_their_architectures_defaults():
    spec = load_spec(str(PROJECT_ROOT / "conf" / "experiments" / "demo.yaml"))
    configs = child_configs(spec, str(PROJECT_ROOT / "conf" / "demo.yaml"), [])

    assert (configs["pooled"].model.dim, configs["pooled"].model.max_length) == (8, 400)
    assert (configs["baseline"].model.dim, configs["baseline"].model.max_length) == (64, 100)
    assert configs["baseline"].train.patience == 12
    assert configs["pooled"].sequences.max_length == configs["baseline"].sequences.max_length == 400
