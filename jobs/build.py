"""`downbeat build [--from-date D --to-date D]`: bronze/events -> silver/plays -> every gold table.

A full build rewrites silver/plays. With a date range only the affected date partitions of
silver/plays are rebuilt: the range plus one day on each side (a change can move the session or
the skip of a neighbouring play), computed with a day more of context on each side; where a
session crosses that context's edge, silver/plays is rebuilt in full (pipelines/silver.py). Gold
tables are per-user and depend on the cut-off, which moves with the data: they are always
recomputed from silver/plays (pipelines/gold.py), in one transaction: their data files are all
written before any of them commits.
Also runnable as `spark-submit jobs/build.py [--from-date D --to-date D]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from downbeat.jobs.common import add_json_option, config_from, job_main, print_summary, table_versions
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.gold import (
    GOLD,
    GoldInputs,
    compression_of,
    gold_inputs,
    gold_tables,
    user_partitions,
)
from downbeat.pipelines.lakehouse import Commit, Lakehouse
from downbeat.pipelines.sequences import UNIT_TAG
from downbeat.pipelines.settings import BUILD_SETTINGS_TAG, FeatureSettings
from downbeat.pipelines.silver import (
    NEIGHBOUR,
    day_of_context_suffices,
    in_range,
    range_conflicts,
    range_context,
    silver_plays,
)
from downbeat.pipelines.spark import spark_session
from downbeat.pipelines.split import check_sequences, check_split, cutoff
from downbeat.pipelines.times import from_micros

log = logging.getLogger("downbeat.build")
EVENTS, PLAYS = Tables.EVENTS, Tables.PLAYS
__all__ = ["GOLD", "BuildResult", "run", "silver_plays"]


@dataclass(frozen=True)
class BuildResult:
    cutoff_ts: dt.datetime | None  # UTC-aware; None under leave-one-out (each user's own)
    versions: dict[str, int]
    silver_range: tuple[dt.date, dt.date] | None


def check_range(cfg: Config, from_date: dt.date | None, to_date: dt.date | None) -> None:
    """Bad input (exit 2) when a rebuild's dates cannot be used, before anything is read."""
    if (from_date is None) != (to_date is None):
        raise InputError("--from-date and --to-date go together")
    if from_date is None or to_date is None:
        return
    if from_date > to_date:
        raise InputError(f"--from-date {from_date} is after --to-date {to_date}")
    first, last = cfg.ingest.days()
    if not first <= from_date <= to_date <= last:
        raise InputError(
            f"--from-date {from_date} and --to-date {to_date} must lie in ingest.min_ts..ingest.max_ts "
            f"({first}..{last}): no event outside it is in the lakehouse"
        )


def warn_if_after_clock(last: dt.datetime) -> None:
    """One warning line when the latest play lies after this machine's clock (a source in another
    unit or zone, a far-future row inside the ingest window): a message only, the tables never
    depend on the clock."""
    now = dt.datetime.now(dt.UTC)
    if last > now:
        log.warning(
            "the latest play (%s) lies after this machine's clock (%s): the split's cut-off follows it; "
            "check the source's times (units, zone) or narrow ingest.max_ts",
            last.isoformat(),
            now.isoformat(timespec="seconds"),
        )


def run(
    spark: SparkSession,
    cfg: Config,
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
) -> BuildResult:
    """Rebuild silver/plays (all of it, or the dates around [from_date, to_date]) and every gold table."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    features = cfg.features
    check_range(cfg, from_date, to_date)
    check_split(features.split)  # before anything is written: a bad key leaves every table as it was
    check_sequences(features.sequences)
    events = lakehouse.read(EVENTS)
    versions: dict[str, int] = {}
    silver_range = None
    if from_date is not None and to_date is not None:
        if not lakehouse.exists(PLAYS):
            raise InputError(f"{PLAYS} does not exist yet: run a full build (no --from-date) first")
        silver_range = (from_date - NEIGHBOUR, to_date + NEIGHBOUR)
        commit = _rebuild_range(lakehouse, events, features, *silver_range)
    else:
        commit = _write_full_silver(lakehouse, events, features)
    versions[PLAYS] = commit.version

    played = lakehouse.read(PLAYS)
    # The last play as epoch microseconds: a datetime from Spark would be in this process's zone.
    quantile = features.split.cutoff_quantile
    # with split.cutoff_quantile, that quantile of play times (PNFRec's split), from a sketch whose
    # rank error is at most 1e-5 of the plays
    at_quantile = [] if quantile is None else [F.percentile_approx(F.unix_micros(S.TS), quantile, 100_000)]
    summary = played.agg(F.unix_micros(F.max(S.TS)), F.count(F.lit(1)), *at_quantile).first()
    if summary is None or summary[0] is None:
        raise InputError(f"{PLAYS} is empty: nothing to build (ingest events first)")
    warn_if_after_clock(from_micros(summary[0]))
    cutoff_ts: dt.datetime | None = None
    if features.split.protocol == "leave_one_out":
        log.info("leave-one-out: each user's last play is their test target, the one before it validation")
    else:
        quantile_ts = None if quantile is None else from_micros(summary[2])
        cutoff_ts = cutoff(from_micros(summary[0]), features.split, quantile_ts)
        log.info("test period starts at %s (cut-off)", cutoff_ts.isoformat())
    shuffle_partitions = int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    partitions = user_partitions(shuffle_partitions, summary[1])
    versions.update(write_gold(lakehouse, played, features, cutoff_ts, partitions))
    return BuildResult(cutoff_ts=cutoff_ts, versions=versions, silver_range=silver_range)


def write_gold(
    lakehouse: Lakehouse,
    played: DataFrame,
    features: FeatureSettings,
    cutoff_ts: dt.datetime | None,
    partitions: int,
) -> dict[str, int]:
    """Every gold table from silver/plays, in one transaction: the shared inputs cached, every table's
    files written from them, then all of them commit. Returns each table's committed version."""
    inputs = gold_inputs(played, features, cutoff_ts, partitions)
    try:
        tables = gold_tables(inputs, features, cache_gold_inputs(inputs))
        built = {BUILD_SETTINGS_TAG: json.dumps(features.record(), sort_keys=True)}
        with lakehouse.transaction() as tx:
            for table in GOLD:
                tags = dict(built)
                if table in (Tables.SEQUENCES, Tables.TRAINING_SEQUENCES):
                    tags[UNIT_TAG] = features.sequences.unit
                tx.stage(tables[table], table, compression=compression_of(table), tags=tags)
    finally:
        for frame in inputs.shared:
            frame.unpersist()  # only now: the staged writes above are what read the cache
    return {table: commit.version for table, commit in tx.commits.items()}


