"""Properties of the parsers: random hostile lines mixed into valid ones end with exactly the valid
rows accepted and every other line rejected with a reason, whatever the mix (hypothesis; more
examples under `HYPOTHESIS_PROFILE=thorough` or `--hypothesis-profile thorough`)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
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
