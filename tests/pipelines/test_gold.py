"""gold/tracks, stations, sequences, eval_pairs, eval_next and stats on one small log, row for row."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pytest
from chispa import assert_df_equality
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.eval_sets import eval_next, eval_pairs
from downbeat.pipelines.gold import gold_inputs, gold_tables
from downbeat.pipelines.hard_negatives import with_hard_negative
from downbeat.pipelines.sequences import sequences, training_sequences
from downbeat.pipelines.settings import FeatureSettings
from downbeat.pipelines.split import (
    check_sequences,
    history,
    in_test_period,
    in_validation_period,
    validation_users,
    with_roles,
)
from downbeat.pipelines.stats import stats
from downbeat.pipelines.vocabulary import stations, tracks
from tests.pipelines.gold_helpers import EVAL, SEQ, at, plays_frame

CUTOFF = at(10)
LOG = [
    ("a", 0, 0, "t1", "rock", "up"),
    ("a", 0, 5, "t2", "rock", "down"),
    ("a", 1, 0, "t3", "jazz", "play"),
    ("a", 2, 0, "t1", "rock", "up"),
    ("a", 3, 0, "t4", "rock", "skip"),  # after the last positive: not in the training row
    ("a", 10, 0, "t2", "rock", "up"),  # test period from here
    ("a", 10, 5, "t4", "rock", "down"),
    ("a", 10, 9, "t5", "rock", "down"),
    ("b", 1, 0, "t1", None, "skip"),  # skips only before the cut-off: no training row
    ("b", 11, 0, "t3", None, "up"),
]


def split_of(user: str, percent: int = 10) -> str:
    """The user split, recomputed independently of Spark."""
    bucket = int(hashlib.sha256(user.encode()).hexdigest()[:8], 16) % 100
    return "validation" if bucket < percent else "train"


@pytest.fixture(scope="module")
def built(spark: SparkSession):
    played = plays_frame(spark, LOG)
    roles = with_roles(played, SEQ, EVAL)
    annotated = with_hard_negative(history(roles, CUTOFF))
    vocabulary, station_ids = tracks(played), stations(played)
    return played, roles, annotated, vocabulary, station_ids


def test_vocabularies_index_most_played_first_ties_by_id(spark, built):
    _, _, _, vocabulary, station_ids = built
    want = spark.createDataFrame(
        [("t1", 1, 3), ("t2", 2, 2), ("t3", 3, 2), ("t4", 4, 2), ("t5", 5, 1)], S.TRACKS
    )
    assert_df_equality(vocabulary, want, ignore_row_order=True, ignore_nullable=True)
    want_stations = spark.createDataFrame([("rock", 1, 7), ("jazz", 2, 1)], S.STATIONS)
    assert_df_equality(station_ids, want_stations, ignore_row_order=True, ignore_nullable=True)


def test_sequences_end_on_a_positive_hold_aligned_negatives_and_nothing_after_the_cutoff(spark, built):
    _, _, annotated, vocabulary, station_ids = built
    got = sequences(annotated, vocabulary, station_ids, cutoff=CUTOFF, max_length=200, validation_percent=10)
    want = spark.createDataFrame(
        [
            (
                "a",
                split_of("a"),
                4,
                [1, 2, 3, 1],
                [1, 1, 2, 1],
                [1, 2, 4, 1],
                [1, 0, 0, 1],
                [2, 0, 0, 4],  # t2: same-day down; t4: the later skip
                [1, 0, 0, 4],
                at(0),
                at(2),
                CUTOFF,
            )
        ],
        S.SEQUENCES,
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


def test_sequences_keep_the_last_max_length_plays_and_split_users_by_hash(spark, built):
    _, _, annotated, vocabulary, station_ids = built
    got = sequences(annotated, vocabulary, station_ids, cutoff=CUTOFF, max_length=2, validation_percent=100)
    row = got.collect()[0]
    assert (row[S.SPLIT], row[S.TRACK_IDS], row[S.FEEDBACK_IDS_COL], row[S.FIRST_TS]) == (
        "validation",
        [3, 1],
        [4, 1],
        at(1),
    )


SESSION_LOG = [
    ("a", 0, 0, "t1", "rock", "up"),
    ("a", 0, 1, "t2", "rock", "skip"),
    ("a", 0, 2, "t3", "rock", "up"),
    ("a", 0, 3, "t4", "rock", "down"),  # after the session's last positive
    ("a", 1, 0, "t2", "rock", "up"),  # a session of two plays: no row under min_events 3
    ("a", 1, 1, "t5", "rock", "down"),
    ("a", 2, 0, "t1", "jazz", "play"),
    ("a", 2, 1, "t3", "jazz", "up"),
    ("a", 2, 2, "t4", "jazz", "up"),
    ("b", 3, 0, "t1", "rock", "down"),  # three plays but no positive: no row
    ("b", 3, 1, "t2", "rock", "skip"),
    ("b", 3, 2, "t5", "rock", "down"),
    ("a", 10, 0, "t5", "rock", "up"),  # test period
]


def test_session_rows_keep_each_sessions_last_plays_up_to_its_positive_and_drop_short_sessions(spark):
    played = plays_frame(spark, SESSION_LOG, session_per_day=True)
    annotated = with_hard_negative(history(with_roles(played, SEQ, EVAL), CUTOFF))
    vocabulary = tracks(played)
    got = sequences(
        annotated,
        vocabulary,
        stations(played),
        cutoff=CUTOFF,
        max_length=2,
        validation_percent=0,
        by_session=True,
        min_events=3,
    )
    name = {r[S.TRACK_IDX]: r[S.TRACK_ID] for r in vocabulary.collect()}
    rows = sorted(
        (r[S.USER_ID], r[S.FIRST_TS], r[S.LAST_TS], [name[t] for t in r[S.TRACK_IDS]], r[S.TARGET_MASK])
        for r in got.collect()
    )
    assert rows == [
        ("a", at(0, 1), at(0, 2), ["t2", "t3"], [0, 1]),
        ("a", at(2, 1), at(2, 2), ["t3", "t4"], [1, 1]),
    ]
    # a user's session rows stream in time order, whatever order the shuffle brings them in
    streamed = training_sequences(got.orderBy(F.desc(S.FIRST_TS)), width=4, partitions=1).collect()
    first_tracks = [np.frombuffer(r[S.TRACK_IDS], "<i4")[-2] for r in streamed]
    assert [name[t] for t in first_tracks] == ["t2", "t3"]


def test_eval_pairs_pair_ups_with_downs_of_the_same_user_and_station_in_the_test_period(spark, built):
    _, roles, _, vocabulary, station_ids = built
    got = eval_pairs(
        in_test_period(roles, CUTOFF), vocabulary, station_ids, cutoff=CUTOFF, max_pairs_per_user=100
    )
    want = spark.createDataFrame(
        [
            ("a", "rock", "t2", "t4", at(10, 0), at(10, 5), "e005", "e006", 1, 2, 4, CUTOFF),
            ("a", "rock", "t2", "t5", at(10, 0), at(10, 9), "e005", "e007", 1, 2, 5, CUTOFF),
        ],
        S.EVAL_PAIRS,
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)
    capped = eval_pairs(
        in_test_period(roles, CUTOFF), vocabulary, station_ids, cutoff=CUTOFF, max_pairs_per_user=1
    )
    again = eval_pairs(
        in_test_period(roles, CUTOFF), vocabulary, station_ids, cutoff=CUTOFF, max_pairs_per_user=1
    )
    assert capped.count() == 1
    assert_df_equality(capped, again)


def test_eval_pairs_are_pairs_of_events_so_a_track_pair_met_twice_counts_twice(spark):
    log = [
        ("a", 0, 0, "t1", "rock", "up"),
        ("a", 10, 0, "t2", "rock", "up"),
        ("a", 10, 5, "t4", "rock", "down"),
        ("a", 11, 0, "t2", "rock", "up"),  # the same up track again
        ("a", 11, 5, "t3", "jazz", "down"),  # another station: no pair
    ]
    played = plays_frame(spark, log)
    roles = with_roles(played, SEQ, EVAL)
    got = eval_pairs(
        in_test_period(roles, CUTOFF),
        tracks(played),
        stations(played),
        cutoff=CUTOFF,
        max_pairs_per_user=100,
    )
    assert sorted((r[S.UP_EVENT_ID], r[S.DOWN_EVENT_ID], r[S.UP_TS]) for r in got.collect()) == [
        ("e001", "e002", at(10)),
        ("e003", "e002", at(11)),
    ]


def test_validation_pairs_come_from_validation_users_between_the_two_cutoffs(spark):
    users = [f"user{i}" for i in range(40)]
    chosen = [u for u in users if split_of(u, 25) == "validation"]
    assert 2 <= len(chosen) < len(users)
    log = []
    for u in users:
        log += [(u, 0, 0, "t1", "rock", "up"), (u, 5, 0, "t2", "rock", "up"), (u, 5, 9, "t3", "rock", "down")]
        log += [(u, 10, 0, "t4", "rock", "up"), (u, 10, 9, "t3", "rock", "down")]  # test period
    played = plays_frame(spark, log)
    roles = validation_users(with_roles(played, SEQ, EVAL), 25)
    start = at(4)
    got = eval_pairs(
        in_validation_period(roles, start, CUTOFF),
        tracks(played),
        stations(played),
        cutoff=start,
        max_pairs_per_user=10,
    ).collect()
    assert sorted(r[S.USER_ID] for r in got) == sorted(chosen)
    assert {(r[S.UP_TRACK_ID], r[S.DOWN_TRACK_ID], r[S.CUTOFF_TS]) for r in got} == {("t2", "t3", start)}


def test_eval_next_is_the_first_test_play_with_the_whole_history_before_the_cutoff(spark, built):
    _, roles, annotated, vocabulary, station_ids = built
    got = eval_next(
        annotated, in_test_period(roles, CUTOFF), vocabulary, station_ids, cutoff=CUTOFF, max_length=200
    )
    want = spark.createDataFrame(
        [
            (
                "a",
                at(10),
                "t2",
                "rock",
                "up",
                2,
                1,
                1,
                True,
                False,
                5,
                [1, 2, 3, 1, 4],
                [1, 1, 2, 1, 1],
                [1, 2, 4, 1, 3],
                [],  # a listening log: replays are normal, nothing is excluded
                CUTOFF,
            ),
            ("b", at(11), "t3", None, "up", 3, 0, 1, True, False, 1, [1], [0], [3], [], CUTOFF),
        ],
        S.EVAL_NEXT,
    )
    assert_df_equality(got, want, ignore_row_order=True, ignore_nullable=True)


@pytest.mark.parametrize(
    ("source", "exclude_seen", "excluded"),
    [
        ("movielens", "auto", [1, 2, 3, 4]),  # films are rated once: every rated film leaves the ranking
        ("events", "auto", []),
        ("events", True, [1, 2, 3, 4]),
        ("movielens", False, []),
    ],
)
def test_eval_next_excludes_every_track_seen_before_the_cutoff_where_the_source_consumes_once(
    spark, source, exclude_seen, excluded
):
    played = plays_frame(spark, LOG, source=source)
    roles = with_roles(played, SEQ, dataclasses.replace(EVAL, exclude_seen=exclude_seen))
    got = eval_next(
        history(roles, CUTOFF),
        in_test_period(roles, CUTOFF),
        tracks(played),
        stations(played),
        cutoff=CUTOFF,
        max_length=1,  # the history arrays keep the last play only; the exclusions keep every track
    ).collect()
    rows = {r[S.USER_ID]: r for r in got}
    assert rows["a"][S.HISTORY_TRACK_IDS] == [4] and rows["a"][S.EXCLUDE_TRACK_IDS] == excluded
    assert rows["b"][S.EXCLUDE_TRACK_IDS] == ([1] if excluded else [])


@pytest.mark.parametrize(
    ("first", "has_down", "positive", "negative"),
    [
        ("skip", False, False, True),
        ("skip", True, False, False),
        ("down", True, False, True),
        ("play", False, True, False),
    ],
)
def test_eval_next_stores_the_targets_role_decided_per_source(spark, first, has_down, positive, negative):
    # skips are negatives only for a source without downs; plays are positives for a source without ups
    log = [("c", 0, 0, "t1", "rock", "play"), ("c", 10, 0, "t2", "rock", first)]
    if has_down:
        log.append(("d", 0, 0, "t3", "rock", "down"))
    played = plays_frame(spark, log)
    roles = with_roles(played, SEQ, EVAL)
    got = eval_next(
        history(roles, CUTOFF),
        in_test_period(roles, CUTOFF),
        tracks(played),
        stations(played),
        cutoff=CUTOFF,
        max_length=5,
    ).collect()
    assert [(r[S.USER_ID], r[S.IS_POSITIVE], r[S.IS_NEGATIVE]) for r in got] == [("c", positive, negative)]


def test_stats_summarise_feedback_lengths_and_lookback(spark, built):
    played, _, annotated, vocabulary, station_ids = built
    seqs = sequences(annotated, vocabulary, station_ids, cutoff=CUTOFF, max_length=200, validation_percent=10)
    got = {r[S.METRIC]: r[S.VALUE] for r in stats(played, seqs, vocabulary, station_ids).collect()}
    train = 1.0 if split_of("a") == "train" else 0.0
    assert got == {
        "plays": 10.0,
        "share_up": 0.4,
        "share_skip": 0.2,
        "share_down": 0.3,
        "share_play": 0.1,
        "skips_per_up": 0.5,
        "downs_per_up": 0.75,
        "tracks": 5.0,
        "stations": 2.0,
        "users": 2.0,
        "share_users_skip_no_up": 0.0,
        "sequences": 1.0,
        "sequences_train": train,
        "sequences_validation": 1.0 - train,
        "sequence_length_max": 4.0,
        "sequence_length_median": 4.0,
        "lookback_days_max": 2.0,
        "lookback_days_median": 2.0,
        "days": 11.0,
        # one session per user here: a's 8 plays and b's 2
        "sessions": 2.0,
        "session_length_mean": 5.0,
        "session_length_median": 5.0,
        "session_length_max": 8.0,
        "share_sessions_5_plays": 0.5,
    }


log_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.integers(0, 14),
        st.integers(0, 1439),
        st.sampled_from(["t1", "t2", "t3", "t4"]),
        st.sampled_from(["rock", None]),
        st.sampled_from(["up", "down", "skip", "play"]),
    ),
    min_size=1,
    max_size=30,
    unique_by=lambda r: (r[0], r[1], r[2]),
)


def as_one_log(logs: list[list[tuple]]) -> list[tuple]:
    """Independent logs in one frame, their users renamed apart (a0, b0, a1, ...): every gold row comes
    from its own user's plays (only the track and station ids are shared, and the checks read names),
    so one Spark pass checks them all, where the pass, not the rows, costs the time."""
    return [(f"{row[0]}{i}", *row[1:]) for i, log in enumerate(logs) for row in log]


logs_strategy = st.lists(log_strategy, min_size=2, max_size=6).map(as_one_log)


@settings(max_examples=4)
@given(logs_strategy)
def test_no_gold_row_uses_an_event_on_the_wrong_side_of_its_cutoff(spark, rows):
    played = plays_frame(spark, rows)
    roles = with_roles(played, SEQ, EVAL)
    annotated = with_hard_negative(history(roles, CUTOFF))
    vocabulary, station_ids = tracks(played), stations(played)
    for row in sequences(
        annotated, vocabulary, station_ids, cutoff=CUTOFF, max_length=3, validation_percent=10
    ).collect():
        assert row[S.LAST_TS] < CUTOFF and row[S.CUTOFF_TS] == CUTOFF
        assert 1 <= row[S.LENGTH] <= 3 and row[S.TARGET_MASK][-1] == 1  # ends on a positive
        assert all(n == 0 or n != t for n, t in zip(row[S.NEGATIVE_TRACK_IDS], row[S.TRACK_IDS], strict=True))
    test = in_test_period(roles, CUTOFF)
    for row in eval_pairs(test, vocabulary, station_ids, cutoff=CUTOFF, max_pairs_per_user=5).collect():
        assert (
            row[S.UP_TS] >= CUTOFF and row[S.DOWN_TS] >= CUTOFF and row[S.UP_TRACK_ID] != row[S.DOWN_TRACK_ID]
        )
    for row in eval_next(annotated, test, vocabulary, station_ids, cutoff=CUTOFF, max_length=3).collect():
        before = [r for r in rows if r[0] == row[S.USER_ID] and at(r[1], r[2]) < CUTOFF]
        assert row[S.TS] >= CUTOFF and row[S.HISTORY_LENGTH] == len(before)
        assert len(row[S.HISTORY_TRACK_IDS]) == min(3, len(before))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"session_min_events": 0}, "config key 'sequences.session_min_events' must be at least 1, got 0"),
        ({"max_length": 0}, "config key 'sequences.max_length' must be at least 1, got 0"),
        ({"validation_percent": 101}, "config key 'sequences.validation_percent' must be 0 to 100, got 101"),
    ],
)
def test_sequence_settings_a_build_cannot_use_are_one_line_errors_naming_the_key(change, message):
    with pytest.raises(InputError) as caught:
        check_sequences(dataclasses.replace(SEQ, **change))
    assert str(caught.value) == message


def loo_features(**split: object) -> FeatureSettings:
    from downbeat.jobs.config import load_config

    cfg = load_config(None, [f"split.{k}={v}" for k, v in {"protocol": "leave_one_out", **split}.items()])
    return dataclasses.replace(cfg.features, sequences=SEQ, eval=EVAL)


LOO_LOG = [
    ("a", 0, 0, "t1", "rock", "up"),
    ("a", 0, 0, "t2", "rock", "down"),  # the same second as t1, after it in event order
    ("a", 1, 0, "t3", "rock", "up"),
    ("a", 2, 0, "t4", "rock", "up"),  # the validation target
    ("a", 2, 0, "t5", "jazz", "up"),  # the test target: the same second, the last event
    ("b", 0, 0, "t1", "rock", "up"),  # two plays: no validation and test target, left out
    ("b", 1, 0, "t1", "rock", "up"),
]


def loo_tables(spark, rows):
    """Every gold table's frame under leave-one-out, uncached (the build job caches the inputs)."""
    inputs = gold_inputs(plays_frame(spark, rows), loo_features(), None, partitions=2)
    return gold_tables(inputs, loo_features(), train_rows=1)


