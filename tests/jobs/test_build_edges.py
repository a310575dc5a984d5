"""Edges of ingest and build a review found: the process's time zone, ids of two sources in one
lakehouse, sessions that run out of an incremental rebuild's range, and a file with no valid row."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator

from chispa import assert_df_equality
from pyspark.sql import functions as F

from downbeat.jobs import build, ingest
from downbeat.jobs.cli import main
from downbeat.jobs.config import load_config
from downbeat.pipelines import schemas as S
from downbeat.pipelines.gold import gold_inputs, gold_tables
from downbeat.pipelines.lakehouse import Lakehouse

GOLD_AND_SILVER = ("silver/plays", *build.GOLD)


def config(root, *more: str):
    return load_config(None, [f"lakehouse.root={root}", "spark.log_level=ERROR", *more])


@contextlib.contextmanager
def process_zone(name: str) -> Iterator[None]:
    """This Python process (the driver) in time zone `name`, as with `TZ=name downbeat build`."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        assert time.localtime(1_000_000_000).tm_gmtoff != 0, f"no zone data for {name} on this machine"
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def lastfm_log(path) -> None:
    """Three users over four days; the last play is ten minutes after midnight UTC on 4 May, so a
    cut-off taken in local time falls on another day west of UTC and at another hour east of it."""
    lines = []
    start = dt.datetime(2009, 5, 1, 8, 0)
    for u in range(3):
        for day in range(3):
            for i in range(12):
                ts = start + dt.timedelta(days=day, minutes=4 * i + 7 * u)
                lines.append(f"user_{u}\t{ts:%Y-%m-%dT%H:%M:%SZ}\tart\tArtist\ttr-{(i * (u + 2)) % 9}\tSong")
        lines.append(f"user_{u}\t2009-05-03T23:5{u}:00Z\tart\tArtist\ttr-{u}\tSong")
        lines.append(f"user_{u}\t2009-05-04T00:1{u}:00Z\tart\tArtist\ttr-{u + 3}\tSong")
    path.write_text("\n".join(lines) + "\n")


def test_a_build_under_any_process_time_zone_writes_the_tables_a_utc_one_does(spark, tmp_path):
    lastfm_log(tmp_path / "log.tsv")
    extra = ("split.test_days=1", "split.validation_days=1", "sequences.validation_percent=34")
    reference = config(tmp_path / "utc", *extra)
    ingest.run(spark, reference, "lastfm1k", [str(tmp_path / "log.tsv")])
    for zone in ("america", "kolkata"):
        shutil.copytree(tmp_path / "utc", tmp_path / zone)  # the same bronze/events
    result = build.run(spark, reference)
    assert result.cutoff_ts == dt.datetime(2009, 5, 4, tzinfo=dt.UTC)
    for zone, name in (("america", "America/New_York"), ("kolkata", "Asia/Kolkata")):
        with process_zone(name):
            zoned = build.run(spark, config(tmp_path / zone, *extra))
        assert zoned.cutoff_ts == result.cutoff_ts, name
        want, got = Lakehouse(spark, str(tmp_path / "utc")), Lakehouse(spark, str(tmp_path / zone))
        assert want.read("gold/eval_next").count() > 0 and want.read("gold/sequences").count() > 0
        for table in GOLD_AND_SILVER:
            assert_df_equality(got.read(table), want.read(table), ignore_row_order=True)


def test_every_gold_table_reads_the_shared_inputs_the_build_cached_and_they_are_released(spark, tmp_path):
    lastfm_log(tmp_path / "log.tsv")
    cfg = config(tmp_path / "lh", "split.test_days=1", "split.validation_days=1")
    ingest.run(spark, cfg, "lastfm1k", [str(tmp_path / "log.tsv")])
    result = build.run(spark, cfg)
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    inputs = gold_inputs(lakehouse.read("silver/plays"), cfg.features, result.cutoff_ts, partitions=2)
    try:
        train_rows = build.cache_gold_inputs(inputs)
        assert train_rows == lakehouse.read("gold/sequences").where(F.col(S.SPLIT) == S.TRAIN).count() > 0
        tables = gold_tables(inputs, cfg.features, train_rows)
        assert set(tables) == set(build.GOLD)
        for name, frame in tables.items():  # each reads the cache, none computes the plays again
            assert "InMemoryTableScan" in frame._jdf.queryExecution().executedPlan().toString(), name
    finally:
        for frame in inputs.shared:
            frame.unpersist()
    assert all(not frame.is_cached for frame in inputs.shared)


