"""`downbeat build [--from-date D --to-date D]`: bronze/events -> silver/plays -> every gold table.

A full build rewrites silver/plays. With a date range only the affected date partitions of
silver/plays are rebuilt: the range plus one day on each side (a change can move the session or
the skip of a neighbouring play), computed with two days of context on each side. Gold tables are
per-user and depend on the cut-off, which moves with the data: they are always recomputed from
silver/plays, in one transaction: their data files are all written before any of them commits.
Also runnable as `spark-submit jobs/build.py [--from-date D --to-date D]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import config_from, job_main
from jobs.config import Config
from pipelines import schemas as S
from pipelines.errors import InputError
from pipelines.eval_sets import eval_next, eval_pairs
from pipelines.hard_negatives import hard_negatives, with_hard_negative
from pipelines.lakehouse import Commit, Lakehouse
from pipelines.plays import plays
from pipelines.sequences import sequences, training_sequences
from pipelines.settings import FeatureSettings
from pipelines.spark import spark_session
from pipelines.split import (
    check_split,
    cutoff,
    history,
    in_test_period,
    in_validation_period,
    validation_cutoff,
    validation_users,
    with_roles,
)
from pipelines.stats import stats
from pipelines.vocabulary import stations, tracks

log = logging.getLogger("downbeat.build")
EVENTS, PLAYS = "bronze/events", "silver/plays"
GOLD = (
    "gold/tracks",
    "gold/stations",
    "gold/sequences",
    "gold/training_sequences",
    "gold/hard_negatives",
    "gold/eval_pairs",
    "gold/eval_next",
    "gold/validation_pairs",
    "gold/validation_next",
    "gold/stats",
)
NEIGHBOUR = dt.timedelta(days=1)
# Rows per partition of the user-partitioned plays that every gold table reads from the cache: a
# cached partition is read back whole, so it must stay far below the executor heap.
ROWS_PER_PARTITION = 500_000
# Rows per file of gold/training_sequences, one row group each: a Petastorm shard is a row group, so
# this sets how evenly ranks share the rows, and every group read costs a file open (~6 MB a group
# at width 200).
TRAINING_ROWS_PER_GROUP = 2048


@dataclass(frozen=True)
class BuildResult:
    cutoff_ts: dt.datetime
    versions: dict[str, int]
    silver_range: tuple[dt.date, dt.date] | None


def run(
    spark: SparkSession,
    cfg: Config,
    from_date: dt.date | None = None,
    to_date: dt.date | None = None,
) -> BuildResult:
    """Rebuild silver/plays (all of it, or the dates around [from_date, to_date]) and every gold table."""
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    features = cfg.features
    if (from_date is None) != (to_date is None):
        raise InputError("--from-date and --to-date go together")
    check_split(features.split)  # before anything is written: a bad key leaves every table as it was
    events = lakehouse.read(EVENTS)
    versions: dict[str, int] = {}
    silver_range = None
    if from_date is not None and to_date is not None:
        if from_date > to_date:
            raise InputError(f"--from-date {from_date} is after --to-date {to_date}")
        if not lakehouse.exists(PLAYS):
            raise InputError(f"{PLAYS} does not exist yet: run a full build (no --from-date) first")
        silver_range = (from_date - NEIGHBOUR, to_date + NEIGHBOUR)
        commit = _rebuild_range(lakehouse, events, features, *silver_range)
    else:
        silver = silver_plays(events, features)
        commit = lakehouse.write(silver, PLAYS, mode="overwrite", partition_by=[S.DATE])
    versions[PLAYS] = commit.version

    played = lakehouse.read(PLAYS)
    summary = played.agg(F.max(S.TS), F.count(F.lit(1))).first()
    if summary is None or summary[0] is None:
        raise InputError(f"{PLAYS} is empty: nothing to build (ingest events first)")
    cutoff_ts = cutoff(summary[0], features.split)
    log.info("test period starts at %s (cut-off)", cutoff_ts.isoformat())
    gold = gold_frames(played, features, cutoff_ts, user_partitions(spark, summary[1]), training_width(cfg))
    try:
        # Every gold table's files are written from the cached inputs, then all of them commit.
        with lakehouse.transaction() as tx:
            for table in GOLD:
                tx.stage(gold.tables[table], table, compression=compression_of(table))
    finally:
        gold.unpersist()  # only now: the staged writes above are what read the cache
    versions.update({table: commit.version for table, commit in tx.commits.items()})
    return BuildResult(cutoff_ts=cutoff_ts, versions=versions, silver_range=silver_range)


def silver_plays(events: DataFrame, features: FeatureSettings) -> DataFrame:
    """silver/plays rows from bronze/events rows, with the configured session and skip rules."""
    return plays(
        events,
        gap_minutes=features.sessions.gap_minutes,
        skip_seconds=features.skips.threshold_seconds,
        timing_sources=features.skips.timing_sources,
    )


def _rebuild_range(
    lakehouse: Lakehouse, events: DataFrame, features: FeatureSettings, start: dt.date, end: dt.date
) -> Commit:
    """Replace silver/plays' partitions [start, end], computed with a day of context on each side."""
    context = events.where(F.col(S.DATE).between(F.lit(start - NEIGHBOUR), F.lit(end + NEIGHBOUR)))
    computed = silver_plays(context, features).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rebuilt = computed.where(F.col(S.DATE).between(F.lit(start), F.lit(end)))
        # A session opening in the context's first minutes may have begun before it, and would get
        # a later start here than in a full build: rebuild silver in full then.
        early = dt.datetime.combine(start - NEIGHBOUR, dt.time()) + dt.timedelta(
            minutes=features.sessions.gap_minutes
        )
        early_sessions = computed.where((F.col(S.POSITION) == 0) & (F.col(S.TS) <= F.lit(early)))
        if rebuilt.join(early_sessions.select(S.SESSION_ID), S.SESSION_ID, "left_semi").limit(1).count():
            log.warning("a session runs into %s from before the context: rebuilding %s in full", start, PLAYS)
            return lakehouse.write(
                silver_plays(events, features), PLAYS, mode="overwrite", partition_by=[S.DATE]
            )
        return lakehouse.overwrite_partitions(rebuilt, PLAYS, column=S.DATE, start=start, end=end)
    finally:
        computed.unpersist()