def test_leave_one_out_tests_each_users_last_play_validates_the_one_before_and_trains_on_the_rest(spark):
    tables = {name: frame.collect() for name, frame in loo_tables(spark, LOO_LOG).items()}
    [row] = tables["gold/sequences"]
    assert (row[S.USER_ID], row[S.SPLIT], row[S.TRACK_IDS], row[S.TARGET_MASK]) == (
        "a",
        "train",
        [1, 2, 3],
        [1, 0, 1],
    )
    assert row[S.LAST_TS] == at(1) and row[S.CUTOFF_TS] == at(2)  # the validation target's time
    [test] = tables["gold/eval_next"]
    assert (test[S.USER_ID], test[S.TRACK_ID], test[S.HISTORY_TRACK_IDS], test[S.HISTORY_LENGTH]) == (
        "a",
        "t5",
        [1, 2, 3, 4],
        4,
    )
    [validation] = tables["gold/validation_next"]
    assert (validation[S.TRACK_ID], validation[S.HISTORY_TRACK_IDS], validation[S.CUTOFF_TS]) == (
        "t4",
        [1, 2, 3],
        at(2),
    )
    assert tables["gold/eval_pairs"] == [] and tables["gold/validation_pairs"] == []  # one target each
    assert {(r[S.USER_ID], r[S.TARGET_TRACK_ID]) for r in tables["gold/hard_negatives"]} == {
        ("a", "t1"),
        ("a", "t3"),
    }