def test_two_sources_in_one_lakehouse_never_share_a_user_track_or_session(spark, tmp_path):
    # MovieLens user 1 rates item 50, Piki user 1 likes song 50, minutes apart: other people,
    # other tracks. The events format's ids are global and stay as written.
    (tmp_path / "u.data").write_text("1\t50\t5\t1700000000\n1\t51\t1\t1700000060\n2\t50\t4\t1700000100\n")
    (tmp_path / "piki.csv").write_text(
        "id,liked,personalized,song_id,spotify_popularity,timestamp,user_id\n"
        "0,1,1,50,87,2023-11-14 22:14:00,1\n"
        "1,0,1,52,45,2023-11-14 22:15:10,1\n"
    )
    (tmp_path / "events.csv").write_text("user_id,ts,track_id,feedback\nu9,2023-11-14T22:16:00,50,up\n")
    cfg = config(tmp_path / "lh", "split.test_days=1")
    ingest.run(spark, cfg, "movielens", [str(tmp_path / "u.data")])
    ingest.run(spark, cfg, "piki", [str(tmp_path / "piki.csv")])
    ingest.run(spark, cfg, "events", [str(tmp_path / "events.csv")])
    build.run(spark, cfg)
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))

    events = lakehouse.read("bronze/events")
    assert {(r[S.SOURCE], r[S.USER_ID], r[S.TRACK_ID]) for r in events.collect()} == {
        ("movielens", "movielens:1", "movielens:50"),
        ("movielens", "movielens:1", "movielens:51"),
        ("movielens", "movielens:2", "movielens:50"),
        ("piki", "piki:1", "piki:50"),
        ("piki", "piki:1", "piki:52"),
        ("events", "u9", "50"),
    }
    tracks = {r[S.TRACK_ID]: r[S.PLAY_COUNT] for r in lakehouse.read("gold/tracks").collect()}
    assert tracks == {"movielens:50": 2, "movielens:51": 1, "piki:50": 1, "piki:52": 1, "50": 1}
    sessions = (
        lakehouse.read("silver/plays")
        .groupBy(S.SESSION_ID)
        .agg(F.countDistinct(S.SOURCE).alias("sources"), F.count(F.lit(1)).alias("plays"))
    )
    assert {r["sources"] for r in sessions.collect()} == {1}
    assert sessions.count() == 4  # movielens:1, movielens:2, piki:1, u9


