"""A lakehouse on object storage: an S3-compatible server (moto's) that the tests start on 127.0.0.1.

The demo runs end to end with its tables and MLflow's artifacts there (the Delta connector writes
through hadoop-aws, Petastorm and pyarrow read, MLflow stores the models); delta-rs writes the same
tables there; `doctor` checks the remote root for real. Credentials and the endpoint come from the
standard AWS environment variables, which every one of those clients reads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from tests.jobs.small import SHORT_SPLITS, TINY_TRAINING
from tests.processes import free_port, run_command, stop_group

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
BUCKET = "downbeat"
HADOOP_AWS = "org.apache.hadoop:hadoop-aws:3.4.1"  # the Hadoop that pip's pyspark 4.0 carries
SMALL = [
    f"spark.packages={HADOOP_AWS}",
    "spark.log_level=ERROR",
    *SHORT_SPLITS,
    *TINY_TRAINING,
]
GOLD = (
    "gold/tracks",
    "gold/training_sequences",
    "gold/sequences",
    "gold/hard_negatives",
    "gold/validation_pairs",
    "gold/eval_pairs",
    "gold/eval_next",
)


def sets(*values: str) -> list[str]:
    return [x for v in [*SMALL, *values] for x in ("--set", v)]


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free local port with one bucket; the environment that points at it."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        PYSPARK_PYTHON=sys.executable,
    )
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.5)
        yield env
    finally:
        stop_group(server)


def downbeat(env: dict[str, str], *args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_command([str(BIN / "downbeat"), *args], env=env, cwd=cwd, timeout=timeout)


def keys(env: dict[str, str], prefix: str) -> list[str]:
    fs = filesystem(env)
    found = fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True))
    return sorted(i.path for i in found if i.type == pafs.FileType.File)


def filesystem(env: dict[str, str]) -> pafs.S3FileSystem:
    endpoint = env["AWS_ENDPOINT_URL"].removeprefix("http://")
    return pafs.S3FileSystem(
        access_key="testing",
        secret_key="testing",
        region="us-east-1",
        endpoint_override=endpoint,
        scheme="http",
    )


def gold_rows(env: dict[str, str], root: str, table: str) -> list[tuple]:
    """The table's rows as its Delta log's snapshot names them (read with delta-rs, then pyarrow)."""
    from deltalake import DeltaTable

    options = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": env["AWS_ENDPOINT_URL"],
        "AWS_ALLOW_HTTP": "true",
    }
    files = [
        u.removeprefix("s3://") for u in DeltaTable(f"{root}/{table}", storage_options=options).file_uris()
    ]
    data = pq.read_table(files, filesystem=filesystem(env)) if files else None
    return sorted(tuple(map(repr, r.values())) for r in data.to_pylist()) if data is not None else []


@pytest.fixture(scope="module")
def demo(s3, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("s3demo") / "demo"
    done = downbeat(
        s3,
        *sets(),
        "demo",
        "--root",
        str(root),
        "--store",
        f"s3://{BUCKET}/demo",
        "--users",
        "60",
        "--days",
        "40",
        cwd=root.parent,
    )
    return root, done


def test_the_demo_runs_end_to_end_with_its_tables_and_models_on_object_storage(s3, demo):
    root, done = demo
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    table = json.loads((root / "comparison.json").read_text())
    assert set(table["models"]) == {"baseline", "pooled", "oracle", "popularity"}
    assert set(table["pooled_vs_baseline"]) >= {"paired_accuracy", "ndcg@10_pos", "hr@10_pos"}
    # the tables and the models are in the bucket, and nothing of them under --root
    stored = keys(s3, "demo")
    for name in ("bronze/events", "silver/plays", *GOLD):
        assert any(k.startswith(f"{BUCKET}/demo/lakehouse/{name}/_delta_log/") for k in stored), name
    # the two registered models (MLflow 3 keeps a logged model under models/m-<id>/artifacts)
    assert len([k for k in stored if "/mlartifacts/" in k and k.endswith("/artifacts/MLmodel")]) == 2
    assert not (root / "lakehouse").exists() and not (root / "mlartifacts").exists()
    assert "engine spark" in done.stderr or "spark engine" in done.stderr  # the connector wrote them


def test_delta_rs_writes_the_same_tables_on_object_storage(s3, demo, tmp_path):
    """The demo's raw log again, through the delta-rs engine into another prefix: the same gold rows."""
    root, done = demo
    assert done.returncode == 0
    where = f"s3://{BUCKET}/delta-rs"
    # the settings the demo's spec gave its build (it prints them: `== downbeat --set K=V ... build`)
    shown = re.search(r"^== downbeat (.*)build$", done.stdout, re.MULTILINE)
    assert shown is not None, done.stdout[-2000:]
    spec_sets = re.findall(r"--set (\S+)", shown.group(1))
    assert any(s.startswith("sequences.max_length=") for s in spec_sets), shown.group(0)
    common = sets(f"lakehouse.root={where}", "delta.engine=delta-rs", *spec_sets)
    ingested = downbeat(
        s3, *common, "ingest", "--format", "events", "--input", str(root / "raw"), cwd=tmp_path
    )
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    built = downbeat(s3, *common, "build", cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    assert "delta-rs engine" in built.stderr
    for table in GOLD:
        assert gold_rows(s3, where, table) == gold_rows(s3, f"s3://{BUCKET}/demo/lakehouse", table), table


def test_doctor_round_trips_a_scratch_table_on_the_remote_root_and_says_when_it_cannot(s3, tmp_path):
    common = sets(
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}", f"mlflow.artifact_root=s3://{BUCKET}/art"
    )
    ok = downbeat(s3, *common, "--set", f"lakehouse.root=s3://{BUCKET}/doctor", "doctor", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    lines = dict(line.split(None, 1) for line in ok.stdout.strip().splitlines())
    assert lines["lakehouse"] == f"s3://{BUCKET}/doctor: wrote 5 + 3 rows, read 8 back at version 1, deleted"
    assert lines["artifacts"] == f"s3://{BUCKET}/art: wrote, listed and deleted a probe file"
    assert keys(s3, "doctor") == [] and keys(s3, "art") == []  # nothing left behind
    missing = downbeat(s3, *common, "--set", "lakehouse.root=s3://no-such-bucket/lh", "doctor", cwd=tmp_path)
    assert missing.returncode == 2, missing.stderr[-3000:]
    errors = [line for line in missing.stderr.splitlines() if line.startswith("downbeat: error:")]
    assert len(errors) == 1 and "lakehouse root s3://no-such-bucket/lh" in errors[0], missing.stderr[-2000:]


def test_the_conditional_put_log_store_refuses_a_commit_file_that_exists_and_is_the_connectors_choice(
    s3, tmp_path
):
    """`delta.s3_log_store: conditional-put`: the connector's log store for s3:// is downbeat's, and
    through S3A's endpoint (moto's) it creates a commit file once; a second create of the same
    version is refused with the exception Delta retries on, and the file keeps the first commit."""
    key = "probe/_delta_log/00000000000000000000.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.jobs.log_store_probe",
            f"s3://{BUCKET}/{key}",
            f"spark.packages={HADOOP_AWS}",
        ],
        env=s3,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "store": "downbeat.delta.ConditionalPutS3LogStore",
        "new": "ok",
        "again": "java.nio.file.FileAlreadyExistsException",
        "overwrite": "ok",
    }
    with filesystem(s3).open_input_stream(f"{BUCKET}/{key}") as stream:
        assert stream.read() == b'{"line": "third"}\n'


