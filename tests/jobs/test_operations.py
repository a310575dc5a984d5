"""The jobs as a scheduler runs them, and the faults they survive.

spark-submit: pyspark's own `spark-submit` on a `local-cluster[2,1,2048]` master (a standalone
master, two workers and two executor JVMs, started here from pip's pyspark), with the Delta
connector's jars on `--jars`. Their exit codes, one-line errors and tables are those of the same
jobs run in-process on local[2].

Faults: an executor JVM killed mid-build, the driver killed during build's commit phase, and two
ingests of one file at once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from downbeat.jobs.cli import main
from downbeat.pipelines.connector import locate
from downbeat.pipelines.lakehouse import Lakehouse
from tests.jobs.small import SHORT_SPLITS, TINY_TRAINING
from tests.processes import run_command

pytestmark = pytest.mark.integration

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


def submit_command(job: str, *args: str) -> tuple[list[str], dict[str, str]]:
    """`spark-submit --master local-cluster[2,1,2048] --jars <connector> jobs/<job>.py ARGS`, and its
    environment: executors' Python workers run this interpreter (the venv)."""
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
    return command, {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def spark_submit(job: str, *args: str, cwd: Path, timeout: float = 420) -> subprocess.CompletedProcess:
    command, env = submit_command(job, *args)
    return run_command(command, cwd=cwd, env=env, timeout=timeout)


def in_process(root: Path, job: str, *args: str) -> dict:
    """`downbeat JOB ARGS --json` in this process (the suite's local[2] session); its summary."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([*sets(root), job, *args, "--json"]) == 0, job
    return json.loads(printed.getvalue().strip().splitlines()[-1])


def sets(root: Path, *more: str) -> list[str]:
    values = [
        f"lakehouse.root={root / 'lh'}",
        f"mlflow.tracking_uri=sqlite:///{root / 'mlruns.db'}",
        f"mlflow.artifact_root={root / 'artifacts'}",
        f"train.checkpoint_dir={root / 'checkpoints'}",
        "delta.engine=spark",
        "spark.log_level=ERROR",
        *SHORT_SPLITS,
        *TINY_TRAINING,
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
    out["ingest"] = in_process(root, "ingest", "--format", "events", "--input", str(raw))
    out["build"] = in_process(root, "build")
    out["train"] = in_process(root, "train", "--model", "hybrid")
    champion = ("--model-uri", "models:/downbeat@champion", "--top-k", "5")
    out["recommend"] = in_process(root, "recommend", *champion)
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
    champion = ["--model-uri", "models:/downbeat@champion", "--top-k", "5", "--json"]
    done["recommend"] = spark_submit("recommend", *sets(root), *champion, cwd=root)
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
    assert trained["validation"] == pytest.approx(reference["validation"])
    assert evaluated["paired_accuracy"] == pytest.approx(trained["test_metrics"]["paired_accuracy"])
    assert evaluated["paired_accuracy"] == pytest.approx(reference["test_metrics"]["paired_accuracy"])


def test_spark_submit_recommends_as_a_local_run_does_with_the_model_shipped_to_the_executors(
    spark, local_run, cluster_run
):
    """The model's files reach two executor JVMs (a zip through addArchive) and rank alike."""
    recommended = summary(cluster_run["recommend"])
    assert recommended["written"] is True and recommended["served_users"] > 0
    users = recommended["served_users"]
    assert recommended["model_rows"] == local_run["recommend"]["model_rows"] == 5 * users
    columns = ["user_id", "rank", "track_id", "score"]

    def ranked(root: Path) -> list[tuple]:
        frame = Lakehouse(spark, str(root / "lh")).read("gold/recommendations").select(*columns)
        return sorted(tuple(row) for row in frame.collect())

    local, cluster = ranked(Path(local_run["root"]["path"])), ranked(Path(cluster_run["root"].stdout))
    assert [r[:2] for r in cluster] == [r[:2] for r in local]
    assert all(abs(a[3] - b[3]) <= 1e-5 for a, b in zip(cluster, local, strict=True))
    # the same tracks (two whose scores differ by float rounding alone may trade places)
    swapped = [(a, b) for a, b in zip(cluster, local, strict=True) if a[2] != b[2]]
    assert len(swapped) <= 0.02 * len(local), swapped[:5]


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


# ---- faults --------------------------------------------------------------------------------------


def table_state(spark, root: Path) -> dict[str, tuple[int, list[tuple]]]:
    """Each table's current version and rows, as any reader sees them (the Delta log's snapshot)."""
    lakehouse = Lakehouse(spark, str(root / "lh"))
    return {t: (lakehouse.version(t), rows(spark, root, t)) for t in TABLES if lakehouse.exists(t)}


def executors_of(group: int) -> list[int]:
    """The executor JVMs in a process group (local-cluster's workers start them as children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"CoarseGrainedExecutorBackend" in cmdline and os.getpgid(int(entry.name)) == group:
                found.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue  # it ended meanwhile
    return sorted(found)


def wait_for(condition, process: subprocess.Popen, timeout: float, what: str, *logs: Path) -> None:
    """Poll `condition` until it holds; fail at once, with the logs' tails, if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = process.poll() is not None
        if ended or time.monotonic() > deadline:
            tails = "\n".join(log.read_text()[-2000:] for log in logs)
            why = f"the process exited {process.returncode} first" if ended else f"not within {timeout:.0f} s"
            pytest.fail(f"{what} did not happen: {why}\n{tails}")
        time.sleep(0.2)


def lines_until(process: subprocess.Popen, pattern: str, timeout: float) -> str | None:
    """The first line of the process's stderr matching `pattern`, read in a thread so that a process
    that hangs fails the test after `timeout` s; None when stderr ends without one."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if re.search(pattern, line):
                found.put(line.strip())
                return
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        return found.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no line matching {pattern!r} within {timeout:.0f} s")


def test_an_executor_killed_mid_build_is_replaced_and_the_build_ends_as_an_undisturbed_one(
    spark, local_run, tmp_path
):
    local = Path(local_run["root"]["path"])
    shutil.copytree(local / "lh" / "bronze", tmp_path / "lh" / "bronze")  # the same ingested events
    command, env = submit_command("build", *sets(tmp_path), "--json")
    out, err = tmp_path / "build.out", tmp_path / "build.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=stdout, stderr=stderr, env=env, cwd=tmp_path, start_new_session=True
        )
    try:
        # the build's first write has started: its tasks run on both executors
        wait_for(
            lambda: "writing data files" in out.read_text(), process, 300, "the build's first write", out, err
        )
        executors = executors_of(process.pid)
        assert len(executors) == 2, executors
        at_kill = out.read_text()
        os.kill(executors[0], signal.SIGKILL)
        code = process.wait(timeout=420)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    printed = out.read_text()
    assert code == 0, printed[-3000:] + err.read_text()[-3000:]
    # the driver saw the executor die (its tasks ran again elsewhere)
    assert "Lost executor" in err.read_text() or "Lost executor" in printed
    assert '"job": "build"' not in at_kill  # the executor died while the build ran
    print(f"executor {executors[0]} killed after {at_kill.count('writing data files')} write(s) had started")
    assert {t: state[1] for t, state in table_state(spark, tmp_path).items()} == {
        t: state[1] for t, state in table_state(spark, local).items()
    }


def test_the_driver_killed_during_builds_commit_phase_leaves_every_table_at_a_committed_version(
    spark, local_run, tmp_path
):
    """A SIGKILL between two of the gold transaction's commits: each table reads as its last
    committed version (old or new), nothing half-written, and a rerun ends as an undisturbed build."""
    local = Path(local_run["root"]["path"])
    extra = tmp_path / "extra"
    assert (
        main(
            [
                "--set",
                "spark.log_level=ERROR",
                "synth",
                "--users",
                "12",
                "--days",
                "40",
                "--seed",
                "8",
                "--out",
                str(extra),
            ]
        )
        == 0
    )
    undisturbed, killed = tmp_path / "undisturbed", tmp_path / "killed"
    for root in (undisturbed, killed):  # a built lakehouse, then more events to build
        shutil.copytree(local / "lh", root / "lh")
        in_process(root, "ingest", "--format", "events", "--input", str(extra))
    in_process(undisturbed, "build")
    before, after = table_state(spark, killed), table_state(spark, undisturbed)
    process = subprocess.Popen(
        [sys.executable, "-m", "downbeat.jobs.cli", *sets(killed), "build"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        # downbeat's log has one line per committed table: the kill follows the first gold one
        killed_at = lines_until(process, r" gold/\S+: committed version ", timeout=420)
        if killed_at is not None:
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert killed_at is not None and code == -signal.SIGKILL, killed_at
    moved = []
    for table, (version, content) in table_state(spark, killed).items():
        if content == before[table][1]:
            assert version == before[table][0], table  # untouched: its previous version
        else:
            assert content == after[table][1], table  # committed: all of the new rows, none half-written
            moved.append(table)
    assert any(t.startswith("gold/") for t in moved), moved
    print(f"killed at {killed_at!r}: {len(moved)} table(s) at new versions ({', '.join(moved)})")
    in_process(killed, "build")  # the rerun
    assert {t: s[1] for t, s in table_state(spark, killed).items()} == {t: s[1] for t, s in after.items()}


def test_two_concurrent_ingests_of_one_file_leave_bronze_as_one_ingest_does(spark, raw, local_run, tmp_path):
    command = [
        sys.executable,
        "-m",
        "downbeat.jobs.cli",
        *sets(tmp_path),
        "ingest",
        "--format",
        "events",
        "--input",
        str(raw),
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both at once, each read to its end
        runs = [pool.submit(run_command, command, timeout=300) for _ in range(2)]
        done = [r.result() for r in runs]
    outputs = [(d.stdout, d.stderr) for d in done]
    processes = done
    codes = sorted(p.returncode for p in processes)
    assert codes in ([0, 0], [0, 2]), [o[1][-2000:] for o in outputs]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        if process.returncode == 2:  # the one that lost the race says so in one line, and why
            errors = [line for line in stderr.splitlines() if line.startswith("downbeat: error:")]
            assert len(errors) == 1 and "another writer committed" in errors[0], stderr[-2000:]
            assert "rerun the job" in errors[0] and "Traceback" not in stderr
    local = Path(local_run["root"]["path"])
    assert rows(spark, tmp_path, "bronze/events") == rows(spark, local, "bronze/events")
    print(f"concurrent ingests exited {codes}")
