"""Source adapters on hand-written fixtures in each format; the real samples when ../shared is there."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sources import (
    ADAPTERS,
    GLOBAL_IDS,
    MovielensSettings,
    MssdSettings,
    SourceSettings,
    events,
    rejects,
)

SETTINGS = SourceSettings(MovielensSettings(up_min=4, down_max=2), MssdSettings(skip_column="skip_2"))
DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def ingest(spark, fmt: str, *paths: Path):
    """Accepted events (ids as the source wrote them) and rejected (file, line, reason), sorted.

    Checks on the way that bronze/events namespaces every id the format does not declare global.
    """
    parsed = ADAPTERS[fmt](spark, [str(p) for p in paths], SETTINGS)
    columns = (S.USER_ID, S.TS, S.TRACK_ID, S.STATION_ID, S.FEEDBACK, S.MS_PLAYED)
    accepted = []
    for r in events(parsed, fmt, GLOBAL_IDS[fmt]).collect():
        values = []
        for c in columns:
            value = r[c]
            if c in (S.USER_ID, S.TRACK_ID, S.STATION_ID) and c not in GLOBAL_IDS[fmt] and value is not None:
                assert value.startswith(f"{fmt}:"), (c, value)
                value = value.removeprefix(f"{fmt}:")
            values.append(value)
        accepted.append(tuple(values))
    rejected = sorted((Path(r["file"]).name, r["line"], r["reason"]) for r in rejects(parsed, fmt).collect())
    return sorted(accepted), rejected


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args)


def test_lastfm1k_falls_back_to_artist_and_title_and_rejects_bad_lines(spark, tmp_path):
    f = tmp_path / "lfm.tsv"
    f.write_text(
        "user_1\t2009-05-04T23:08:57Z\tart1\tDeep Dish\ttr-1\tSong\n"
        "user_1\t2009-05-04T13:54:10Z\tart2\t坂本龍一\t\tComposition 0919\n"
        "user_1\t2009-05-04T13:54:10Z\tart2\t坂本龍一\t\tcomposition 0919 \n"  # same track, other case
        "user_2\tyesterday\tart1\tDeep Dish\ttr-1\tSong\n"
        "user_2\t2009-05-04T13:54:10Z\tart1\n",
        encoding="utf-8",
    )
    accepted, rejected = ingest(spark, "lastfm1k", f)
    derived = {r[2] for r in accepted if r[2] != "tr-1"}
    assert len(derived) == 1 and next(iter(derived)).startswith("lfm:")
    assert [(r[0], r[1], r[4]) for r in accepted] == [
        ("user_1", utc(2009, 5, 4, 13, 54, 10), None),
        ("user_1", utc(2009, 5, 4, 23, 8, 57), None),
    ]  # the two derived-id rows are one event: same user, time and (derived) track
    assert rejected == [
        ("lfm.tsv", 4, "timestamp 'yesterday' is not ISO-8601 UTC"),
        ("lfm.tsv", 5, "expected 6 tab-separated fields, found 3"),
    ]


def test_mssd_reads_both_date_styles_and_both_boolean_spellings(spark, tmp_path):
    f = tmp_path / "log.csv"
    f.write_text(
        "session_id,session_position,session_length,track_id_clean,skip_1,skip_2,hour_of_day,date,context_type\n"
        "s1,1,3,t_a,False,False,16,15-07-18,editorial_playlist\n"
        "s1,2,3,t_b,true,true,16,2018-07-15,editorial_playlist\n"
        "s1,3,3,t_c,False,maybe,16,2018-07-15,\n"
        "s2,1,1,t_d,False,False,16,07/15/2018,catalog\n"
    )
    accepted, rejected = ingest(spark, "mssd", f)
    assert accepted == [
        ("s1", utc(2018, 7, 15, 16, 0), "t_a", "editorial_playlist", None, None),
        ("s1", utc(2018, 7, 15, 16, 1), "t_b", "editorial_playlist", "skip", None),
    ]
    assert rejected == [
        ("log.csv", 4, "skip_2 'maybe' is not true or false"),
        ("log.csv", 5, "date '07/15/2018' is neither yyyy-mm-dd nor dd-mm-yy"),
    ]


def test_piki_likes_and_super_likes_are_ups_dislikes_downs(spark, tmp_path):
    f = tmp_path / "piki.csv"
    f.write_text(
        "id,liked,personalized,song_id,spotify_popularity,timestamp,user_id\n"
        "0,0,1,32192,87,2019-06-21 01:04:23,37\n"
        "1,2,1,6801,45,2019-06-21 01:04:33,37\n"
        "2,1,0,31643,62,2019-06-21 01:04:35,38\n"
        "3,5,0,31643,62,2019-06-21 01:04:35,38\n"
    )
    accepted, rejected = ingest(spark, "piki", f)
    assert accepted == [
        ("37", utc(2019, 6, 21, 1, 4, 23), "32192", None, "down", None),
        ("37", utc(2019, 6, 21, 1, 4, 33), "6801", None, "up", None),
        ("38", utc(2019, 6, 21, 1, 4, 35), "31643", None, "up", None),
    ]
    assert rejected == [("piki.csv", 5, "liked '5' is not 0, 1 or 2")]


def test_movielens_thresholds_and_first_genre_as_station(spark, tmp_path):
    (tmp_path / "u.data").write_text(
        "196\t242\t3\t881250949\n186\t302\t5\t891717742\n22\t242\t1\t878887116\n9\t1\t7\t1\n"
    )
    (tmp_path / "u.genre").write_text("unknown|0\nAction|1\nComedy|2\n\n")
    (tmp_path / "u.item").write_bytes(
        "242|Kolya (1996)|24-Jan-1997||http://x|0|0|1\n302|L.A. Confidential|01-Jan-1997||http://y|0|1|1\n".encode(
            "latin-1"
        )
    )
    accepted, rejected = ingest(spark, "movielens", tmp_path / "u.data")
    assert accepted == [
        (
            "186",
            dt.datetime.fromtimestamp(891717742, dt.UTC).replace(tzinfo=None),
            "302",
            "Action",
            "up",
            None,
        ),
        (
            "196",
            dt.datetime.fromtimestamp(881250949, dt.UTC).replace(tzinfo=None),
            "242",
            "Comedy",
            "play",
            None,
        ),
        (
            "22",
            dt.datetime.fromtimestamp(878887116, dt.UTC).replace(tzinfo=None),
            "242",
            "Comedy",
            "down",
            None,
        ),
    ]
    assert rejected == [("u.data", 4, "rating '7' is not 0.5..5 in half stars")]


def test_movielens_1m_ratings_dat_with_latin_1_movies_dat(spark, tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::9::x::1\n")
    # 0x85 (cp1252's ellipsis) is no line end; CRLF is
    movies = (
        "1193::One Flew Over the Cuckoo's Nest\x85 (1975)::Drama\r\n"
        "661::Pokémon (1999)::Animation|Children's\n"
    )
    (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    accepted, rejected = ingest(spark, "movielens", tmp_path / "ratings.dat")
    assert accepted == [
        ("1", dt.datetime.fromtimestamp(978300760, dt.UTC).replace(tzinfo=None), "1193", "Drama", "up", None),
        (
            "1",
            dt.datetime.fromtimestamp(978302109, dt.UTC).replace(tzinfo=None),
            "661",
            "Animation",
            "play",
            None,
        ),
    ]
    assert rejected == [("ratings.dat", 3, "rating 'x' is not 0.5..5 in half stars")]


def test_movielens_20m_ratings_csv_with_half_stars_its_header_and_quoted_movies_csv(spark, tmp_path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,4.5,1112484676\n"
        "7,2,1.0,1112484580\n7,29,4.25,1\n7;29;4;1\n"
    )
    (tmp_path / "movies.csv").write_text(
        'movieId,title,genres\n2,"Jumanji, the game (1995)",Adventure|Children\n'
        "29,X (1995),(no genres listed)\n"
    )
    accepted, rejected = ingest(spark, "movielens", tmp_path / "ratings.csv")
    at = lambda s: dt.datetime.fromtimestamp(s, dt.UTC).replace(tzinfo=None)  # noqa: E731
    assert accepted == [
        ("1", at(1112484676), "29", None, "up", None),
        ("1", at(1112486027), "2", "Adventure", "play", None),
        ("7", at(1112484580), "2", "Adventure", "down", None),
    ]
    assert rejected == [
        ("ratings.csv", 5, "rating '4.25' is not 0.5..5 in half stars"),
        ("ratings.csv", 6, "no '::', tab or comma between fields: not a MovieLens ratings line"),
    ]


def test_events_in_csv_json_lines_and_parquet(spark, tmp_path):
    (tmp_path / "a.csv").write_text(
        "user_id,ts,track_id,station_id,feedback,ms_played\n"
        'u1,2024-01-01T10:00:00Z,t1,"rock, indie",up,180000\n'
        "u1,2024-01-01 10:05:00,t2,,,\nu1,2024-01-01T10:06:00Z,t3,,meh,\n"
    )
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"user_id": "u2", "ts": "2024-01-01T11:00:00+01:00", "track_id": "t1", "ms_played": 5000})
        + "\n{broken\n"
    )
    pq.write_table(
        pa.table(
            {
                "user_id": ["u3", ""],
                "ts": pa.array(
                    [dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 2)], pa.timestamp("us", tz="UTC")
                ),
                "track_id": ["t9", "t9"],
            }
        ),
        tmp_path / "c.parquet",
    )
    accepted, rejected = ingest(
        spark, "events", tmp_path / "a.csv", tmp_path / "b.jsonl", tmp_path / "c.parquet"
    )
    assert accepted == [
        ("u1", utc(2024, 1, 1, 10, 0), "t1", "rock, indie", "up", 180000),
        ("u1", utc(2024, 1, 1, 10, 5), "t2", None, None, None),
        ("u2", utc(2024, 1, 1, 10, 0), "t1", None, None, 5000),
        ("u3", utc(2024, 1, 2), "t9", None, None, None),
    ]
    assert rejected == [
        ("a.csv", 4, "feedback 'meh' is not one of up, down, skip, play"),
        ("b.jsonl", 2, "not a JSON object"),
        ("c.parquet", 2, "empty user_id"),
    ]


@pytest.mark.parametrize("fmt", ["events", "mssd"])
def test_the_filters_on_the_reason_carry_each_check_once(spark, tmp_path, fmt):
    """Spark substitutes a column's expression into every filter on it: a field or check built on
    the reason copied the whole chain into the filter on accepted rows (events(), has_duplicates),
    and a predicate that long ran without the JIT (both took 4-5x as long at 10M rows)."""
    from downbeat.pipelines.sources import IngestSettings, parse

    if fmt == "events":
        path, marker = tmp_path / "a.csv", "is not an ISO-8601 time"
        path.write_text("user_id,ts,track_id\nu1,2024-01-01T10:00:00Z,t1\n")
    else:
        path, marker = tmp_path / "a.csv", "is not 0..23"
        path.write_text(
            "session_id,session_position,track_id_clean,skip_2,hour_of_day,date,context_type\n"
            "s1,1,t_a,false,16,2018-07-15,editorial_playlist\n"
        )
    window = IngestSettings(min_ts="1970-01-01", max_ts="2100-01-01")
    parsed = parse(fmt, spark, [str(path)], SETTINGS, window)
    plan = events(parsed, fmt, GLOBAL_IDS[fmt])._jdf.queryExecution().optimizedPlan().toString()
    filters = [line for line in plan.splitlines() if line.lstrip(" +-:").startswith("Filter ")]
    filters = [line for line in filters if marker in line]
    assert len(filters) == 1, f"one filter holds the checks (the filter on the reason, pushed down): {plan}"
    assert filters[0].count(marker) == 1
    assert "ts_out_of_range" in filters[0] and "invalid_utf8" in filters[0]
    assert events(parsed, fmt, GLOBAL_IDS[fmt]).count() == 1


def test_an_adapters_reason_comes_first_then_ids_that_are_not_utf8_then_the_window(spark, tmp_path):
    from downbeat.pipelines.sources import IngestSettings, parse

    path = tmp_path / "a.csv"
    path.write_bytes(
        b"user_id,ts,track_id,feedback\n"
        b"u\xff1,1900-01-01T00:00:00Z,t1,meh\n"  # the adapter's check, an id, the window
        b"u\xff2,1900-01-01T00:00:00Z,t1,up\n"  # an id and the window
        b"u3,1900-01-01T00:00:00Z,t1,up\n"  # the window
        b"u4,2024-01-01T00:00:00Z,t1,up\n"
    )
    window = IngestSettings(min_ts="1970-01-01", max_ts="2100-01-01")
    parsed = parse("events", spark, [str(path)], SETTINGS, window)
    rows = parsed.collect()
    assert sorted((r["line"], r["reason"] and r["reason"].split(":")[0], r[S.TS]) for r in rows) == [
        (2, "feedback 'meh' is not one of up, down, skip, play", None),
        (3, "invalid_utf8", None),
        (4, "ts_out_of_range", None),
        (5, None, utc(2024, 1, 1)),
    ]


def test_events_csv_files_read_per_header_each_by_its_own_column_positions(spark, tmp_path):
    """Files sharing a header are read together; a file whose columns are in another order keeps its own."""
    (tmp_path / "a.csv").write_text("user_id,ts,track_id,feedback\nu1,2024-01-01T10:00:00Z,t1,up\n")
    (tmp_path / "b.csv").write_text(
        "\ufefftrack_id,feedback,user_id,ts\r\nt2,down,u2,2024-01-02T10:00:00Z\r\n"
    )
    (tmp_path / "c.csv").write_text(
        "user_id,ts,track_id,feedback\nu3,2024-01-03T10:00:00Z,t3,skip\nu3,x,t3,\n"
    )

    accepted, rejected = ingest(spark, "events", *(tmp_path / n for n in ("a.csv", "b.csv", "c.csv")))

    assert accepted == [
        ("u1", utc(2024, 1, 1, 10), "t1", None, "up", None),
        ("u2", utc(2024, 1, 2, 10), "t2", None, "down", None),
        ("u3", utc(2024, 1, 3, 10), "t3", None, "skip", None),
    ]
    assert [(name, line) for name, line, _ in rejected] == [("c.csv", 3)]


def test_a_csv_field_longer_than_the_parsers_buffer_is_read_whole(spark, tmp_path):
    from downbeat.pipelines.sources._common import CSV_BUFFER_CHARS

    station = "a, " * CSV_BUFFER_CHARS + 'and a ""quote""'  # three buffers long, commas inside
    (tmp_path / "a.csv").write_text(
        f'user_id,ts,track_id,station_id\nu1,2024-01-01T10:00:00Z,t1,"{station}"\n'
    )

    accepted, rejected = ingest(spark, "events", tmp_path / "a.csv")

    assert rejected == [] and [row[3] for row in accepted] == [station.replace('""', '"')]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_events_parquet_times_are_read_in_the_unit_their_column_declares(spark, tmp_path, unit):
    """Arrow and pandas write nanoseconds by default; seconds, milliseconds and microseconds too."""
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    for zone in (None, "UTC"):
        pq.write_table(
            pa.table(
                {
                    "user_id": [f"u-{zone}"],
                    "ts": pa.array([when], pa.timestamp(unit, tz=zone)),
                    "track_id": ["t1"],
                }
            ),
            tmp_path / f"{zone}.parquet",
        )
    pq.write_table(  # a file in microseconds read beside them
        pa.table({"user_id": ["u-us"], "ts": pa.array([when], pa.timestamp("us")), "track_id": ["t2"]}),
        tmp_path / "other.parquet",
    )

    accepted, rejected = ingest(
        spark, "events", *(tmp_path / n for n in ("None.parquet", "UTC.parquet", "other.parquet"))
    )

    assert [(user, ts, track) for user, ts, track, *_ in accepted] == [
        ("u-None", when, "t1"),
        ("u-UTC", when, "t1"),
        ("u-us", when, "t2"),
    ]
    assert rejected == []


REAL = [
    ("lastfm1k", "lastfm1k_head/myluco_head5000_userid-timestamp-artid-artname-traid-traname.tsv", 5000, 0),
    ("mssd", "mssd_sample/very_small.csv", 201, 0),
    ("piki", "piki_sample/piki_dataset_500rows.csv", 500, 0),
    ("movielens", "movielens_100k/u.data", 100_000, 0),
    ("movielens", "movielens_1m_part/ratings.dat", 401_983, 0),
]


@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"real samples not found at {DATASETS}")
@pytest.mark.parametrize(("fmt", "path", "accepted", "rejected"), REAL)
def test_real_samples_parse_completely(spark, fmt, path, accepted, rejected):
    parsed = ADAPTERS[fmt](spark, [str(DATASETS / path)], SETTINGS)
    found = (events(parsed, fmt, GLOBAL_IDS[fmt]).count(), rejects(parsed, fmt).count())
    assert found == (accepted, rejected)


def test_bronze_rows_carry_a_stable_event_id_and_quarantine_rows_their_file_line_and_raw_text(
    spark, tmp_path
):
    from chispa import assert_df_equality

    f = tmp_path / "log.tsv"
    f.write_text("u1\t2009-05-04T23:59:59Z\ta\tArtist\tt1\tOne\nu1\t2009-05-05T00:00:10Z\ta\tArtist\n")
    parsed = ADAPTERS["lastfm1k"](spark, [str(f)], SETTINGS)
    ts = dt.datetime(2009, 5, 4, 23, 59, 59)
    # the id is SHA-256 over source, user, time (UTC, microseconds), track, station, session,
    # feedback, ms_played joined by U+001F, nulls as empty: anyone can recompute it. The user id is
    # stored as `lastfm1k:u1` (Last.fm's user ids are its own); the track id, a MusicBrainz id, as is.
    identity = "\u001f".join(["lastfm1k", "u1", "2009-05-04T23:59:59.000000", "t1", "", "", "", ""])
    event_id = hashlib.sha256(identity.encode()).hexdigest()
    want = spark.createDataFrame(
        [("lastfm1k:u1", ts, "t1", None, None, None, None, "lastfm1k", event_id, ts.date())], S.EVENTS
    )
    assert_df_equality(events(parsed, "lastfm1k", GLOBAL_IDS["lastfm1k"]), want, ignore_nullable=True)
    row_id = hashlib.sha256("\u001f".join(["lastfm1k", str(f), "2"]).encode()).hexdigest()
    want_rejects = spark.createDataFrame(
        [
            (
                "lastfm1k",
                str(f),
                2,
                "expected 6 tab-separated fields, found 4",
                "u1\t2009-05-05T00:00:10Z\ta\tArtist",
                row_id,
            )
        ],
        S.QUARANTINE,
    )
    assert_df_equality(rejects(parsed, "lastfm1k"), want_rejects, ignore_nullable=True)