@settings(max_examples=3)
@given(logs_strategy)
def test_leave_one_out_never_shows_a_row_its_target_or_anything_after_it(spark, rows):
    gold = loo_tables(spark, rows)
    read = ("gold/sequences", "gold/eval_next", "gold/validation_next", "gold/hard_negatives")
    tables = {name: gold[name].collect() for name in read}
    order: dict[str, list[tuple]] = {}
    for i, r in enumerate(rows):  # plays_frame's event ids follow the row order
        order.setdefault(r[0], []).append((at(r[1], r[2]), f"e{i:03d}", r[3]))
    plays = {user: sorted(events) for user, events in order.items()}
    kept = {user for user, events in plays.items() if len(events) >= 3}
    next_rows = {r[S.USER_ID]: r for r in tables["gold/eval_next"]}
    validation_rows = {r[S.USER_ID]: r for r in tables["gold/validation_next"]}
    assert set(next_rows) == set(validation_rows) == kept
    for user in kept:
        events = plays[user]
        assert (next_rows[user][S.TS], next_rows[user][S.TRACK_ID]) == (events[-1][0], events[-1][2])
        assert next_rows[user][S.HISTORY_LENGTH] == len(events) - 1
        assert (validation_rows[user][S.TS], validation_rows[user][S.TRACK_ID]) == (
            events[-2][0],
            events[-2][2],
        )
        assert validation_rows[user][S.HISTORY_LENGTH] == len(events) - 2
    for row in tables["gold/sequences"]:
        events = plays[row[S.USER_ID]]
        assert row[S.USER_ID] in kept and row[S.SPLIT] == "train"
        assert row[S.LAST_TS] <= events[-2][0] == row[S.CUTOFF_TS] and row[S.LENGTH] <= len(events) - 2
    for row in tables["gold/hard_negatives"]:  # drawn from training plays only
        training = plays[row[S.USER_ID]][:-2]
        assert row[S.NEGATIVE_TRACK_ID] is None or row[S.NEGATIVE_TRACK_ID] in {e[2] for e in training}
        assert row[S.POSITION] < len(training)