def cache_gold_inputs(inputs: GoldInputs) -> int:
    """Cache the frames several gold tables read, before any of them is computed (so each is computed
    once), and count gold/sequences' training rows (which computes them). Before anything plans them:
    a frame keeps the physical plan it was first planned with, cached or not.

    On disk only: building the in-memory columnar cache of 100M plays ran the 4 GB heap out, and at
    10M the disk cache (read back through the OS page cache) was no slower (docs/performance.md)."""
    for frame in inputs.shared:
        frame.persist(StorageLevel.DISK_ONLY)
    return inputs.training_rows().count()


def _rebuild_range(
    lakehouse: Lakehouse, events: DataFrame, features: FeatureSettings, start: dt.date, end: dt.date
) -> Commit:
    """Replace silver/plays' partitions [start, end], or all of it where a session crosses the context."""
    if not day_of_context_suffices(features):
        log.warning("sessions or skips can reach past a day: rebuilding %s in full", PLAYS)
        return _write_full_silver(lakehouse, events, features)
    computed = silver_plays(range_context(events, start, end), features).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        conflicts = range_conflicts(
            computed, lakehouse.read(PLAYS), start, end, features.sessions.gap_minutes
        )
        crossing = conflicts.limit(1).collect()
        if crossing:
            log.warning(
                "session %s reaches past %s .. %s (or the days beside them have events silver does not"
                " hold yet): rebuilding %s in full",
                crossing[0][0],
                start,
                end,
                PLAYS,
            )
            return _write_full_silver(lakehouse, events, features)
        return lakehouse.overwrite_partitions(
            in_range(computed, start, end), PLAYS, column=S.DATE, start=start, end=end
        )
    finally:
        computed.unpersist()


def _write_full_silver(lakehouse: Lakehouse, events: DataFrame, features: FeatureSettings) -> Commit:
    """silver/plays rewritten from every event (a full build, or a range rebuild that cannot be exact)."""
    return lakehouse.write(silver_plays(events, features), PLAYS, mode="overwrite", partition_by=[S.DATE])


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-date", type=_date, metavar="YYYY-MM-DD", help="first date whose events changed"
    )
    parser.add_argument("--to-date", type=_date, metavar="YYYY-MM-DD", help="last date whose events changed")
    add_json_option(parser)


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    started = time.monotonic()
    spark = spark_session(cfg.spark, cfg.delta)
    result = run(spark, cfg, args.from_date, args.to_date)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    scope = "all dates" if result.silver_range is None else "dates {} .. {}".format(*result.silver_range)
    if result.cutoff_ts is None:
        split = "each user's last play is the test target (leave-one-out)"
    else:
        split = f"test period from {result.cutoff_ts:%Y-%m-%d %H:%M} UTC"
    print(f"build: silver/plays rebuilt for {scope}; {split}")
    print(f"{'table':<25}{'version':>8}{'rows':>12}")
    for table, version in result.versions.items():
        print(f"{table:<25}{version:>8}{lakehouse.rows(table):>12}")
    print("\ngold/stats")
    for row in lakehouse.read(Tables.STATS).collect():
        value = "null" if row[S.VALUE] is None else f"{row[S.VALUE]:.4g}"
        print(f"  {row[S.METRIC]:<26}{value:>12}")
    print(f"\nbuild finished in {time.monotonic() - started:.1f} s")
    if args.json:
        print_summary(
            "build",
            started,
            cutoff=None if result.cutoff_ts is None else result.cutoff_ts.isoformat(),
            silver_range=None if result.silver_range is None else [str(d) for d in result.silver_range],
            tables=table_versions(lakehouse, result.versions),
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("build", __doc__, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
