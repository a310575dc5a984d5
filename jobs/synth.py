"""`downbeat synth --users N --days D --out PATH`: a synthetic raw log (Parquet, `events` format).

Same arguments, same log. Ingest it with `downbeat ingest --format events --input PATH`.
Also runnable as `spark-submit jobs/synth.py --users N --days D --out PATH`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from downbeat.jobs.common import config_from, job_main
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.spark import spark_session
from downbeat.pipelines.synthetic import PROFILES, SynthSettings, synthetic_events


def run(spark: SparkSession, settings: SynthSettings, out: str) -> int:
    """Write the log to `out` (a folder of Parquet files, replaced if present); returns the event count."""
    if settings.users < 1 or settings.days < 1:
        raise InputError(f"--users and --days must be at least 1, got {settings.users} and {settings.days}")
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"--out {out} is a file; give a folder")
    spark.sparkContext.setJobDescription(f"synth {settings.users} users x {settings.days} days")
    synthetic_events(spark, settings).write.mode("overwrite").parquet(out)
    return spark.read.parquet(out).count()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, required=True, help="number of listeners")
    parser.add_argument("--days", type=int, required=True, help="days of listening")
    parser.add_argument("--out", required=True, metavar="PATH", help="output folder (Parquet)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--stations", type=int, default=12, help="stations (genres), default 12")
    parser.add_argument("--tracks-per-station", type=int, default=150, help="default 150")
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2024, 1, 1), help="first day")
    parser.add_argument("--partitions", type=int, default=8, help="Spark tasks that generate users")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="default",
        help="the log's shape: default | mssd (sessions of at most 20, ~50%% skips, as RecSys'24's MSSD "
        "sample) | lfm1k (sessions of at least 5 plays, ~11%% skips, as RecSys'24's LFM-1K)",
    )


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    spark = spark_session(cfg.spark, cfg.delta)
    settings = SynthSettings(
        users=args.users,
        days=args.days,
        stations=args.stations,
        tracks_per_station=args.tracks_per_station,
        seed=args.seed,
        start=args.start,
        partitions=args.partitions,
        profile=args.profile,
    )
    events = run(spark, settings, args.out)
    print(
        f"synth: {events} events, {args.users} users, {args.days} days, profile {args.profile} -> {args.out}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main("synth", __doc__, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
