"""silver/plays: sessions split on gaps only, skips by the 30 s rule, feedback precedence."""

from __future__ import annotations

import datetime as dt
import itertools

from chispa import assert_df_equality
from hypothesis import given
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.plays import plays

T0 = dt.datetime(2024, 3, 9, 23, 50, 0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def events(spark: SparkSession, rows: list[tuple]) -> object:
    """rows: (user, seconds after T0, track, feedback, ms_played, source, event_id)."""
    full = [(u, at(s), t, "st", None, fb, ms, src, eid, at(s).date()) for u, s, t, fb, ms, src, eid in rows]
    return spark.createDataFrame(full, S.EVENTS)


def run(spark: SparkSession, rows: list[tuple], **kw: object):
    return plays(events(spark, rows), gap_minutes=20, skip_seconds=30, timing_sources=["lastfm1k"], **kw)


def expected(spark: SparkSession, rows: list[tuple]):
    """rows: (user, session start s, position, s, track, feedback, ms_played, source, event_id)."""
    full = [
        (
            u,
            f"{u}@{at(start):%Y%m%dT%H%M%S}.000000",
            pos,
            at(s),
            t,
            "st",
            fb,
            src,
            ms,
            eid,
            at(s).date(),
        )
        for u, start, pos, s, t, fb, ms, src, eid in rows
    ]
    return spark.createDataFrame(full, S.PLAYS)


def test_new_session_starts_only_when_the_gap_exceeds_the_threshold_even_across_midnight(spark):
    rows = [
        ("a", 0, "t1", None, None, "lastfm1k", "e1"),
        ("a", 1200, "t2", None, None, "lastfm1k", "e2"),  # exactly 20 min later, past midnight: same session
        ("a", 2401, "t3", None, None, "lastfm1k", "e3"),  # 20 min 1 s later: new session
    ]
    want = [
        ("a", 0, 0, 0, "t1", "play", None, "lastfm1k", "e1"),
        ("a", 0, 1, 1200, "t2", "play", None, "lastfm1k", "e2"),
        ("a", 2401, 0, 2401, "t3", "play", None, "lastfm1k", "e3"),
    ]
    assert_df_equality(run(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True)


def test_skip_when_next_play_starts_under_30_s_later_and_out_of_order_input(spark):
    rows = [
        ("a", 59, "t3", None, None, "lastfm1k", "e3"),  # out of order on purpose
        ("a", 0, "t1", None, None, "lastfm1k", "e1"),  # next play 29 s later: skip
        ("a", 29, "t2", None, None, "lastfm1k", "e2"),  # next play 30 s later: not a skip
        ("b", 0, "t1", None, None, "lastfm1k", "e4"),  # a one-event user: a play
    ]
    want = [
        ("a", 0, 0, 0, "t1", "skip", None, "lastfm1k", "e1"),
        ("a", 0, 1, 29, "t2", "play", None, "lastfm1k", "e2"),
        ("a", 0, 2, 59, "t3", "play", None, "lastfm1k", "e3"),
        ("b", 0, 0, 0, "t1", "play", None, "lastfm1k", "e4"),
    ]
    assert_df_equality(run(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True)


def test_equal_timestamps_are_ordered_by_event_id(spark):
    rows = [
        ("a", 0, "t2", None, None, "lastfm1k", "e2"),
        ("a", 0, "t1", None, None, "lastfm1k", "e1"),
        ("a", 300, "t3", None, None, "lastfm1k", "e3"),
    ]
    want = [
        ("a", 0, 0, 0, "t1", "skip", None, "lastfm1k", "e1"),  # e2 starts 0 s later
        ("a", 0, 1, 0, "t2", "play", None, "lastfm1k", "e2"),
        ("a", 0, 2, 300, "t3", "play", None, "lastfm1k", "e3"),
    ]
    assert_df_equality(run(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True)


def test_precedence_down_over_up_over_skip_over_play_and_sources_without_timing(spark):
    rows = [
        ("a", 0, "t1", "down", 5000, "lastfm1k", "e1"),  # short and followed fast, but a down
        ("a", 10, "t2", "up", 5000, "lastfm1k", "e2"),  # short, but an up
        ("a", 20, "t3", None, 10_000, "lastfm1k", "e3"),  # ms_played 10 s: skip
        ("a", 400, "t4", "skip", None, "lastfm1k", "e4"),  # the source's own flag
        ("a", 900, "t5", None, 29_999, "lastfm1k", "e5"),  # last play, ms_played under 30 s: skip
        ("m", 0, "t1", None, None, "movielens", "e6"),  # ratings 1 s apart are not skips
        ("m", 1, "t2", "down", None, "movielens", "e7"),
    ]
    want = [
        ("a", 0, 0, 0, "t1", "down", 5000, "lastfm1k", "e1"),
        ("a", 0, 1, 10, "t2", "up", 5000, "lastfm1k", "e2"),
        ("a", 0, 2, 20, "t3", "skip", 10_000, "lastfm1k", "e3"),
        ("a", 0, 3, 400, "t4", "skip", None, "lastfm1k", "e4"),
        ("a", 0, 4, 900, "t5", "skip", 29_999, "lastfm1k", "e5"),
        ("m", 0, 0, 0, "t1", "play", None, "movielens", "e6"),
        ("m", 0, 1, 1, "t2", "down", None, "movielens", "e7"),
    ]
    assert_df_equality(run(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True)


event_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "ü"]), st.integers(0, 6 * 3600), st.sampled_from(["t1", "t2", "t3"])
    ),
    min_size=1,
    max_size=40,
)


@given(event_rows)
def test_sessionizing_keeps_every_row_and_a_users_sessions_are_contiguous(spark, rows):
    data = [(u, s, t, None, None, "lastfm1k", f"e{i:03d}") for i, (u, s, t) in enumerate(rows)]
    out = run(spark, data).collect()
    assert sorted(r[S.EVENT_ID] for r in out) == sorted(d[-1] for d in data)
    for user in {r[S.USER_ID] for r in out}:
        ordered = sorted((r for r in out if r[S.USER_ID] == user), key=lambda r: (r[S.TS], r[S.EVENT_ID]))
        sessions = [r[S.SESSION_ID] for r in ordered]
        # contiguous: once a session ends it never comes back; positions count 0, 1, 2... in each
        runs = [s for i, s in enumerate(sessions) if i == 0 or s != sessions[i - 1]]
        assert len(runs) == len(set(runs))
        for session in set(sessions):
            assert [r[S.POSITION] for r in ordered if r[S.SESSION_ID] == session] == list(
                range(sessions.count(session))
            )
        for prev, cur in itertools.pairwise(ordered):
            gap = (cur[S.TS] - prev[S.TS]).total_seconds()
            assert (cur[S.SESSION_ID] != prev[S.SESSION_ID]) == (gap > 1200)


def test_session_ids_do_not_depend_on_partitioning(spark):
    rows = [(u, s * 700, "t1", None, None, "lastfm1k", f"e{u}{s}") for u in "abcd" for s in range(6)]
    one = run(spark, rows)
    many = plays(
        events(spark, rows).repartition(3), gap_minutes=20, skip_seconds=30, timing_sources=["lastfm1k"]
    )
    assert_df_equality(one, many, ignore_row_order=True)
    assert one.where(F.col(S.POSITION) == 0).count() > 0


def reference(rows: list[tuple], *, gap_s: int = 1200, skip_s: int = 30, timing=("lastfm1k",)) -> list[tuple]:
    """silver/plays by hand, one user at a time. rows: (user, milliseconds after T0, track, feedback,
    ms_played, source, event_id) -> sorted (event_id, user, session_id, position, feedback, date)."""
    out = []
    for user in sorted({r[0] for r in rows}):
        mine = sorted((r for r in rows if r[0] == user), key=lambda r: (r[1], r[6]))
        start = previous = None
        position = 0
        for i, (_, ms, _, fb, played, source, eid) in enumerate(mine):
            ts = T0 + dt.timedelta(milliseconds=ms)
            if previous is None or (ts - previous).total_seconds() > gap_s:
                start, position = ts, 0
            else:
                position += 1
            following = T0 + dt.timedelta(milliseconds=mine[i + 1][1]) if i + 1 < len(mine) else None
            skipped = (
                fb == "skip"
                or (played is not None and played < skip_s * 1000)
                or (source in timing and following is not None and (following - ts).total_seconds() < skip_s)
            )
            kind = "down" if fb == "down" else "up" if fb == "up" else "skip" if skipped else "play"
            session = f"{user}@{start:%Y%m%dT%H%M%S.%f}"
            out.append((eid, user, session, position, kind, ts.date()))
            previous = ts
    return sorted(out)


rich_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "ü"]),
        st.integers(0, 3 * 3600 * 1000),
        st.sampled_from(["t1", "t2", "t3"]),
        st.sampled_from([None, "up", "down", "skip", "play"]),
        st.sampled_from([None, 0, 29_999, 30_000, 200_000]),
        st.sampled_from(["lastfm1k", "piki"]),
    ),
    min_size=1,
    max_size=60,
)


@given(rich_rows, st.sampled_from([2, 3, 10_000]))
def test_plays_equal_a_by_hand_reference_however_arrow_batches_cut_a_user(spark, rows, batch_rows):
    data = [(u, ms, t, fb, played, src, f"e{i:03d}") for i, (u, ms, t, fb, played, src) in enumerate(rows)]
    frame = spark.createDataFrame(
        [
            (u, ts, t, None, None, fb, played, src, eid, ts.date())
            for u, ms, t, fb, played, src, eid in data
            for ts in [T0 + dt.timedelta(milliseconds=ms)]
        ],
        S.EVENTS,
    )
    # a user's rows across Arrow batches: the pass must carry them over to the next batch
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
    try:
        out = plays(frame, gap_minutes=20, skip_seconds=30, timing_sources=["lastfm1k"]).collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    got = sorted(
        (r[S.EVENT_ID], r[S.USER_ID], r[S.SESSION_ID], r[S.POSITION], r[S.FEEDBACK], r[S.DATE]) for r in out
    )
    assert got == reference(data)
