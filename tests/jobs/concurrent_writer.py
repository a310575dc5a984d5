"""One of two drivers appending to one table at once (tests/jobs/test_object_storage.py runs two).

python -m tests.jobs.concurrent_writer ROOT ENGINE NAME ROUNDS BARRIER_DIR [KEY=VALUE ...]

Driver A creates the table first. Each round stages a one-row append (its data file written), then
waits at a barrier (a file per driver per round under BARRIER_DIR) until the other driver has
staged its own, so the two commits start within milliseconds of each other. Prints one JSON line
per round: the version the commit reported, or the one-line conflict error it ended in."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from downbeat.jobs.config import load_config
from downbeat.pipelines.errors import ConflictError
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.spark import spark_session

TABLE = "bronze/concurrent"
SCHEMA = "writer string, round int"


def barrier(folder: Path, name: str, round_: int, timeout_s: float = 120.0) -> None:
    (folder / f"{round_}-{name}").touch()
    deadline = time.monotonic() + timeout_s
    while len(list(folder.glob(f"{round_}-*"))) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"round {round_}: the other driver never staged")
        time.sleep(0.001)


def main(argv: list[str]) -> None:
    root, engine, name, rounds, folder = argv[:5]
    overrides = [f"lakehouse.root={root}", f"delta.engine={engine}", "spark.log_level=ERROR", *argv[5:]]
    cfg = load_config(None, overrides)
    spark = spark_session(cfg.spark, cfg.delta)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    if name == "A":  # the table's version 0, before either driver stages
        lakehouse.write(spark.createDataFrame([], SCHEMA), TABLE)
    barrier(Path(folder), name, -1)
    for round_ in range(int(rounds)):
        df = spark.createDataFrame([(name, round_)], SCHEMA)
        pending = lakehouse.prepare(df, TABLE, operation="append")
        barrier(Path(folder), name, round_)
        try:
            print(json.dumps({"round": round_, "version": pending.commit().version}), flush=True)
        except ConflictError as exc:
            print(json.dumps({"round": round_, "conflict": str(exc).splitlines()[0]}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