TEMPORAL_USERS_LOG = [  # by the stable hash, at 50%: a and c validate, b tests; at 10% c is held out
    ("a", 0, 0, "t1", "rock", "up"),
    ("a", 1, 0, "t2", "rock", "up"),
    ("a", 10, 0, "t3", "rock", "up"),
    ("b", 0, 0, "t1", "rock", "up"),
    ("b", 1, 0, "t3", "rock", "up"),
    ("b", 11, 0, "t2", "rock", "up"),
    ("b", 11, 5, "t4", "rock", "down"),
    ("c", 0, 0, "t2", "rock", "up"),
    ("c", 1, 0, "t1", "rock", "up"),
    ("c", 12, 0, "t4", "rock", "up"),
    ("d", 0, 0, "t1", "rock", "up"),  # nothing after the cut-off: trains only
    ("d", 2, 0, "t2", "rock", "up"),
    ("e", 11, 0, "t1", "rock", "up"),  # nothing before the cut-off: no target (the authors' too)
    ("e", 12, 0, "t3", "rock", "up"),
]


def test_temporal_users_trains_everyone_before_the_cutoff_and_halves_the_users_after_it(spark):
    assert [split_of(u, 50) for u in "abc"] == ["validation", "train", "validation"]
    assert split_of("c") == "validation"  # the temporal protocol would hold c out of training
    features = loo_features(protocol="temporal_users")
    inputs = gold_inputs(plays_frame(spark, TEMPORAL_USERS_LOG), features, CUTOFF, partitions=2)
    tables = {name: frame.collect() for name, frame in gold_tables(inputs, features, train_rows=1).items()}
    assert {(r[S.USER_ID], r[S.SPLIT], r[S.LENGTH]) for r in tables["gold/sequences"]} == {
        (user, "train", 2) for user in "abcd"
    }
    for table, users in (("gold/eval_next", {"b"}), ("gold/validation_next", {"a", "c"})):
        rows = tables[table]
        assert {r[S.USER_ID] for r in rows} == users
        assert all(r[S.TS] >= CUTOFF and r[S.CUTOFF_TS] == r[S.TS] for r in rows)  # each its own cut-off
    validation = {r[S.USER_ID]: (r[S.TRACK_ID], r[S.HISTORY_LENGTH]) for r in tables["gold/validation_next"]}
    assert validation == {"a": ("t3", 2), "c": ("t4", 2)}
    index = {r[S.TRACK_ID]: r[S.TRACK_IDX] for r in tables["gold/tracks"]}
    (last,) = tables["gold/eval_next"]  # b's last play, from every play before it, t2 after the cut-off too
    assert (last[S.TRACK_ID], last[S.IS_NEGATIVE], last[S.HISTORY_LENGTH]) == ("t4", True, 3)
    assert last[S.HISTORY_TRACK_IDS] == [index["t1"], index["t3"], index["t2"]]
    # one target a user: b's up t2 and down t4 make no pair (its up is in the history scoring it)
    assert tables["gold/eval_pairs"] == [] and tables["gold/validation_pairs"] == []
    assert {r[S.NEGATIVE_TRACK_ID] for r in tables["gold/hard_negatives"]} == {None}  # not b's later down