WRITER = (sys.executable, "-m", "tests.jobs.concurrent_writer")


@pytest.mark.parametrize(
    ("engine", "rounds", "log_store"),
    [
        ("delta-rs", 10, None),  # commits by S3's conditional put (If-None-Match), which moto honours
        ("spark", 10, "conditional-put"),  # the same, from the connector (delta.s3_log_store)
        pytest.param(
            "spark",
            30,  # two commits took one version in 1 to 2 rounds of 10 in the runs seen
            "single-driver",
            marks=pytest.mark.xfail(
                strict=True,  # an XPASS fails: the default log store stopped losing commits
                raises=AssertionError,  # only the checks below: a driver that crashed fails the test
                reason="Delta's default S3 log store is safe for one driver per table (docs/lakehouse.md)",
            ),
        ),
    ],
)
def test_two_drivers_appending_to_one_s3_table_at_once_lose_no_commit(
    s3, tmp_path, engine, rounds, log_store
):
    """Two driver processes, one table on S3, rounds in which both commit an append at the same
    instant (a barrier after both have staged): every commit that reports a version is in the table,
    no two share a version, the log has no gap; a commit that could not land ends in the one-line
    conflict error. The connector's default log store fails this."""
    folder = f"concurrent-{engine}-{log_store}"
    root = f"s3://{BUCKET}/{folder}"
    settings = [f"spark.packages={HADOOP_AWS}", *([f"delta.s3_log_store={log_store}"] if log_store else [])]
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    drivers = {
        name: subprocess.Popen(
            [*WRITER, root, engine, name, str(rounds), str(barrier), *settings],
            env=s3,
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for name in ("A", "B")
    }
    try:
        done = {name: p.communicate(timeout=900) for name, p in drivers.items()}
    finally:
        for process in drivers.values():
            stop_group(process)
    results = {}
    for name, (out, err) in done.items():
        if drivers[name].returncode != 0:
            pytest.fail(f"driver {name} exited {drivers[name].returncode}: {err[-3000:]}")
        results.update({(name, r["round"]): r for r in map(json.loads, out.splitlines())})
    if len(results) != 2 * rounds:
        pytest.fail(f"{len(results)} results for {2 * rounds} commits: {results}")
    landed = {key: r["version"] for key, r in results.items() if "version" in r}
    refused = [r["conflict"] for r in results.values() if "conflict" in r]
    print(f"{engine}: {len(landed)} commits landed, {len(refused)} refused: {refused[:2]}")
    log = keys(s3, f"{folder}/bronze/concurrent/_delta_log/")
    versions = sorted(int(Path(k).stem) for k in log if k.endswith(".json"))
    assert versions == list(range(len(versions))), f"a gap in the log: {versions}"
    assert sorted(landed.values()) == versions[1:], f"two commits reported one version: {landed}"
    assert gold_rows(s3, root, "bronze/concurrent") == sorted((repr(n), repr(r)) for n, r in landed)