def every_15_minutes(user: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    rows, ts = [], start
    while ts <= end:
        rows.append(f"{user},{ts.isoformat()},t{ts.minute // 15 + ts.hour % 3},up")
        ts += dt.timedelta(minutes=15)
    return rows


def test_a_session_that_now_starts_in_the_range_and_runs_past_it_rebuilds_silver_in_full(spark, tmp_path):
    # u1 listens without a break from 3 Jan to 7 Jan: one session. Plays on the evening of 2 Jan
    # arrive later and move that session's start (its id) and every position in it, up to 7 Jan,
    # far past the range a rebuild of 2 Jan replaces (1 .. 3 Jan).
    header = "user_id,ts,track_id,feedback\n"
    later = every_15_minutes("u1", dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 7, 23, 45))
    other = every_15_minutes("u2", dt.datetime(2024, 1, 5, 9), dt.datetime(2024, 1, 5, 10))
    earlier = every_15_minutes("u1", dt.datetime(2024, 1, 2, 20), dt.datetime(2024, 1, 2, 23, 45))
    (tmp_path / "first.csv").write_text(header + "\n".join(later + other) + "\n")
    (tmp_path / "late.csv").write_text(header + "\n".join(earlier) + "\n")
    cfg = config(tmp_path / "lh", "split.test_days=1")
    ingest.run(spark, cfg, "events", [str(tmp_path / "first.csv")])
    build.run(spark, cfg)
    ingest.run(spark, cfg, "events", [str(tmp_path / "late.csv")])
    build.run(spark, cfg, dt.date(2024, 1, 2), dt.date(2024, 1, 2))

    full = config(tmp_path / "full", "split.test_days=1")
    ingest.run(spark, full, "events", [str(tmp_path / "first.csv"), str(tmp_path / "late.csv")])
    build.run(spark, full)
    got, want = Lakehouse(spark, str(tmp_path / "lh")), Lakehouse(spark, str(tmp_path / "full"))
    assert got.history("silver/plays", limit=1)[0]["downbeat.operation"] == "overwrite"
    u1 = got.read("silver/plays").where(F.col(S.USER_ID) == "u1")
    assert {r[0] for r in u1.select(S.SESSION_ID).distinct().collect()} == {"u1@20240102T200000.000000"}
    assert sorted(r[0] for r in u1.select(S.POSITION).collect()) == list(range(u1.count()))
    for table in GOLD_AND_SILVER:
        assert_df_equality(got.read(table), want.read(table), ignore_row_order=True)


def test_ingest_names_every_file_with_no_valid_row_exits_2_and_writes_nothing(spark, tmp_path, capsys):
    (tmp_path / "good.tsv").write_text("u1\t2009-05-04T10:00:00Z\ta\tArtist\tt1\tOne\n")
    (tmp_path / "bad.tsv").write_text("u1,2009-05-04,t1\nu2,2009-05-04,t2\n")  # not Last.fm's shape
    (tmp_path / "worse.tsv").write_text("u1\tyesterday\ta\tArtist\tt1\tOne\n")
    root = tmp_path / "lh"
    args = ["--set", f"lakehouse.root={root}", "ingest", "--format", "lastfm1k", "--input"]
    files = [str(tmp_path / n) for n in ("good.tsv", "bad.tsv", "worse.tsv")]
    capsys.readouterr()

    assert main([*args, *files]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("downbeat: error: no row is valid lastfm1k in 2 of 3 input")
    assert (
        f"{tmp_path / 'bad.tsv'} (line 1: expected 6 tab-separated fields, found 1; 2 rows rejected)"
        in err[0]
    )
    assert f"{tmp_path / 'worse.tsv'} (line 1: timestamp 'yesterday' is not ISO-8601 UTC" in err[0]
    assert str(tmp_path / "good.tsv") not in err[0]
    lakehouse = Lakehouse(spark, str(root))
    assert not lakehouse.exists("bronze/events") and not lakehouse.exists("bronze/quarantine")
    # the good file alone goes in
    assert main([*args, files[0]]) == 0
    assert lakehouse.read("bronze/events").count() == 1


def test_ingest_keeps_one_event_of_exact_duplicate_rows_and_the_hash_pass_tells_which_input_has_them(
    spark, tmp_path
):
    from downbeat.pipelines.sources import ADAPTERS, has_duplicates

    line = "u1\t2009-05-04T10:00:00Z\ta\tArtist\tt1\tOne\n"
    other = "u1\t2009-05-04T10:05:00Z\ta\tArtist\tt2\tTwo\n"
    (tmp_path / "twice.tsv").write_text(line + other + line)
    (tmp_path / "once.tsv").write_text(line + other)
    cfg = config(tmp_path / "lh")
    parse = ADAPTERS["lastfm1k"]
    assert has_duplicates(parse(spark, [str(tmp_path / "twice.tsv")], cfg.sources), "lastfm1k")
    assert not has_duplicates(parse(spark, [str(tmp_path / "once.tsv")], cfg.sources), "lastfm1k")
    # the same line in two files is one event too
    both = [str(tmp_path / "once.tsv"), str(tmp_path / "twice.tsv")]
    assert has_duplicates(parse(spark, both, cfg.sources), "lastfm1k")

    result = ingest.run(spark, cfg, "lastfm1k", [str(tmp_path / "twice.tsv")])
    assert result.accepted == 3
    events = Lakehouse(spark, str(tmp_path / "lh")).read("bronze/events")
    assert events.count() == 2 and events.select(S.EVENT_ID).distinct().count() == 2


def test_a_session_gap_of_a_day_or_more_rebuilds_silver_in_full(spark, tmp_path):
    rows = every_15_minutes("u1", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 1))
    rows += every_15_minutes("u1", dt.datetime(2024, 1, 3), dt.datetime(2024, 1, 3, 1))
    (tmp_path / "log.csv").write_text("user_id,ts,track_id,feedback\n" + "\n".join(rows) + "\n")
    cfg = config(tmp_path / "lh", "split.test_days=1", "sessions.gap_minutes=1500")
    ingest.run(spark, cfg, "events", [str(tmp_path / "log.csv")])
    build.run(spark, cfg)
    build.run(spark, cfg, dt.date(2024, 1, 3), dt.date(2024, 1, 3))
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    # a day of context cannot see a session that may reach across one: the whole table again
    assert lakehouse.history("silver/plays", limit=1)[0]["downbeat.operation"] == "overwrite"


