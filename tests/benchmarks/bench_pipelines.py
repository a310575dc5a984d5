"""Benchmark (not a test): synth -> ingest -> each table of build, and sessions+skips against DuckDB.

    .venv/bin/pip install duckdb==1.4.2     # the benchmark's only extra; never a product dependency
    .venv/bin/python tests/benchmarks/bench_pipelines.py --users 18000 --days 60   # ~10M events
    .venv/bin/python tests/benchmarks/bench_pipelines.py --engine delta-rs --json out.json
    .venv/bin/python tests/benchmarks/bench_pipelines.py --set spark.shuffle_partitions=16   # a setting tried

Prints events per second for each step, the shuffles in each table's plan, the peak memory of the
driver (Python) and of the JVM, and the DuckDB ratio for the sessions-and-skips step.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pyspark.sql import functions as F

from downbeat.jobs import build, ingest
from downbeat.jobs.config import load_config
from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.gold import compression_of, gold_inputs, gold_tables, user_partitions
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.spark import spark_session
from downbeat.pipelines.split import cutoff
from downbeat.pipelines.synthetic import SynthSettings, synthetic_events
from downbeat.pipelines.times import from_micros


def jvm_peak_mib(spark) -> float:
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


def shuffles(df) -> int:
    """Shuffle exchanges in the physical plan, not counting those inside cached (persisted) inputs."""
    plan = df._jdf.queryExecution().executedPlan().toString().splitlines()
    count, cached_at = 0, None
    for line in plan:
        depth = len(line) - len(line.lstrip(" +-:"))
        if cached_at is not None and depth > cached_at:
            continue
        cached_at = None
        if "InMemoryRelation" in line or "InMemoryTableScan" in line:
            cached_at = depth
        text = line.strip(" +-:")
        if text.startswith("Exchange ") and "Broadcast" not in text:
            count += 1
    return count


STEPS: dict[str, float] = {}


class DiskPeak:
    """The most the used bytes of `path`'s file system rose above where they stood at start, sampled
    each second: raw files, tables, Delta logs and, where Spark's local dir (/tmp by default) is on
    the same file system, its shuffle and spill files (those live only inside a step, so sizes
    taken between steps would miss them). Other writers to that file system count too."""

    def __init__(self, path: str | Path, every: float = 1.0) -> None:
        self.path, self.every = str(path), every
        self.start = shutil.disk_usage(self.path).used
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        while not self.stop.wait(self.every):
            self.peak = max(self.peak, shutil.disk_usage(self.path).used - self.start)

    def close(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak / 2**30


def timed(label: str, events: int, fn):
    started = time.monotonic()
    out = fn()
    seconds = time.monotonic() - started
    STEPS[label] = round(seconds, 2)
    print(f"{label:<34}{seconds:>8.1f} s {events / seconds:>12,.0f} events/s", flush=True)
    return out, seconds


def duckdb_sessions(raw: str, gap: int, skip: int) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    started = time.monotonic()
    con.execute(
        f"""
        COPY (
          WITH o AS (
            SELECT *, lag(ts) OVER w AS prev_ts, lead(ts) OVER w AS next_ts,
                   row_number() OVER w AS n
            FROM read_parquet('{raw}/*.parquet') WINDOW w AS (PARTITION BY user_id ORDER BY ts, track_id)
          ), s AS (
            SELECT *, sum(CASE WHEN prev_ts IS NULL OR epoch_us(ts) - epoch_us(prev_ts) > {gap} * 60000000
                   THEN 1 ELSE 0 END) OVER (PARTITION BY user_id ORDER BY ts, track_id) AS session_no
            FROM o
          )
          SELECT user_id, session_no, ts, track_id, station_id,
                 CASE WHEN feedback = 'down' THEN 'down' WHEN feedback = 'up' THEN 'up'
                      WHEN ms_played < {skip} * 1000
                        OR epoch_us(next_ts) - epoch_us(ts) < {skip} * 1000000 THEN 'skip'
                      ELSE 'play' END AS feedback
          FROM s
        ) TO '{raw}_duck.parquet' (FORMAT parquet)
        """
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=18_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--engine", choices=("spark", "delta-rs"), default="spark", help="Delta engine")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, as downbeat's --set (repeatable), e.g. spark.shuffle_partitions=16",
    )
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="downbeat-bench-"))
    try:
        cfg = load_config(
            None,
            [
                f"lakehouse.root={work / 'lakehouse'}",
                "spark.log_level=ERROR",
                f"delta.engine={args.engine}",
                *args.set,
            ],
        )
    except InputError as exc:  # a --set key or value the configuration refuses: one line, exit 2
        parser.exit(2, f"bench_pipelines: error: {exc}\n")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    disk = DiskPeak(work)
    spark = spark_session(cfg.spark, cfg.delta)
    print(f"engine: {Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta).engine}")
    raw = str(work / "raw")
    settings = SynthSettings(users=args.users, days=args.days, partitions=16)
    started = time.monotonic()
    synthetic_events(spark, settings).write.parquet(raw)
    events = spark.read.parquet(raw).count()
    print(f"{'synth':<34}{time.monotonic() - started:>8.1f} s   {events:,} events, {args.users:,} users")
    timed("ingest (parse, check, merge)", events, lambda: ingest.run(spark, cfg, "events", [raw]))

    lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
    bronze = lakehouse.read("bronze/events")
    silver = build.silver_plays(bronze, cfg.features)
    print(f"silver/plays plan: {shuffles(silver)} shuffle(s)")
    _, spark_s = timed(
        "silver/plays (sessions + skips)",
        events,
        lambda: lakehouse.write(silver, "silver/plays", mode="overwrite", partition_by=[S.DATE]),
    )
    played = lakehouse.read("silver/plays")
    cut = cutoff(from_micros(played.agg(F.unix_micros(F.max(S.TS))).first()[0]), cfg.features.split)
    shuffle_partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
    partitions = user_partitions(shuffle_partitions, events)
    # Plans printed from frames of their own: a frame whose physical plan was shown before the cache
    # was set keeps that plan (a written frame still reads the cache; its printed plan would not).
    shown = gold_inputs(played, cfg.features, cut, partitions)
    shared = {
        "plays by user, with roles": shown.roles,
        "training plays + hard-negative columns": shown.annotated,
        "track vocabulary": shown.vocabulary,
    }
    for name, frame in shared.items():
        print(f"shared input '{name}' plan: {shuffles(frame)} shuffle(s) (computed once, cached)")
    # As build does: the shared inputs cached and computed (counting the train rows, which size
    # gold/training_sequences' files), a step of its own; the tables after it read the cache.
    inputs = gold_inputs(played, cfg.features, cut, partitions)
    train_rows, _ = timed("shared inputs (computed, cached)", events, lambda: build.cache_gold_inputs(inputs))
    tables = gold_tables(inputs, cfg.features, train_rows)
    # As build does: every gold table staged (files written) in one transaction, then committed.
    with lakehouse.transaction() as tx:
        for table in build.GOLD:
            frame = tables[table]
            print(f"{table} plan: {shuffles(frame)} shuffle(s)")
            timed(table, events, lambda t=table, f=frame: tx.stage(f, t, compression=compression_of(t)))
        commit_started = time.monotonic()
    STEPS["gold commit (all tables)"] = round(time.monotonic() - commit_started, 2)
    print(f"{'gold commit (all tables)':<34}{STEPS['gold commit (all tables)']:>8.1f} s")
    for frame in inputs.shared:
        frame.unpersist()
    jvm_mib = jvm_peak_mib(spark)
    print(
        f"peak memory: driver (python) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB,"
        f" JVM {jvm_mib:,.0f} MiB"
    )
    engine = lakehouse.engine
    spark.stop()
    peak_gib = disk.close()
    kept_gib = sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 2**30
    print(f"disk: peak {peak_gib:,.2f} GiB above the start (--work's file system), {kept_gib:,.2f} GiB kept")
    figures = {
        "events": events,
        "engine": engine,
        "steps_seconds": STEPS,
        "build_seconds": round(sum(v for k, v in STEPS.items()), 2),  # ingest + every table + commit
        "ingest_events_per_s": round(events / STEPS["ingest (parse, check, merge)"]),
        "jvm_peak_mib": round(jvm_mib),
        "peak_disk_gib": round(peak_gib, 2),  # used bytes above the start, sampled each second
        "kept_disk_gib": round(kept_gib, 2),  # raw files and the lakehouse at the end
        "date": f"{dt.date.today()}",
        "settings": args.set,  # the --set overrides of conf/local.yaml
    }
    try:
        duck_s = duckdb_sessions(raw, cfg.sessions.gap_minutes, cfg.skips.threshold_seconds)
    except ImportError:
        print("duckdb not installed: pip install duckdb to compare")
    else:
        print(f"{'duckdb sessions + skips':<34}{duck_s:>8.1f} s {events / duck_s:>12,.0f} events/s")
        print(f"spark / duckdb on sessions + skips: {spark_s / duck_s:.1f}x  ({dt.datetime.now():%Y-%m-%d})")
        figures["duckdb_ratio"] = round(spark_s / duck_s, 2)
    print(f"build (ingest + silver + gold + commit): {figures['build_seconds']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
