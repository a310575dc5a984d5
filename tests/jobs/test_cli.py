"""The `downbeat` console script as a scheduler calls it: exit codes and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from downbeat.jobs import doctor
from downbeat.jobs.cli import main
from downbeat.jobs.config import PROJECT_ROOT, load_config
from tests.processes import run_command

DOWNBEAT = Path(sys.executable).parent / "downbeat"


def run_cli(
    *args: str, cwd: Path = PROJECT_ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(DOWNBEAT)] if DOWNBEAT.exists() else [sys.executable, "-m", "downbeat.jobs.cli"]
    environment = None if env is None else {**os.environ, **env}
    return run_command([*command, *args], cwd=cwd, timeout=120, env=environment)


def test_help_lists_the_commands():
    result = run_cli("--help")

    assert result.returncode == 0
    for command in ("config", "doctor", "synth", "ingest", "build", "train", "evaluate"):
        assert command in result.stdout


def test_unknown_set_key_exits_2_with_one_line_naming_it():
    result = run_cli("--set", "no.such.key=1", "config", "show")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "downbeat: error: unknown config key 'no.such.key' (from --set)"
    ]
    assert result.stdout == ""


def test_a_key_of_the_old_flat_train_section_exits_2_naming_the_new_key():
    result = run_cli("--set", "train.gbce_t=0.5", "config", "show")

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "downbeat: error: config key 'train.gbce_t' moved to 'model.gsasrec.gbce_t' (from --set)"
    ]


def test_missing_conf_file_exits_2_naming_it(tmp_path):
    result = run_cli("--conf", str(tmp_path / "nope.yaml"), "config", "show")

    assert result.returncode == 2
    assert result.stderr.strip() == f"downbeat: error: config file {tmp_path}/nope.yaml not found"


def test_global_options_work_after_the_command_too(capsys):
    code = main(["--set", "spark.shuffle_partitions=3", "config", "show", "--set", "mlflow.experiment=x"])

    out = capsys.readouterr().out
    assert code == 0
    assert "shuffle_partitions: 3" in out and "experiment: x" in out


def test_config_show_with_a_model_shows_what_train_reads(capsys):
    assert main(["config", "show", "--model", "pooled"]) == 0
    pooled = yaml.safe_load(capsys.readouterr().out)
    assert main(["config", "show"]) == 0
    plain = yaml.safe_load(capsys.readouterr().out)

    assert (pooled["model"]["dim"], plain["model"]["dim"]) == (8, 64)


def test_default_conf_is_found_from_another_directory(tmp_path):
    result = run_cli("config", "show", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "shuffle_partitions: 4" in result.stdout  # conf/local.yaml of the project


def test_unknown_command_exits_2():
    result = run_cli("frobnicate")

    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_doctor_round_trips_a_scratch_table(spark, tmp_path):
    cfg = load_config(PROJECT_ROOT / "conf" / "local.yaml", [f"lakehouse.root={tmp_path / 'lh'}"])

    cfg = replace(
        cfg,
        mlflow=replace(
            cfg.mlflow, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", artifact_root=str(tmp_path / "art")
        ),
    )

    checks = dict(doctor.run(spark, cfg))

    assert checks["lakehouse"] == f"{tmp_path / 'lh'}: wrote 5 + 3 rows, read 8 back at version 1, deleted"
    assert list((tmp_path / "lh").iterdir()) == []  # the scratch table is gone
    assert checks["mlflow"] == f"sqlite:///{tmp_path / 'm.db'}: 1 experiment(s) readable"  # Default
    assert checks["artifacts"] == f"{tmp_path / 'art'}: wrote, listed and deleted a probe file"
    assert list((tmp_path / "art").iterdir()) == []
    # the test session has the connector from the set-up cache, so `auto` picks it
    assert checks["delta"] == "engine spark (delta.engine=auto: connector classes load)"


def test_without_the_connectors_jars_auto_writes_with_delta_rs_and_says_so_once(tmp_path):
    empty_cache = {"DOWNBEAT_JARS_CACHE": str(tmp_path / "no-jars")}
    root = f"lakehouse.root={tmp_path / 'lh'}"

    auto = run_cli("--set", root, "doctor", env=empty_cache)
    spark = run_cli("--set", root, "--set", "delta.engine=spark", "doctor", env=empty_cache)

    assert auto.returncode == 0, auto.stderr
    assert "engine delta-rs" in auto.stdout and "wrote 5 + 3 rows, read 8 back" in auto.stdout
    fallback = [line for line in auto.stderr.splitlines() if "no Delta Spark connector" in line]
    assert len(fallback) == 1 and f"is not resolved in {tmp_path / 'no-jars'}" in fallback[0]
    assert spark.returncode == 2
    assert spark.stderr.strip().splitlines() == [
        "downbeat: error: config key 'delta.engine' is 'spark' but io.delta:delta-spark_2.13:4.0.1 is not "
        f"resolved in {tmp_path / 'no-jars'}/io.delta_delta-spark_2.13_4.0.1-b38d0096 (run `python -m "
        "downbeat.pipelines.connector` once, with access to Maven Central; `make test` does)"
    ]


@pytest.mark.parametrize("argv", [["config"], []])
def test_missing_subcommand_is_a_usage_error(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
