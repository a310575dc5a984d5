"""gold/hard_negatives: the UMAP'24 cascade, checked row by row and against a brute-force reference."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from downbeat.pipelines import schemas as S
from downbeat.pipelines.hard_negatives import hard_negatives, with_hard_negative
from downbeat.pipelines.split import history, with_roles
from tests.pipelines.gold_helpers import EVAL, SEQ, at, plays_frame

CUTOFF = at(10)


def negatives(spark: SparkSession, rows: list[tuple], cutoff: dt.datetime = CUTOFF):
    roles = with_roles(plays_frame(spark, rows), SEQ, EVAL)
    return hard_negatives(with_hard_negative(history(roles, cutoff)))


def expected(spark: SparkSession, rows: list[tuple]):
    """rows: (user, position, target, (day, minute), station, negative, (day, minute) | None, tier)."""
    full = [
        (u, p, t, at(*when), st, n, at(*nwhen) if nwhen else None, tier, S.TIER_NAMES[tier])
        for u, p, t, when, st, n, nwhen, tier in rows
    ]
    return spark.createDataFrame(full, S.HARD_NEGATIVES)


def test_each_tier_of_the_cascade_and_never_the_target_track(spark):
    rows = [
        ("a", 0, 0, "t1", "rock", "up"),  # pos 0: same-day down on rock at minute 50 is t1 itself -> t4
        ("a", 0, 30, "t4", "rock", "down"),  # pos 1
        ("a", 0, 50, "t1", "rock", "down"),  # pos 2
        ("a", 0, 60, "t2", "rock", "up"),  # pos 3: nearest same-day down: t1 at minute 50
        (
            "a",
            1,
            0,
            "t3",
            "jazz",
            "up",
        ),  # pos 4: no down/skip that day on jazz; later skip on day 2 -> tier 4
        ("a", 1, 5, "t5", "rock", "skip"),  # pos 5
        ("a", 1, 6, "t6", "rock", "up"),  # pos 6: same-day skip on rock (t5) -> tier 2
        ("a", 2, 0, "t7", "pop", "skip"),  # pos 7
        ("a", 2, 1, "t8", "pop", "up"),  # pos 8: same-day skip before -> tier 2; down at day 3 is later
        ("a", 3, 0, "t9", "pop", "up"),  # pos 9: later down (day 4) beats later skip -> tier 3
        ("a", 4, 0, "t0", "hip", "down"),  # pos 10
        ("a", 5, 0, "t2", "hip", "up"),  # pos 11: nothing after and none that day -> random
        ("a", 11, 0, "tx", "hip", "down"),  # after the cut-off: never a negative
    ]
    want = [
        ("a", 0, "t1", (0, 0), "rock", "t4", (0, 30), 1),
        ("a", 3, "t2", (0, 60), "rock", "t1", (0, 50), 1),
        ("a", 4, "t3", (1, 0), "jazz", "t0", (4, 0), 3),
        ("a", 6, "t6", (1, 6), "rock", "t5", (1, 5), 2),
        ("a", 8, "t8", (2, 1), "pop", "t7", (2, 0), 2),
        ("a", 9, "t9", (3, 0), "pop", "t0", (4, 0), 3),
        ("a", 11, "t2", (5, 0), "hip", None, None, 5),
    ]
    assert_df_equality(
        negatives(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True
    )


def test_missing_stations_match_each_other_and_skip_only_users_have_no_targets(spark):
    rows = [
        ("a", 0, 0, "t1", None, "up"),
        ("a", 0, 9, "t2", None, "down"),  # same day, both without station: tier 1
        ("s", 0, 0, "t1", None, "skip"),  # a user with only skips: no target positions
        ("s", 0, 5, "t2", None, "skip"),
        ("d", 0, 0, "t1", None, "down"),  # only downs: none either
    ]
    want = [("a", 0, "t1", (0, 0), None, "t2", (0, 9), 1)]
    assert_df_equality(
        negatives(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True
    )


def reference(rows: list[tuple], cutoff: dt.datetime) -> dict[int, tuple[int, str | None]]:
    """Brute force over all pairs: target position -> (tier, negative track)."""
    ordered = sorted(
        [
            (at(d, m), f"e{i:03d}", t, st, fb)
            for i, (_, d, m, t, st, fb) in enumerate(rows)
            if at(d, m) < cutoff
        ]
    )
    positive = {"up"} if any(r[5] == "up" for r in rows) else {"up", "play"}  # play_is_positive: auto
    result = {}
    for i, (ts, _, track, station, fb) in enumerate(ordered):
        if fb not in positive:
            continue
        best = None
        for j, (nts, _, ntrack, nstation, nfb) in enumerate(ordered):
            if ntrack == track or nfb not in ("down", "skip"):
                continue
            same_day = nts.date() == ts.date() and nstation == station
            if same_day:
                tier = 1 if nfb == "down" else 2
            elif j > i:
                tier = 3 if nfb == "down" else 4
            else:
                continue
            key = (tier, abs((nts - ts).total_seconds()), j > i)
            if best is None or key < best[0]:
                best = (key, ntrack)
        result[i] = (best[0][0], best[1]) if best else (S.TIER_RANDOM, None)
    return result


plays_strategy = st.lists(
    st.tuples(
        st.just("u"),
        st.integers(0, 12),
        st.integers(0, 1439),
        st.sampled_from(["t1", "t2", "t3"]),
        st.sampled_from(["rock", "jazz", None]),
        st.sampled_from(["up", "up", "down", "skip", "play"]),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda r: (r[1], r[2]),
)


@settings(max_examples=12)
@given(plays_strategy, st.sampled_from([3, 10_000]))
def test_cascade_matches_brute_force_and_no_negative_is_its_target_or_after_the_cutoff(spark, rows, batch):
    # batches of 3 rows cut the user's plays: the pass must see them whole (pipelines/by_user.py)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
    try:
        out = negatives(spark, rows).collect()
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    want = reference(rows, CUTOFF)
    assert {r[S.POSITION]: (r[S.TIER], r[S.NEGATIVE_TRACK_ID]) for r in out} == want
    for r in out:
        assert r[S.NEGATIVE_TRACK_ID] != r[S.TARGET_TRACK_ID]
        assert r[S.TARGET_TS] < CUTOFF
        assert r[S.NEGATIVE_TS] is None or r[S.NEGATIVE_TS] < CUTOFF


def test_a_candidate_as_near_before_as_another_after_loses_to_the_earlier_one(spark):
    rows = [
        ("a", 0, 0, "t1", "rock", "down"),
        ("a", 0, 5, "t2", "rock", "up"),  # downs 5 minutes either side: the earlier wins
        ("a", 0, 10, "t3", "rock", "down"),
        ("a", 0, 14, "t4", "rock", "up"),  # the later down is nearer (4 minutes against 14)
    ]
    want = [
        ("a", 1, "t2", (0, 5), "rock", "t1", (0, 0), 1),
        ("a", 3, "t4", (0, 14), "rock", "t3", (0, 10), 1),
    ]
    assert_df_equality(
        negatives(spark, rows), expected(spark, want), ignore_row_order=True, ignore_nullable=True
    )
