"""`downbeat ingest --format FORMAT --input PATH...`: raw logs -> bronze/events (+ bronze/quarantine).

Accepted rows are merged into bronze/events on their stable `event_id`, so ingesting a file again
leaves the table's content as it was. Rejected rows are merged into bronze/quarantine with the
file, line and reason. Both tables' data files are written before either commits.
Also runnable as `spark-submit jobs/ingest.py --format FORMAT --input PATH...`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from downbeat.jobs.common import add_json_option, config_from, job_main, print_summary, table_versions
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.sources import (
    ADAPTERS,
    FORMATS,
    GLOBAL_IDS,
    events,
    has_duplicates,
    input_files,
    parse,
    rejects,
)
from downbeat.pipelines.sources._common import FILE, LINE, REASON
from downbeat.pipelines.spark import spark_session

EVENTS_TABLE, QUARANTINE_TABLE = Tables.EVENTS, Tables.QUARANTINE
NAMED_FILES = 10  # files an error names at most (the rest are counted)


@dataclass(frozen=True)
class IngestResult:
    files: tuple[str, ...]
    accepted: int
    rejected: int
    events_version: int
    quarantine_version: int | None


def run(spark: SparkSession, cfg: Config, fmt: str, inputs: Sequence[str]) -> IngestResult:
    """Parse `inputs` in `fmt`, then merge accepted rows into bronze/events and the rest into quarantine."""
    if fmt not in ADAPTERS:
        raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    files = input_files(inputs)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    # Not cached: each pass below re-reads the input, which costs less than caching every row.
    parsed = parse(fmt, spark, files, cfg.sources, cfg.ingest)
    per_file = {
        r[FILE]: (int(r["_accepted"]), int(r["_rejected"]))
        for r in parsed.groupBy(FILE)
        .agg(
            F.count(F.when(F.col(REASON).isNull(), 1)).alias("_accepted"),
            F.count(F.col(REASON)).alias("_rejected"),
        )
        .collect()
    }
    accepted = sum(a for a, _ in per_file.values())
    rejected = sum(r for _, r in per_file.values())
    if accepted + rejected == 0:
        raise InputError(f"input {', '.join(files)}: no rows to ingest")
    check_every_file_has_a_valid_row(parsed, files, per_file, fmt)
    # Both tables in one transaction: their files are written first, then committed together.
    with lakehouse.transaction() as tx:
        tx.stage(
            events(parsed, fmt, GLOBAL_IDS[fmt], deduplicate=has_duplicates(parsed, fmt)),
            EVENTS_TABLE,
            operation="merge",
            merge_keys=[S.EVENT_ID],
            partition_by=[S.DATE],
            keys_unique=True,  # deduplicated on event_id, or has_duplicates() found none
        )
        if rejected:
            tx.stage(rejects(parsed, fmt), QUARANTINE_TABLE, operation="merge", merge_keys=["row_id"])
    return IngestResult(
        files=tuple(files),
        accepted=accepted,
        rejected=rejected,
        events_version=tx.commits[EVENTS_TABLE].version,
        quarantine_version=tx.commits[QUARANTINE_TABLE].version if rejected else None,
    )


def check_every_file_has_a_valid_row(
    parsed: DataFrame, files: Sequence[str], per_file: dict[str, tuple[int, int]], fmt: str
) -> None:
    """Bad input when any file given has no accepted row (a wrong format, a truncated export): one
    line naming each such file and its first rejected line, before anything is written."""
    empty = [f for f in files if per_file.get(f, (0, 0))[0] == 0]
    if not empty:
        return
    firsts = {
        r[FILE]: r
        for r in parsed.where(F.col(FILE).isin(empty) & F.col(REASON).isNotNull())
        .groupBy(FILE)
        .agg(F.min_by(F.struct(LINE, REASON), LINE).alias("_first"))
        .select(FILE, "_first.*")
        .collect()
    }

    def why(path: str) -> str:
        if path not in firsts:
            return f"{path} (no rows)"
        first = firsts[path]
        reason = first[REASON].encode("unicode_escape").decode("ascii")  # a quoted value stays on one line
        return f"{path} (line {first[LINE]}: {reason}; {per_file[path][1]} rows rejected)"

    named = "; ".join(why(f) for f in empty[:NAMED_FILES])
    more = f"; and {len(empty) - NAMED_FILES} more" if len(empty) > NAMED_FILES else ""
    raise InputError(
        f"no row is valid {fmt} in {len(empty)} of {len(files)} input file(s), nothing written: {named}{more}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, help="the raw log's format")
    add_json_option(parser)
    parser.add_argument(
        "--input", required=True, nargs="+", metavar="PATH", help="files, folders or glob patterns"
    )


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    started = time.monotonic()
    spark = spark_session(cfg.spark, cfg.delta)
    result = run(spark, cfg, args.format, args.input)
    where = f"; rejected rows in {QUARANTINE_TABLE} v{result.quarantine_version}" if result.rejected else ""
    print(
        f"ingest {args.format}: {len(result.files)} file(s), {result.accepted} accepted,"
        f" {result.rejected} rejected -> {EVENTS_TABLE} v{result.events_version}{where}"
    )
    if args.json:
        versions = {EVENTS_TABLE: result.events_version}
        if result.quarantine_version is not None:
            versions[QUARANTINE_TABLE] = result.quarantine_version
        lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
        print_summary(
            "ingest",
            started,
            format=args.format,
            files=list(result.files),
            accepted=result.accepted,
            rejected=result.rejected,
            tables=table_versions(lakehouse, versions),
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("ingest", __doc__, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
