"""Properties of the parsers: random hostile lines mixed into valid ones end with exactly the valid
rows accepted and every other line rejected with a reason, whatever the mix.

An example is a file of up to 40 lines (a `Case`). Each adapter runs two ways: EXAMPLES files, one
Spark parse each, which Hypothesis shrinks to the smallest failing file; and BATCH files (200 in
`make test`) drawn the same way and parsed together in one Spark job, each file's rows checked
against its own lines. `HYPOTHESIS_PROFILE=thorough` (or `--hypothesis-profile thorough`) runs the
profile's examples both ways."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
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
from downbeat.pipelines.sources._common import FILE, LINE, REASON

SETTINGS = SourceSettings(MovielensSettings(up_min=4, down_max=2), MssdSettings(skip_column="skip_2"))
WINDOW = IngestSettings(min_ts="1970-01-01", max_ts="2100-01-01")
EPOCH = dt.datetime(1970, 1, 1)
LATEST = 4102444799  # 2099-12-31T23:59:59Z, the window's last second
IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
SECONDS = st.integers(min_value=0, max_value=LATEST)
# a Spark parse an example: under the suite's default profile (25), 12 files an adapter keep `make test`
# inside its half hour; a profile asking for more gets them all
EXAMPLES = 12 if settings.default.max_examples <= 25 else settings.default.max_examples
# files an adapter parsed together in one Spark job: at least 200, more under a profile asking for more
BATCH = max(200, settings.default.max_examples)
KEY = (S.USER_ID, f"unix_seconds({S.TS}) AS s", S.TRACK_ID, S.FEEDBACK)


@dataclass(frozen=True)
class Case:
    """A file's bytes, the events its valid lines are and the numbers of its hostile lines."""

    data: bytes
    valid: frozenset[tuple]
    hostile: frozenset[int]


def case(lines: list, head: list[str], ending: str = "\n", bom: bool = False) -> Case:
    """A file of `head` lines, then `lines`: each a hostile string or a (text, event) pair."""
    text = ending.join([*head, *(line if isinstance(line, str) else line[0] for line in lines)]) + ending
    return Case(
        (("\ufeff" if bom else "") + text).encode("utf-8", errors="surrogateescape"),
        frozenset(line[1] for line in lines if not isinstance(line, str)),
        frozenset(n + len(head) + 1 for n, line in enumerate(lines) if isinstance(line, str)),
    )


def outcomes(spark, fmt: str, paths: list[Path]) -> dict[str, tuple[set[tuple], list[tuple[int, str]]]]:
    """Per file name: (accepted events as (user, epoch seconds, track, feedback), rejected (line, reason))."""
    parsed = parse(fmt, spark, [str(p) for p in paths], SETTINGS, WINDOW)
    found: dict[str, tuple[set[tuple], list[tuple[int, str]]]] = {p.name: (set(), []) for p in paths}
    for r in parsed.where(f"{REASON} IS NULL").selectExpr(FILE, *KEY).collect():
        found[Path(r[FILE]).name][0].add((r[S.USER_ID], int(r["s"]), r[S.TRACK_ID], r[S.FEEDBACK]))
    for r in rejects(parsed, fmt).collect():  # what bronze/quarantine receives
        found[Path(r[FILE]).name][1].append((r[LINE], r[REASON]))
    # what bronze/events receives is the same rows, ids under their source's prefix where not global
    prefix = "" if S.USER_ID in GLOBAL_IDS[fmt] else f"{fmt}:"
    written = {
        (r[S.USER_ID].removeprefix(prefix), int(r["s"]), r[S.TRACK_ID].removeprefix(prefix), r[S.FEEDBACK])
        for r in events(parsed, fmt, GLOBAL_IDS[fmt]).selectExpr(*KEY).collect()
    }
    assert written == set().union(*(accepted for accepted, _ in found.values()))
    return found


