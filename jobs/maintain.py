"""`downbeat maintain [--optimize] [--vacuum-hours N] [--table T ...]`: compaction and vacuum;
`--history TABLE` and `--restore TABLE --version N`: a table's commits, and rolling it back.

For a scheduler, after the nightly build: `--optimize` compacts each table's small files (a new
version with the same rows); `--vacuum-hours N` deletes the files that no version of the last N
hours needs, and files that no version references (left by failed writes). Time travel to a
version older than N hours fails afterwards; versions inside the N hours keep working. A vacuum
must not be shorter than the longest write that may run concurrently on the table.
`--restore` (Delta's RESTORE, either engine) makes a new version with an earlier version's content,
so an operator rolls back a bad commit (a bad ingest) without Python; rebuild afterwards.
Also runnable as `spark-submit jobs/maintain.py [--optimize] [--vacuum-hours N]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

from pyspark.sql import SparkSession

from downbeat.jobs.common import config_from, job_main
from downbeat.jobs.config import Config
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse, Maintenance
from downbeat.pipelines.schemas import STREAMED_TABLES
from downbeat.pipelines.spark import spark_session


def run(
    spark: SparkSession,
    cfg: Config,
    *,
    optimize: bool,
    vacuum_hours: float | None,
    tables: Sequence[str] = (),
    force: bool = False,
) -> list[Maintenance]:
    """Optimize and/or vacuum `tables` (default: every table under the root), in name order.

    Streamed tables (gold/training_sequences) are never compacted: their layout is the loader's.
    A vacuum shorter than `lakehouse.min_vacuum_hours` runs only with `force`.
    """
    if not optimize and vacuum_hours is None:
        raise InputError("nothing to do: give --optimize, --vacuum-hours N, or both")
    if vacuum_hours is not None and not (math.isfinite(vacuum_hours) and vacuum_hours >= 0):
        raise InputError(f"--vacuum-hours must be 0 or more, not {vacuum_hours:g}")
    least = cfg.lakehouse.min_vacuum_hours
    if vacuum_hours is not None and vacuum_hours < least and not force:
        raise InputError(
            f"--vacuum-hours {vacuum_hours:g} is under lakehouse.min_vacuum_hours ({least:g}): it would "
            "delete the staged files of any write older than that still running; add --force if none is"
        )
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    for table in tables:
        if not lakehouse.exists(table):
            raise InputError(f"table {table} does not exist under {lakehouse.root}")
    names = list(tables) or lakehouse.tables()
    if not names:
        raise InputError(f"no Delta tables under {lakehouse.root}: nothing to maintain")
    if optimize:
        for table in set(tables) & set(STREAMED_TABLES):
            raise InputError(
                f"--optimize {table}: its files are laid out for the training loader (one row group "
                "each, uncompressed) and `build` rewrites it; compaction would undo that"
            )
    done = []
    for table in names:
        if optimize and table not in STREAMED_TABLES:
            done.append(lakehouse.optimize(table))
        if vacuum_hours is not None:
            done.append(lakehouse.vacuum(table, vacuum_hours))
    return done


def restore(spark: SparkSession, cfg: Config, table: str, version: int) -> Maintenance:
    """Roll `table` back to `version` (a new version with that content)."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    if not lakehouse.exists(table):
        raise InputError(f"table {table} does not exist under {lakehouse.root}")
    return lakehouse.restore(table, version)


def history(spark: SparkSession, cfg: Config, table: str) -> list[dict[str, Any]]:
    """`table`'s commits, newest first."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    if not lakehouse.exists(table):
        raise InputError(f"table {table} does not exist under {lakehouse.root}")
    return lakehouse.history(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--optimize", action="store_true", help="compact small files (a new version)")
    parser.add_argument(
        "--vacuum-hours",
        type=float,
        metavar="N",
        help="delete files no version of the last N hours needs (at least lakehouse.min_vacuum_hours, "
        "168 by default, unless --force)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="vacuum under lakehouse.min_vacuum_hours: only when no write that started earlier still runs",
    )
    parser.add_argument(
        "--table", action="append", default=[], metavar="LAYER/NAME", help="only this table (repeatable)"
    )
    parser.add_argument("--history", metavar="LAYER/NAME", help="print the table's commits, newest first")
    parser.add_argument(
        "--restore",
        metavar="LAYER/NAME",
        help="roll the table back to --version N (a new version with its content)",
    )
    parser.add_argument("--version", type=int, metavar="N", help="the version --restore goes back to")
    parser.add_argument("--json", action="store_true", help="print a JSON summary as the last line")


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    if (args.restore is None) != (args.version is None):
        raise InputError("--restore TABLE and --version N go together")
    if (args.restore or args.history) and (args.optimize or args.vacuum_hours is not None or args.table):
        raise InputError(
            "--restore and --history name their own table: run them apart from --optimize and --vacuum-hours"
        )
    spark = spark_session(cfg.spark, cfg.delta)
    started = time.monotonic()
    if args.history is not None:
        return _print_history(history(spark, cfg, args.history), args.json)
    if args.restore is not None:
        done = [restore(spark, cfg, args.restore, args.version)]
    else:
        vacuum = {"vacuum_hours": args.vacuum_hours, "force": args.force}
        done = run(spark, cfg, optimize=args.optimize, tables=args.table, **vacuum)
    print(f"{'table':<24}{'action':<10}{'version':>12}{'files +':>9}{'files -':>9}{'seconds':>9}")
    for m in done:
        versions = f"{m.version_before}->{m.version_after}"
        print(
            f"{m.table:<24}{m.action:<10}{versions:>12}{m.files_added:>9}{m.files_removed:>9}"
            f"{m.seconds:>9.1f}"
        )
    print(f"maintain finished in {time.monotonic() - started:.1f} s")
    if args.json:
        summary = [
            {
                "table": m.table,
                "action": m.action,
                "version_before": m.version_before,
                "version_after": m.version_after,
                "files_added": m.files_added,
                "files_removed": m.files_removed,
            }
            for m in done
        ]
        print(json.dumps({"maintained": summary}))
    return 0


def _print_history(entries: list[dict[str, Any]], as_json: bool) -> int:
    print(f"{'version':>8}  {'timestamp (UTC)':<24}{'operation':<20}{'rows':>10}  batch / restored from")
    for e in entries:
        stamp = dt.datetime.fromtimestamp(int(e.get("timestamp", 0)) / 1000, dt.UTC).strftime(
            "%Y-%m-%d %H:%M:%S"
        )
        what = e.get("downbeat.operation") or str(e.get("operation", "")).lower()
        rows = e.get("downbeat.rows", "")
        note = e.get("downbeat.batch", "") + (
            f" restored from {e['downbeat.restored_from']}" if "downbeat.restored_from" in e else ""
        )
        print(f"{e.get('version', ''):>8}  {stamp:<24}{what:<20}{rows:>10}  {note}")
    if as_json:
        keep = (
            "version",
            "timestamp",
            "operation",
            "downbeat.operation",
            "downbeat.rows",
            "downbeat.batch",
            "downbeat.restored_from",
        )
        print(json.dumps({"history": [{k: e[k] for k in keep if k in e} for e in entries]}, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("maintain", __doc__, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
