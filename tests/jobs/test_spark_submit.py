"""The jobs as a scheduler runs them: pyspark's own `spark-submit` on a `local-cluster[2,1,2048]`
master (a standalone master, two workers and two executor JVMs, started here from pip's pyspark),
with the Delta connector's jars on `--jars`. Their exit codes, one-line errors and tables are those
of the same jobs run in-process on local[2]."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from deltalake import DeltaTable

from jobs.cli import main
from pipelines.connector import locate
from pipelines.lakehouse import Lakehouse
from tests.processes import run_command

REPO = Path(__file__).resolve().parents[2]
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
CLUSTER = "local-cluster[2,1,2048]"
# the tables the chain writes (bronze to gold), compared row for row between the two runs
TABLES = (
    "bronze/events",
    "silver/plays",
    "gold/tracks",
    "gold/training_sequences",
    "gold/sequences",
    "gold/stations",
    "gold/stats",
    "gold/validation_next",
    "gold/hard_negatives",
    "gold/validation_pairs",
    "gold/eval_pairs",
    "gold/eval_next",
)


def spark_submit(job: str, *args: str, cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    """`spark-submit --master local-cluster[2,1,2048] --jars <connector> jobs/<job>.py ARGS`."""
    jars = ",".join(str(j) for j in locate(None, None).jars)
    assert jars, "the connector's jars are resolved at set-up (make test does)"
    command = [
        str(SPARK_SUBMIT),
        "--master",
        CLUSTER,
        "--jars",
        jars,
        "--conf",
        "spark.executor.memory=1g",
        "--conf",
        "spark.ui.enabled=false",
        str(REPO / "jobs" / f"{job}.py"),
        *args,
    ]
    # executors' Python workers run this interpreter (the venv), as spark.pyspark.python would say
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    return run_command(command, cwd=cwd, env=env, timeout=timeout)


def sets(root: Path, *more: str) -> list[str]:
    values = [
        f"lakehouse.root={root / 'lh'}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlruns.db'}",
        f"mlflow.artifact_root={root / 'artifacts'}",
        f"train.checkpoint_dir={root / 'checkpoints'}",
        "delta.engine=spark",
        "spark.log_level=ERROR",
        "split.test_days=14",
        "split.validation_days=14",
        "sequences.validation_percent=30",
        "model.dim=16",
        "model.layers=1",
        "train.batch_size=16",
        "train.max_epochs=2",
        "train.eval_batch_size=64",
        *more,
    ]
    return [x for v in values for x in ("--set", v)]


def summary(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def rows(spark, root: Path, table: str) -> list[tuple]:
    frame = Lakehouse(spark, str(root / "lh")).read(table)
    return sorted(tuple(map(repr, row)) for row in frame.collect())


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("submit_raw")
    args = ["--set", "spark.log_level=ERROR", "synth", "--users", "60", "--days", "40"]
    assert main([*args, "--out", str(folder / "events")]) == 0
    return folder / "events"


@pytest.fixture(scope="module")
def local_run(spark, raw, tmp_path_factory) -> dict[str, dict]:
    """The chain in this process (the suite's local[2] session, with the connector): the reference."""
    root = tmp_path_factory.mktemp("submit_local")
    out: dict[str, dict] = {"root": {"path": str(root)}}
    for job, args in (
        ("ingest", ["--format", "events", "--input", str(raw), "--json"]),
        ("build", ["--json"]),
        ("train", ["--model", "hybrid", "--json"]),
    ):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main([*sets(root), job, *args]) == 0, job
        out[job] = json.loads(printed.getvalue().strip().splitlines()[-1])
    return out


@pytest.fixture(scope="module")
def cluster_run(raw, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The chain through spark-submit on local-cluster: ingest, build, train, evaluate."""
    root = tmp_path_factory.mktemp("submit_cluster")
    done = {
        "ingest": spark_submit(
            "ingest", *sets(root), "--format", "events", "--input", str(raw), "--json", cwd=root
        )
    }
    done["build"] = spark_submit("build", *sets(root), "--json", cwd=root)
    done["train"] = spark_submit("train", *sets(root), "--model", "hybrid", "--json", cwd=root)
    model = f"runs:/{summary(done['train'])['run_id']}/model"
    done["evaluate"] = spark_submit("evaluate", *sets(root), "--model-uri", model, "--json", cwd=root)
    done["root"] = subprocess.CompletedProcess([], 0, str(root), "")
    return done


def test_spark_submit_on_local_cluster_writes_the_tables_a_local_run_writes(spark, local_run, cluster_run):
    for job in ("ingest", "build", "train", "evaluate"):
        assert cluster_run[job].returncode == 0, (job, cluster_run[job].stderr[-3000:])
    # the jobs ran on the cluster: two executors registered with the driver spark-submit started
    assert "Granted executor ID app-" in cluster_run["build"].stderr
    local, cluster = Path(local_run["root"]["path"]), Path(cluster_run["root"].stdout)
    for table in TABLES:
        assert rows(spark, cluster, table) == rows(spark, local, table), table
    ingested, built = summary(cluster_run["ingest"]), summary(cluster_run["build"])
    assert ingested["accepted"] == local_run["ingest"]["accepted"] > 0
    assert ingested["tables"] == local_run["ingest"]["tables"]
    assert built["tables"] == local_run["build"]["tables"]
    assert built["cutoff"] == local_run["build"]["cutoff"]


def test_spark_submit_trains_and_evaluates_as_a_local_run_does(local_run, cluster_run):
    trained, evaluated = summary(cluster_run["train"]), summary(cluster_run["evaluate"])
    reference = local_run["train"]
    assert trained["input_versions"] == reference["input_versions"]
    # same tables, same seed, deterministic training: the same figures
    assert trained["validation_paired_accuracy"] == pytest.approx(reference["validation_paired_accuracy"])
    assert evaluated["paired_accuracy"] == pytest.approx(trained["test_metrics"]["paired_accuracy"])
    assert evaluated["paired_accuracy"] == pytest.approx(reference["test_metrics"]["paired_accuracy"])


@pytest.mark.parametrize(
    ("job", "args", "message"),
    [
        (
            "ingest",
            ["--format", "events", "--input", "{root}/missing.jsonl"],
            "input file {root}/missing.jsonl not found",
        ),
        ("evaluate", ["--model-uri", "models:/downbeat@nobody"], "--model-uri models:/downbeat@nobody:"),
    ],
)
def test_bad_input_under_spark_submit_exits_2_with_the_jobs_one_line(cluster_run, job, args, message):
    root = Path(cluster_run["root"].stdout)
    before = {t: DeltaTable(str(root / "lh" / t)).version() for t in ("bronze/events", "gold/eval_pairs")}
    args = [a.format(root=root) for a in args]
    done = spark_submit(job, *sets(root), *args, cwd=root, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    # spark-submit's Python runner merges the job's stderr into its stdout
    errors = [line for line in done.stdout.splitlines() if line.startswith("downbeat: error:")]
    assert len(errors) == 1 and message.format(root=root) in errors[0], done.stdout[-3000:]
    assert "Traceback" not in done.stdout
    assert {t: DeltaTable(str(root / "lh" / t)).version() for t in before} == before
