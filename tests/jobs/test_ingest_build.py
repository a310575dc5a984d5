"""ingest and build end to end on tiny logs in tmp_path: idempotence, bad input, incremental rebuilds."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from downbeat.jobs import build, ingest
from downbeat.jobs.cli import main
from downbeat.jobs.config import load_config
from downbeat.pipelines import schemas as S
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.synthetic import SynthSettings, synthetic_events

LASTFM = (
    "u1\t2009-05-04T10:00:00Z\ta\tArtist\tt1\tOne\n"
    "u1\t2009-05-04T10:00:20Z\ta\tArtist\t\tTwo\n"
    "u1\t2009-05-04T10:04:00Z\ta\tArtist\tt3\tThree\n"
    "u1\tnot a time\ta\tArtist\tt3\tThree\n"
)


def config(root, *more: str):
    return load_config(None, [f"lakehouse.root={root}", "spark.log_level=ERROR", *more])


def test_ingesting_the_same_file_twice_leaves_the_tables_content_unchanged(spark, tmp_path):
    log = tmp_path / "log.tsv"
    log.write_text(LASTFM)
    cfg = config(tmp_path / "lh")
    first = ingest.run(spark, cfg, "lastfm1k", [str(log)])
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    before = lakehouse.read("bronze/events").orderBy(S.EVENT_ID).collect()
    quarantined = lakehouse.read("bronze/quarantine").collect()
    second = ingest.run(spark, cfg, "lastfm1k", [str(log)])
    assert (first.accepted, first.rejected, second.accepted, second.rejected) == (3, 1, 3, 1)
    assert lakehouse.read("bronze/events").orderBy(S.EVENT_ID).collect() == before
    assert lakehouse.read("bronze/quarantine").collect() == quarantined
    assert [(r["line"], r["reason"]) for r in quarantined] == [
        (4, "timestamp 'not a time' is not ISO-8601 UTC")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "lastfm1k", "--input", "{tmp}/missing.tsv"], "input file {tmp}/missing.tsv not found"),
        (
            ["--format", "piki", "--input", "{tmp}/log.tsv"],
            "header lacks column(s) liked, song_id, timestamp",
        ),
        (
            ["--format", "movielens", "--input", "{tmp}/log.tsv"],
            "line 1: expected 4 tab-separated fields, found 6",
        ),
        (
            ["--format", "events", "--input", "{tmp}/log.tsv"],
            "cannot tell its format from the extension '.tsv'",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_tables_as_they_were(
    spark, tmp_path, capsys, args, message
):
    (tmp_path / "log.tsv").write_text(LASTFM)
    root = tmp_path / "lh"
    assert (
        main(
            [
                "--set",
                f"lakehouse.root={root}",
                "ingest",
                "--format",
                "lastfm1k",
                "--input",
                str(tmp_path / "log.tsv"),
            ]
        )
        == 0
    )
    lakehouse = Lakehouse(spark, str(root))
    versions = (lakehouse.version("bronze/events"), lakehouse.version("bronze/quarantine"))
    capsys.readouterr()
    code = main(["--set", f"lakehouse.root={root}", "ingest", *[a.format(tmp=tmp_path) for a in args]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("downbeat: error: ") and message.format(tmp=tmp_path) in err[-1]
    assert (lakehouse.version("bronze/events"), lakehouse.version("bronze/quarantine")) == versions


BAD_SPLIT_KEYS = {
    "split.validation_days=0": "config key 'split.validation_days' must be at least 1, got 0",
    "split.test_days=0": "config key 'split.test_days' must be at least 1, got 0",
    "split.cutoff_date=soon": "config key 'split.cutoff_date' must be YYYY-MM-DD, got 'soon'",
}


def test_a_bad_split_key_exits_2_before_any_table_is_written(spark, tmp_path, capsys):
    root = tmp_path / "lh"
    log = tmp_path / "log.tsv"
    log.write_text(LASTFM)
    common = ["--set", f"lakehouse.root={root}", "--set", "spark.log_level=ERROR"]
    capsys.readouterr()
    assert main([*common, "ingest", "--format", "lastfm1k", "--input", str(log), "--json"]) == 0
    ingested = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main([*common, "build", "--json"]) == 0
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lakehouse = Lakehouse(spark, str(root))
    before = {t: lakehouse.version(t) for t in ("silver/plays", *build.GOLD)}
    # the run summaries a scheduler reads: what each job committed, at which version, with its rows
    assert ingested["job"] == "ingest" and ingested["files"] == [str(log)] and ingested["seconds"] > 0
    assert ingested["tables"]["bronze/events"] == {"version": 0, "rows": ingested["accepted"]}
    assert ingested["tables"]["bronze/quarantine"] == {"version": 0, "rows": ingested["rejected"]}
    assert ingested["rejected"] > 0
    assert built["job"] == "build" and built["silver_range"] is None
    assert {t: v["version"] for t, v in built["tables"].items()} == before
    assert {t: v["rows"] for t, v in built["tables"].items()} == {t: lakehouse.rows(t) for t in before}
    for key, message in BAD_SPLIT_KEYS.items():  # each against the same built tables
        assert main([*common, "--set", key, "build"]) == 2, key
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"downbeat: error: {message}"
        assert {t: lakehouse.version(t) for t in before} == before, key


def test_build_without_events_is_a_one_line_error(tmp_path, capsys):
    assert main(["--set", f"lakehouse.root={tmp_path}", "build"]) == 2
    assert "table bronze/events does not exist" in capsys.readouterr().err.strip().splitlines()[-1]


GOLD_AND_SILVER = ("silver/plays", *build.GOLD)


def test_incremental_rebuild_ends_identical_to_a_full_build(spark, tmp_path):
    settings = SynthSettings(users=12, days=12, stations=3, tracks_per_station=20, seed=3, partitions=2)
    synthetic_events(spark, settings).write.parquet(str(tmp_path / "all"))
    raw = spark.read.parquet(str(tmp_path / "all"))
    late_from = dt.date(2024, 1, 10)
    raw.where(F.to_date(S.TS) < F.lit(late_from)).write.parquet(str(tmp_path / "early"))
    raw.where(F.to_date(S.TS) >= F.lit(late_from)).write.parquet(str(tmp_path / "late"))
    # rows as wide as the build keeps (sequences.max_length), whatever the model reads
    extra = ("split.test_days=3", "sequences.max_length=60", "model.max_length=20")

    incremental = config(tmp_path / "inc", *extra)
    ingest.run(spark, incremental, "events", [str(tmp_path / "early")])
    build.run(spark, incremental)
    ingest.run(spark, incremental, "events", [str(tmp_path / "late")])
    result = build.run(spark, incremental, late_from, dt.date(2024, 1, 12))
    assert result.silver_range == (dt.date(2024, 1, 9), dt.date(2024, 1, 13))

    full = config(tmp_path / "full", *extra)
    ingest.run(spark, full, "events", [str(tmp_path / "all")])
    build.run(spark, full)

    a, b = Lakehouse(spark, str(tmp_path / "inc")), Lakehouse(spark, str(tmp_path / "full"))
    assert a.read("gold/sequences").count() > 0 and a.read("gold/eval_next").count() > 0
    for table in GOLD_AND_SILVER:
        assert_df_equality(a.read(table), b.read(table), ignore_row_order=True)
    # gold/training_sequences: the train rows of gold/sequences, fixed width, a row group per file,
    # uncompressed (the loader's decoding is its bottleneck)
    training = b.read("gold/training_sequences")
    assert training.count() == b.read("gold/sequences").where(F.col(S.SPLIT) == S.TRAIN).count() > 0
    width = 60
    assert {r[0] for r in training.select(F.length(S.TRACK_IDS)).distinct().collect()} == {4 * width}
    assert {r[0] for r in training.select(F.length(S.FEEDBACK_IDS_COL)).distinct().collect()} == {width}
    for url in b.snapshot("gold/training_sequences")[1]:
        meta = pq.ParquetFile(url.removeprefix("file://")).metadata
        assert meta.num_row_groups == 1
        assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"UNCOMPRESSED"}
    # the incremental run replaced only the affected partitions of silver/plays
    last = a.history("silver/plays", limit=1)[0]
    assert last["downbeat.operation"] == "replace_range"
    assert int(last["downbeat.rows"]) < b.read("silver/plays").count()


def test_incremental_rebuild_falls_back_to_full_when_a_session_began_before_its_context(spark, tmp_path):
    start = dt.datetime(2024, 1, 1)
    rows = [f"u1,{(start + dt.timedelta(minutes=15 * i)).isoformat()},t{i % 7},up" for i in range(4 * 96)]
    (tmp_path / "log.csv").write_text("user_id,ts,track_id,feedback\n" + "\n".join(rows) + "\n")
    cfg = config(tmp_path / "lh", "split.test_days=1")
    ingest.run(spark, cfg, "events", [str(tmp_path / "log.csv")])
    build.run(spark, cfg)
    full = Lakehouse(spark, str(tmp_path / "lh")).read("silver/plays").collect()
    build.run(spark, cfg, dt.date(2024, 1, 4), dt.date(2024, 1, 4))
    lakehouse = Lakehouse(spark, str(tmp_path / "lh"))
    # one session of four days: a range rebuild with a day of context would restart it on 2 Jan
    assert lakehouse.history("silver/plays", limit=1)[0]["downbeat.operation"] == "overwrite"
    assert sorted(lakehouse.read("silver/plays").collect()) == sorted(full)
    assert {r[S.SESSION_ID] for r in full} == {"u1@20240101T000000.000000"}
