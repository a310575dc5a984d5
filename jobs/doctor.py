"""`downbeat doctor`: checks that this machine can run downbeat, end to end on a scratch table.

Also runnable as `spark-submit jobs/doctor.py [--conf FILE] [--set key=value]`.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from jobs.common import config_from, job_main
from jobs.config import Config
from pipelines.lakehouse import Lakehouse, connector_available
from pipelines.spark import spark_session


def run(spark: SparkSession, cfg: Config) -> list[tuple[str, str]]:
    """Each check as (name, finding); raises when one fails."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    why = "connector classes load" if connector_available(spark) else "connector classes not on the classpath"
    checks = [
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("java", _java_version()),
        ("spark", f"{spark.version}, master {spark.sparkContext.master}"),
        ("delta", f"engine {lakehouse.engine} (delta.engine={cfg.delta.engine}: {why})"),
        ("lakehouse", _root_status(lakehouse.root)),
    ]
    scratch = tempfile.mkdtemp(prefix="downbeat-doctor-")
    try:
        probe = Lakehouse(spark, scratch, lakehouse.engine)
        rows = spark.range(5).select(F.col("id"), (F.col("id") % 2 == 0).alias("even"))
        probe.write(rows, "bronze/doctor", mode="overwrite")
        commit = probe.write(rows.where("even"), "bronze/doctor", mode="append")
        read_back = probe.read("bronze/doctor").count()
        if read_back != 8:
            raise RuntimeError(f"scratch table round trip read {read_back} rows, expected 8")
        checks.append(("round trip", f"wrote 5 + 3 rows, read {read_back} back at version {commit.version}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    checks.append(("mlflow", cfg.mlflow.tracking_uri))
    return checks


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr
    except FileNotFoundError:
        return "not found"
    return out.splitlines()[0] if out else "unknown"


def _root_status(root: str) -> str:
    if "://" in root:
        return f"{root} (remote; not checked)"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / ".downbeat-write-check"
    probe.write_text("ok")
    probe.unlink()
    return f"{path} (writable)"


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    spark = spark_session(cfg.spark, cfg.delta)
    for name, finding in run(spark, cfg):
        print(f"{name:<11}{finding}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("doctor", __doc__, command, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