def test_a_movielens_log_under_leave_one_out_trains_and_ranks_its_films_without_the_rated_ones(
    spark, tmp_path, capsys
):
    # 4 users rate 5 films each, one per minute; film 1 is everyone's first; the last rating of each
    # user is the test target, the one before it the validation target
    lines = [
        f"{u}::{(u + i) % 7 + 1}::5::{1_000_000 + 60 * (10 * u + i)}" for u in range(4) for i in range(5)
    ]
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n9::1::5::1\n9::2::4::2\n")  # user 9: 2 only
    values = [
        f"lakehouse.root={tmp_path / 'lh'}",
        f"mlflow.tracking_uri=sqlite:///{tmp_path / 'm.db'}",
        f"mlflow.artifact_root={tmp_path / 'art'}",
        f"train.checkpoint_dir={tmp_path / 'ck'}",
        "spark.log_level=ERROR",
        "split.protocol=leave_one_out",
    ]
    common = [x for v in values for x in ("--set", v)]
    assert main([*common, "ingest", "--format", "movielens", "--input", str(tmp_path / "ratings.dat")]) == 0
    capsys.readouterr()
    assert main([*common, "build", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "each user's last play is the test target (leave-one-out)" in out[0]
    assert json.loads(out[-1])["cutoff"] is None
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    targets = {r[S.USER_ID]: r for r in lakehouse.read("gold/eval_next").collect()}
    assert set(targets) == {f"movielens:{u}" for u in range(4)}  # user 9 has fewer than 3 ratings
    for u in range(4):
        row = targets[f"movielens:{u}"]
        assert row[S.TRACK_ID] == f"movielens:{(u + 4) % 7 + 1}" and row[S.HISTORY_LENGTH] == 4
        # films are rated once: every film the user rated before is out of the ranking
        assert len(row[S.EXCLUDE_TRACK_IDS]) == 4 and len(set(row[S.HISTORY_TRACK_IDS])) == 4
    assert lakehouse.read("gold/eval_pairs").count() == 0  # one target each: no pairs
    assert main([*common, "train", "--model", "popularity", "--json"]) == 0
    assert main([*common, "evaluate", "--model-uri", "models:/downbeat@champion", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["next_users_scored"] == 4 and metrics["next_users_cold"] == 0
    assert metrics["paired_accuracy"] is None and metrics["pairs"] == 0
    # training counts (each user's first 3 films): f1 1, f2 2, f3 3, f4 3, f5 2, f6 1, f7 0; of the 3
    # films a user has not rated, the targets rank 1 (f5), 2 (f6, tied with f1), 3 (f7) and 3 (f1)
    assert metrics["hr@1_pos"] == 0.25 and metrics["hr@5_pos"] == metrics["hr@10_pos"] == 1.0