def test_the_temporal_cutoff_comes_from_the_quantile_the_date_or_the_last_days():
    from downbeat.pipelines.settings import SplitSettings
    from downbeat.pipelines.split import cutoff

    last = dt.datetime(2024, 5, 31, 18, 0)
    days = SplitSettings(test_days=3, cutoff_date=None, validation_days=1)
    assert cutoff(last, days) == dt.datetime(2024, 5, 29, tzinfo=dt.UTC)
    dated = dataclasses.replace(days, cutoff_date="2024-05-10")
    assert cutoff(last, dated) == dt.datetime(2024, 5, 10, tzinfo=dt.UTC)
    quantile = dataclasses.replace(days, cutoff_quantile=0.9)
    at_quantile = dt.datetime(2024, 5, 20, 7, 30, 15, 250)
    assert cutoff(last, quantile, at_quantile) == at_quantile.replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cutoff_quantile": 1.0}, "config key 'split.cutoff_quantile' must be between 0 and 1, got 1.0"),
        ({"cutoff_quantile": 0.0}, "config key 'split.cutoff_quantile' must be between 0 and 1, got 0.0"),
        (
            {"cutoff_quantile": 0.9, "cutoff_date": "2024-01-01"},
            "config keys 'split.cutoff_date' and 'split.cutoff_quantile' exclude each other",
        ),
    ],
)
def test_split_settings_a_build_cannot_use_are_one_line_errors_naming_the_key(change, message):
    from downbeat.pipelines.settings import SplitSettings
    from downbeat.pipelines.split import check_split

    with pytest.raises(InputError) as caught:
        check_split(
            dataclasses.replace(SplitSettings(test_days=3, cutoff_date=None, validation_days=1), **change)
        )
    assert str(caught.value) == message