def check(fmt: str, case: Case, accepted: set[tuple], rejected: list[tuple[int, str]], where: str) -> None:
    got = accepted if fmt in FEEDBACK_PLANTED else {(u, s, t) for u, s, t, _ in accepted}
    assert got == set(case.valid), f"{where}: accepted rows differ from the valid lines"
    assert all(reason for _, reason in rejected), f"{where}: a rejected line without a reason"
    lines = {line for line, _ in rejected}
    assert lines == set(case.hostile) and len(rejected) == len(case.hostile), (
        f"{where}: rejected lines differ"
    )


def holds(spark, tmp_path_factory, fmt: str, case: Case) -> None:
    path = tmp_path_factory.mktemp(fmt) / NAMES[fmt]
    path.write_bytes(case.data)
    check(fmt, case, *outcomes(spark, fmt, [path])[path.name], where=str(path))


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


EVENT_CASES = st.builds(
    lambda lines, bom, crlf: case(lines, ["user_id,ts,track_id,feedback"], "\r\n" if crlf else "\n", bom),
    st.lists(st.one_of(VALID_EVENT, QUOTED_EVENT, HOSTILE_EVENT), min_size=1, max_size=40),
    st.booleans(),
    st.booleans(),
)


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


FEEDBACK = {1: S.DOWN, 2: S.DOWN, 3: S.PLAY, 4: S.UP, 5: S.UP}
RATING_CASES = st.lists(
    st.one_of(
        VALID_RATING.map(lambda r: (r[0], (str(r[1][0]), r[1][3], str(r[1][1]), FEEDBACK[r[1][2]]))),
        HOSTILE_RATING,
    ),
    min_size=1,
    max_size=40,
).map(lambda lines: case(lines, []))


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


PLAY_CASES = st.builds(
    lambda lines, crlf: case(lines, [], "\r\n" if crlf else "\n"),
    st.lists(st.one_of(VALID_PLAY, HOSTILE_PLAY), min_size=1, max_size=40),
    st.booleans(),
)


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


LIKE_CASES = st.lists(st.one_of(VALID_LIKE, QUOTED_LIKE, HOSTILE_LIKE), min_size=1, max_size=40).map(
    lambda lines: case(lines, ["id,liked,personalized,song_id,spotify_popularity,timestamp,user_id"])
)


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


TRACK_CASES = st.lists(st.one_of(VALID_TRACK, HOSTILE_TRACK), min_size=1, max_size=40).map(
    lambda lines: case(lines, [MSSD_HEADER])
)

CASES = {
    "events": EVENT_CASES,
    "movielens": RATING_CASES,
    "lastfm1k": PLAY_CASES,
    "piki": LIKE_CASES,
    "mssd": TRACK_CASES,
}
NAMES = {
    "events": "log.csv",
    "movielens": "ratings.dat",
    "lastfm1k": "log.tsv",
    "piki": "piki.csv",
    "mssd": "log.csv",
}
FEEDBACK_PLANTED = {
    "events",
    "movielens",
    "piki",
}  # lastfm1k's are all plays, MSSD's come from its skip column


@pytest.mark.parametrize("fmt", list(CASES))
def test_each_file_alone_accepts_exactly_its_valid_lines(spark, tmp_path_factory, fmt):
    @settings(max_examples=EXAMPLES)
    @given(CASES[fmt])
    def one_file(example: Case) -> None:
        holds(spark, tmp_path_factory, fmt, example)

    one_file()


@pytest.mark.parametrize("fmt", list(CASES))
def test_files_parsed_together_each_accept_exactly_their_valid_lines(spark, tmp_path, fmt):
    drawn: list[Case] = []

    @settings(max_examples=BATCH, database=None)
    @given(CASES[fmt])
    def draw(example: Case) -> None:
        drawn.append(example)

    draw()
    assert len(drawn) >= 200
    suffix = NAMES[fmt].partition(".")[2]
    paths = [tmp_path / f"case{n:04d}.{suffix}" for n in range(len(drawn))]
    for path, example in zip(paths, drawn, strict=True):
        path.write_bytes(example.data)

    found = outcomes(spark, fmt, paths)

    for path, example in zip(paths, drawn, strict=True):
        check(fmt, example, *found[path.name], where=f"{path.name} ({example.data[:200]!r})")