def training_width(cfg: Config) -> int:
    """Positions per row of gold/training_sequences: what the model reads, at most what is kept."""
    return min(cfg.model.max_length, cfg.features.sequences.max_length)


def compression_of(table: str) -> str:
    """Streamed tables are read far more often than stored: uncompressed (decoding is the loader's cost)."""
    return "uncompressed" if table in S.STREAMED_TABLES else "snappy"


def user_partitions(spark: SparkSession, rows: int) -> int:
    """Partitions for plays by user: the session's shuffle partitions, more for big tables."""
    configured = int(spark.conf.get("spark.sql.shuffle.partitions") or 1)
    return max(configured, -(-rows // ROWS_PER_PARTITION))


@dataclass(frozen=True)
class GoldFrames:
    """Every gold table's frame, and the shared inputs they cache (to release once written)."""

    tables: dict[str, DataFrame]
    cached: tuple[DataFrame, ...]

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def gold_frames(
    played: DataFrame, features: FeatureSettings, cutoff_ts: dt.datetime, partitions: int, width: int
) -> GoldFrames:
    """Every gold table's frame, from one pass that partitions silver/plays by user.

    width: positions per row of gold/training_sequences (what the model reads).
    """
    level = StorageLevel.MEMORY_AND_DISK
    roles = with_roles(played, features.sequences, features.eval)
    roles = roles.repartition(partitions, S.USER_ID).persist(level)
    vocabulary = tracks(played).persist(level)
    station_ids = stations(played).persist(level)
    annotated = with_hard_negative(history(roles, cutoff_ts)).persist(level)
    test = in_test_period(roles, cutoff_ts)
    # Validation: validation users' plays before the validation cut-off are the histories, their
    # plays from it up to the test cut-off the targets; built exactly like the test tables.
    validation_start = validation_cutoff(cutoff_ts, features.split)
    validating = validation_users(roles, features.sequences.validation_percent)
    validation_history = history(validating, validation_start)
    validation_targets = in_validation_period(validating, validation_start, cutoff_ts)
    seqs = sequences(
        annotated,
        vocabulary,
        station_ids,
        cutoff_ts=cutoff_ts,
        max_length=features.sequences.max_length,
        validation_percent=features.sequences.validation_percent,
    ).persist(level)  # written, and summarised in gold/stats
    train_rows = seqs.where(F.col(S.SPLIT) == S.TRAIN).count()
    tables = {
        "gold/tracks": vocabulary,
        "gold/stations": station_ids,
        "gold/sequences": seqs,
        "gold/training_sequences": training_sequences(
            seqs, width=width, partitions=max(1, -(-train_rows // TRAINING_ROWS_PER_GROUP))
        ),
        "gold/hard_negatives": hard_negatives(annotated),
        "gold/eval_pairs": eval_pairs(
            test,
            vocabulary,
            station_ids,
            cutoff_ts=cutoff_ts,
            max_pairs_per_user=features.eval.max_pairs_per_user,
        ),
        "gold/eval_next": eval_next(
            annotated,
            test,
            vocabulary,
            station_ids,
            cutoff_ts=cutoff_ts,
            max_length=features.sequences.max_length,
        ),
        "gold/validation_pairs": eval_pairs(
            validation_targets,
            vocabulary,
            station_ids,
            cutoff_ts=validation_start,
            max_pairs_per_user=features.eval.max_pairs_per_user,
        ),
        "gold/validation_next": eval_next(
            validation_history,
            validation_targets,
            vocabulary,
            station_ids,
            cutoff_ts=validation_start,
            max_length=features.sequences.max_length,
        ),
        # from the cached, user-partitioned plays and vocabularies: no shuffle of all plays again
        "gold/stats": stats(roles, seqs, vocabulary, station_ids),
    }
    return GoldFrames(tables, (roles, vocabulary, station_ids, annotated, seqs))


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


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    spark = spark_session(cfg.spark, cfg.delta)
    started = time.monotonic()
    result = run(spark, cfg, args.from_date, args.to_date)
    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    scope = "all dates" if result.silver_range is None else "dates {} .. {}".format(*result.silver_range)
    print(f"build: silver/plays rebuilt for {scope}; test period from {result.cutoff_ts:%Y-%m-%d %H:%M} UTC")
    print(f"{'table':<25}{'version':>8}{'rows':>12}")
    for table, version in result.versions.items():
        print(f"{table:<25}{version:>8}{lakehouse.rows(table):>12}")
    print("\ngold/stats")
    for row in lakehouse.read("gold/stats").collect():
        value = "null" if row[S.VALUE] is None else f"{row[S.VALUE]:.4g}"
        print(f"  {row[S.METRIC]:<26}{value:>12}")
    print(f"\nbuild finished in {time.monotonic() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("build", __doc__, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
