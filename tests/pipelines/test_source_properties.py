"""Properties of the parsers: random hostile lines mixed into valid ones end with exactly the valid
rows accepted and every other line rejected with a reason, whatever the mix. Each example is a file
of up to 40 lines and one Spark parse: `make test` runs EXAMPLES files per adapter, and
`HYPOTHESIS_PROFILE=thorough` (or `--hypothesis-profile thorough`) the profile's 200."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sources import (
    GLOBAL_IDS,
    IngestSettings,
    MovielensSettings,
    MssdSettings,
    SourceSettings,
    events,
    parse,
    rejects,
)

SETTINGS = SourceSettings(MovielensSettings(up_min=4, down_max=2), MssdSettings(skip_column="skip_2"))
WINDOW = IngestSettings(min_ts="1970-01-01", max_ts="2100-01-01")
EPOCH = dt.datetime(1970, 1, 1)
LATEST = 4102444799  # 2099-12-31T23:59:59Z, the window's last second
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
SECONDS = st.integers(min_value=0, max_value=LATEST)
# a Spark parse an example: under the suite's default profile (25), 12 files an adapter keep `make test`
# inside its half hour; a profile asking for more gets them all
EXAMPLES = 12 if settings.default.max_examples <= 25 else settings.default.max_examples


def outcome(spark, fmt: str, path: Path) -> tuple[set[tuple], set[int], int]:
    """(accepted events as (user, epoch seconds, track, feedback), rejected line numbers, rejected rows)."""
    parsed = parse(fmt, spark, [str(path)], SETTINGS, WINDOW)
    prefix = "" if S.USER_ID in GLOBAL_IDS[fmt] else f"{fmt}:"
    accepted = {
        (r[S.USER_ID].removeprefix(prefix), int(r["s"]), r[S.TRACK_ID].removeprefix(prefix), r[S.FEEDBACK])
        for r in events(parsed, fmt, GLOBAL_IDS[fmt]).selectExpr("*", f"unix_seconds({S.TS}) AS s").collect()
    }
    rejected = [(r["line"], r["reason"]) for r in rejects(parsed, fmt).collect()]
    assert all(reason for _, reason in rejected)
    return accepted, {line for line, _ in rejected}, len(rejected)


def iso(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


# events (CSV): a valid line and the event it is, or a hostile line no reading may accept
VALID_EVENT = st.tuples(IDS, SECONDS, IDS, st.sampled_from(["play", "skip", "up", "down"])).map(
    lambda e: (f"{e[0]},{iso(e[1])},{e[2]},{e[3]}", e)
)
QUOTED_EVENT = st.tuples(IDS, SECONDS, IDS).map(  # RFC 4180: a quoted field holds the delimiter
    lambda e: (f'"{e[0]},x",{iso(e[1])},{e[2]},play', (f"{e[0]},x", e[1], e[2], "play"))
)
HOSTILE_EVENT = st.one_of(
    st.tuples(IDS, IDS).map(lambda e: f"{e[0]},{e[1]}"),  # truncated
    st.tuples(IDS, SECONDS, IDS).map(lambda e: f"{e[0]};{iso(e[1])};{e[2]};play"),  # wrong delimiter
    st.tuples(
        IDS,
        st.sampled_from(
            [
                "0001-01-01T00:00:00Z",
                "10000-01-01T00:00:00Z",
                "1969-12-31T23:59:59Z",
                "2100-01-01T00:00:00Z",
                "NaN",
                "+294247-01-01T00:00:00Z",
            ]
        ),
        IDS,
    ).map(lambda e: f"{e[0]},{e[1]},{e[2]},play"),  # times outside the window, or none
    st.tuples(IDS, SECONDS, IDS).map(lambda e: f"{e[0]},{iso(e[1])},{e[2]},maybe"),  # unknown feedback
    st.tuples(SECONDS, IDS).map(lambda e: f",{iso(e[0])},{e[1]},play"),  # empty user
    st.tuples(IDS, SECONDS, IDS).map(lambda e: f"{e[0]}\udcff,{iso(e[1])},{e[2]},play"),  # invalid UTF-8
)


@settings(max_examples=EXAMPLES)
@given(
    lines=st.lists(st.one_of(VALID_EVENT, QUOTED_EVENT, HOSTILE_EVENT), min_size=1, max_size=40),
    bom=st.booleans(),
    crlf=st.booleans(),
)
def test_events_csv_accepts_exactly_the_valid_lines(spark, tmp_path_factory, lines, bom, crlf):
    path = tmp_path_factory.mktemp("events") / "log.csv"
    ending = "\r\n" if crlf else "\n"
    text = (
        ("\ufeff" if bom else "")
        + ending.join(
            ["user_id,ts,track_id,feedback", *(line if isinstance(line, str) else line[0] for line in lines)]
        )
        + ending
    )
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))

    accepted, rejected_lines, rejected_rows = outcome(spark, "events", path)

    assert accepted == {line[1] for line in lines if not isinstance(line, str)}
    hostile = {n + 2 for n, line in enumerate(lines) if isinstance(line, str)}  # the header is line 1
    assert rejected_lines == hostile and rejected_rows == len(hostile)


# MovieLens (user::item::rating::seconds)
VALID_RATING = st.tuples(st.integers(1, 99999), st.integers(1, 99999), st.integers(1, 5), SECONDS).map(
    lambda r: (f"{r[0]}::{r[1]}::{r[2]}::{r[3]}", r)
)
HOSTILE_RATING = st.one_of(
    st.tuples(
        st.integers(1, 99), st.integers(1, 99), st.sampled_from(["0", "6", "NaN", "x", "2.25", ""])
    ).map(lambda r: f"{r[0]}::{r[1]}::{r[2]}::978300760"),  # ratings that are none
    st.tuples(
        st.integers(1, 99),
        st.sampled_from(
            ["4102444800", "1000000000000", "9223372036854775807", "99999999999999999999", "-1", "NaN", "1e9"]
        ),
    ).map(lambda r: f"{r[0]}::10::4::{r[1]}"),  # times outside the window, past int64, or none
    st.integers(1, 99).map(lambda u: f"{u}::10::4"),  # truncated
    st.just("::10::4::978300760"),  # empty user
    st.integers(1, 99).map(lambda u: f"{u}\udcff::10::4::978300760"),  # invalid UTF-8
)


@settings(max_examples=EXAMPLES)
@given(lines=st.lists(st.one_of(VALID_RATING, HOSTILE_RATING), min_size=1, max_size=40))
def test_movielens_accepts_exactly_the_valid_lines(spark, tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("movielens") / "ratings.dat"
    text = "\n".join(line if isinstance(line, str) else line[0] for line in lines) + "\n"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))

    accepted, rejected_lines, rejected_rows = outcome(spark, "movielens", path)

    feedback = {1: S.DOWN, 2: S.DOWN, 3: S.PLAY, 4: S.UP, 5: S.UP}
    assert accepted == {
        (str(r[0]), r[3], str(r[1]), feedback[r[2]])
        for line in lines
        if not isinstance(line, str)
        for r in [line[1]]
    }
    hostile = {n + 1 for n, line in enumerate(lines) if isinstance(line, str)}
    assert rejected_lines == hostile and rejected_rows == len(hostile)


def bare(accepted: set[tuple]) -> set[tuple]:
    """Accepted events as (user, seconds, track): formats whose feedback the test does not plant."""
    return {(u, s, t) for u, s, t, _ in accepted}


# Last.fm 1K (tab-separated: user, time, artist id, artist, track id, title)
VALID_PLAY = st.tuples(IDS, SECONDS, IDS).map(lambda p: (f"{p[0]}\t{iso(p[1])}\ta\tArtist\t{p[2]}\tSong", p))
HOSTILE_PLAY = st.one_of(
    st.tuples(IDS, SECONDS).map(lambda p: f"{p[0]}\t{iso(p[1])}\ta\tArtist"),  # truncated
    st.tuples(IDS, SECONDS, IDS).map(lambda p: f"{p[0]},{iso(p[1])},a,Artist,{p[2]},Song"),  # wrong delimiter
    st.tuples(
        IDS, st.sampled_from(["0001-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "NaN", "1969-12-31T23:59:59Z"])
    ).map(lambda p: f"{p[0]}\t{p[1]}\ta\tArtist\tt1\tSong"),
    st.tuples(IDS, SECONDS).map(lambda p: f"{p[0]}\t{iso(p[1])}\ta\t\t\t"),  # no track, no artist and title
    st.tuples(IDS, SECONDS).map(lambda p: f"{p[0]}\udcfe\t{iso(p[1])}\ta\tArtist\tt1\tSong"),  # invalid UTF-8
)


@settings(max_examples=EXAMPLES)
@given(lines=st.lists(st.one_of(VALID_PLAY, HOSTILE_PLAY), min_size=1, max_size=40), crlf=st.booleans())
def test_lastfm1k_accepts_exactly_the_valid_lines(spark, tmp_path_factory, lines, crlf):
    path = tmp_path_factory.mktemp("lastfm1k") / "log.tsv"
    ending = "\r\n" if crlf else "\n"
    text = ending.join(line if isinstance(line, str) else line[0] for line in lines) + ending
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))

    accepted, rejected_lines, rejected_rows = outcome(spark, "lastfm1k", path)

    assert bare(accepted) == {line[1] for line in lines if not isinstance(line, str)}
    hostile = {n + 1 for n, line in enumerate(lines) if isinstance(line, str)}
    assert rejected_lines == hostile and rejected_rows == len(hostile)


# Piki (CSV with a header; liked 0 is a down, 1 and 2 ups)
def piki_time(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


NUMBERS = st.integers(1, 10**6)
VALID_LIKE = st.tuples(NUMBERS, SECONDS, NUMBERS, st.sampled_from([0, 1, 2])).map(
    lambda p: (
        f"0,{p[3]},1,{p[2]},50,{piki_time(p[1])},{p[0]}",
        (str(p[0]), p[1], str(p[2]), S.DOWN if p[3] == 0 else S.UP),
    )
)
QUOTED_LIKE = st.tuples(NUMBERS, SECONDS, NUMBERS).map(
    lambda p: (f'0,1,1,"{p[2]},5",50,{piki_time(p[1])},{p[0]}', (str(p[0]), p[1], f"{p[2]},5", S.UP))
)
HOSTILE_LIKE = st.one_of(
    st.tuples(NUMBERS, NUMBERS).map(lambda p: f"0,1,1,{p[1]},50"),  # truncated
    st.tuples(NUMBERS, SECONDS, NUMBERS).map(
        lambda p: f"0,7,1,{p[2]},50,{piki_time(p[1])},{p[0]}"
    ),  # liked 7
    st.tuples(
        NUMBERS, NUMBERS, st.sampled_from(["0001-01-01 00:00:00", "2100-01-01 00:00:00", "NaN", "x"])
    ).map(lambda p: f"0,1,1,{p[1]},50,{p[2]},{p[0]}"),
    st.tuples(SECONDS, NUMBERS).map(lambda p: f"0,1,1,{p[1]},50,{piki_time(p[0])},"),  # empty user
    st.tuples(NUMBERS, SECONDS, NUMBERS).map(lambda p: f"0,1,1,{p[2]}\udcff,50,{piki_time(p[1])},{p[0]}"),
)


@settings(max_examples=EXAMPLES)
@given(lines=st.lists(st.one_of(VALID_LIKE, QUOTED_LIKE, HOSTILE_LIKE), min_size=1, max_size=40))
def test_piki_accepts_exactly_the_valid_lines(spark, tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("piki") / "piki.csv"
    body = [line if isinstance(line, str) else line[0] for line in lines]
    text = "\n".join(["id,liked,personalized,song_id,spotify_popularity,timestamp,user_id", *body]) + "\n"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))

    accepted, rejected_lines, rejected_rows = outcome(spark, "piki", path)

    assert accepted == {line[1] for line in lines if not isinstance(line, str)}
    hostile = {n + 2 for n, line in enumerate(lines) if isinstance(line, str)}
    assert rejected_lines == hostile and rejected_rows == len(hostile)


# MSSD (CSV with a header; a play's time is its day, its hour and a minute per session position)
MSSD_HEADER = (
    "session_id,session_position,session_length,track_id_clean,skip_1,skip_2,skip_3,"
    "hour_of_day,date,context_type"
)
DAYS = st.integers(0, 47000)  # whole days from 1970 to 2098
VALID_TRACK = st.tuples(IDS, st.integers(1, 20), IDS, DAYS, st.integers(0, 23)).map(
    lambda p: (
        f"{p[0]},{p[1]},20,{p[2]},false,false,false,{p[4]},{EPOCH + dt.timedelta(days=p[3]):%Y-%m-%d},radio",
        (p[0], p[3] * 86400 + p[4] * 3600 + (p[1] - 1) * 60, p[2]),
    )
)
HOSTILE_TRACK = st.one_of(
    st.tuples(IDS, IDS).map(lambda p: f"{p[0]},1,20,{p[1]},false"),  # truncated
    st.tuples(IDS, IDS, st.sampled_from(["0", "-3", "x", "99999999999999", "99999999999999999999"])).map(
        lambda p: f"{p[0]},{p[2]},20,{p[1]},false,false,false,10,2018-07-15,radio"
    ),  # positions that are none
    st.tuples(IDS, IDS, st.sampled_from(["24", "-1", "NaN"])).map(
        lambda p: f"{p[0]},1,20,{p[1]},false,false,false,{p[2]},2018-07-15,radio"
    ),  # hours that are none
    st.tuples(IDS, IDS, st.sampled_from(["0001-01-01", "2100-01-01", "2018-13-40", "07/15/2018"])).map(
        lambda p: f"{p[0]},1,20,{p[1]},false,false,false,10,{p[2]},radio"
    ),  # days outside, or none
    st.tuples(IDS, IDS).map(lambda p: f"{p[0]},1,20,{p[1]},false,maybe,false,10,2018-07-15,radio"),  # skip_2
    st.tuples(IDS, IDS).map(lambda p: f"{p[0]}\udcff,1,20,{p[1]},false,false,false,10,2018-07-15,radio"),
)


@settings(max_examples=EXAMPLES)
@given(lines=st.lists(st.one_of(VALID_TRACK, HOSTILE_TRACK), min_size=1, max_size=40))
def test_mssd_accepts_exactly_the_valid_lines(spark, tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("mssd") / "log.csv"
    head = MSSD_HEADER
    text = "\n".join([head, *(line if isinstance(line, str) else line[0] for line in lines)]) + "\n"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))

    accepted, rejected_lines, rejected_rows = outcome(spark, "mssd", path)

    assert bare(accepted) == {line[1] for line in lines if not isinstance(line, str)}
    hostile = {n + 2 for n, line in enumerate(lines) if isinstance(line, str)}
    assert rejected_lines == hostile and rejected_rows == len(hostile)
