"""Every table's schema and column names, and the integer codes the gold tables use.

Column names are constants: pipeline code refers to `USER_ID`, never to the literal "user_id".
"""

from __future__ import annotations

from pyspark.sql import types as T

# ---- column names ----------------------------------------------------------------------------
USER_ID = "user_id"
TS = "ts"
TRACK_ID = "track_id"
STATION_ID = "station_id"
SESSION_ID = "session_id"
FEEDBACK = "feedback"
MS_PLAYED = "ms_played"
SOURCE = "source"
EVENT_ID = "event_id"
DATE = "date"
POSITION = "position"

# ---- feedback ----------------------------------------------------------------------------------
UP, DOWN, SKIP, PLAY = "up", "down", "skip", "play"
FEEDBACK_TYPES = (UP, DOWN, SKIP, PLAY)
# Integer codes in gold arrays; 0 is padding.
FEEDBACK_IDS = {UP: 1, DOWN: 2, SKIP: 3, PLAY: 4}
PAD = 0

# ---- hard-negative tiers (UMAP'24 cascade), best first; 0 = not a target position -------------
TIER_SAME_DAY_DOWN = 1
TIER_SAME_DAY_SKIP = 2
TIER_LATER_DOWN = 3
TIER_LATER_SKIP = 4
TIER_RANDOM = 5
TIER_NAMES = {
    TIER_SAME_DAY_DOWN: "same_day_down",
    TIER_SAME_DAY_SKIP: "same_day_skip",
    TIER_LATER_DOWN: "later_down",
    TIER_LATER_SKIP: "later_skip",
    TIER_RANDOM: "random",
}

TRAIN, VALIDATION = "train", "validation"


def _struct(*fields: tuple[str, T.DataType, bool]) -> T.StructType:
    return T.StructType([T.StructField(name, dtype, nullable) for name, dtype, nullable in fields])


_INTS = T.ArrayType(T.IntegerType(), containsNull=False)

# bronze/events: the canonical event every adapter produces, partitioned by `date` (UTC day of ts).
EVENTS = _struct(
    (USER_ID, T.StringType(), False),
    (TS, T.TimestampType(), False),
    (TRACK_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (SESSION_ID, T.StringType(), True),
    (FEEDBACK, T.StringType(), True),
    (MS_PLAYED, T.LongType(), True),
    (SOURCE, T.StringType(), False),
    (EVENT_ID, T.StringType(), False),
    (DATE, T.DateType(), False),
)

# bronze/quarantine: one row per rejected input row.
QUARANTINE = _struct(
    (SOURCE, T.StringType(), False),
    ("file", T.StringType(), False),
    ("line", T.LongType(), False),
    ("reason", T.StringType(), False),
    ("raw", T.StringType(), True),
    ("row_id", T.StringType(), False),
)

# silver/plays: one row per play; `position` counts from 0 within the session.
PLAYS = _struct(
    (USER_ID, T.StringType(), False),
    (SESSION_ID, T.StringType(), False),
    (POSITION, T.IntegerType(), False),
    (TS, T.TimestampType(), False),
    (TRACK_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (FEEDBACK, T.StringType(), False),
    (SOURCE, T.StringType(), False),
    (MS_PLAYED, T.LongType(), True),
    (EVENT_ID, T.StringType(), False),
    (DATE, T.DateType(), False),
)

# gold/tracks and gold/stations: vocabularies; index 0 is padding (and "no station").
TRACK_IDX = "track_idx"
STATION_IDX = "station_idx"
PLAY_COUNT = "play_count"
TRACKS = _struct(
    (TRACK_ID, T.StringType(), False),
    (TRACK_IDX, T.IntegerType(), False),
    (PLAY_COUNT, T.LongType(), False),
)
STATIONS = _struct(
    (STATION_ID, T.StringType(), False),
    (STATION_IDX, T.IntegerType(), False),
    (PLAY_COUNT, T.LongType(), False),
)

# gold/sequences: one row per user; aligned arrays, oldest first, ending on a positive.
SPLIT = "split"
LENGTH = "length"
TRACK_IDS = "track_ids"
STATION_IDS = "station_ids"
FEEDBACK_IDS_COL = "feedback_ids"
TARGET_MASK = "is_target"
NEGATIVE_TRACK_IDS = "negative_track_ids"
NEGATIVE_TIERS = "negative_tiers"
FIRST_TS = "first_ts"
LAST_TS = "last_ts"
CUTOFF_TS = "cutoff_ts"
SEQUENCES = _struct(
    (USER_ID, T.StringType(), False),
    (SPLIT, T.StringType(), False),
    (LENGTH, T.IntegerType(), False),
    (TRACK_IDS, _INTS, False),
    (STATION_IDS, _INTS, False),
    (FEEDBACK_IDS_COL, _INTS, False),
    (TARGET_MASK, _INTS, False),
    (NEGATIVE_TRACK_IDS, _INTS, False),
    (NEGATIVE_TIERS, _INTS, False),
    (FIRST_TS, T.TimestampType(), False),
    (LAST_TS, T.TimestampType(), False),
    (CUTOFF_TS, T.TimestampType(), False),
)

# gold/hard_negatives: one row per target position (a positive play before the cut-off).
TARGET_TRACK_ID = "target_track_id"
TARGET_TS = "target_ts"
NEGATIVE_TRACK_ID = "negative_track_id"
NEGATIVE_TS = "negative_ts"
TIER = "tier"
TIER_NAME = "tier_name"
HARD_NEGATIVES = _struct(
    (USER_ID, T.StringType(), False),
    (POSITION, T.IntegerType(), False),
    (TARGET_TRACK_ID, T.StringType(), False),
    (TARGET_TS, T.TimestampType(), False),
    (STATION_ID, T.StringType(), True),
    (NEGATIVE_TRACK_ID, T.StringType(), True),
    (NEGATIVE_TS, T.TimestampType(), True),
    (TIER, T.IntegerType(), False),
    (TIER_NAME, T.StringType(), False),
)

# gold/eval_pairs: test-period (up, down) pairs by one user on one station.
UP_TRACK_ID = "up_track_id"
DOWN_TRACK_ID = "down_track_id"
UP_TS = "up_ts"
DOWN_TS = "down_ts"
UP_TRACK_IDX = "up_track_idx"
DOWN_TRACK_IDX = "down_track_idx"
EVAL_PAIRS = _struct(
    (USER_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (UP_TRACK_ID, T.StringType(), False),
    (DOWN_TRACK_ID, T.StringType(), False),
    (UP_TS, T.TimestampType(), False),
    (DOWN_TS, T.TimestampType(), False),
    (STATION_IDX, T.IntegerType(), False),
    (UP_TRACK_IDX, T.IntegerType(), False),
    (DOWN_TRACK_IDX, T.IntegerType(), False),
    (CUTOFF_TS, T.TimestampType(), False),
)

# gold/eval_next: per user with test-period events, the first one, and the history before the cut-off.
FEEDBACK_ID = "feedback_id"
HISTORY_LENGTH = "history_length"
HISTORY_TRACK_IDS = "history_track_ids"
HISTORY_STATION_IDS = "history_station_ids"
HISTORY_FEEDBACK_IDS = "history_feedback_ids"
EVAL_NEXT = _struct(
    (USER_ID, T.StringType(), False),
    (TS, T.TimestampType(), False),
    (TRACK_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (FEEDBACK, T.StringType(), False),
    (TRACK_IDX, T.IntegerType(), False),
    (STATION_IDX, T.IntegerType(), False),
    (FEEDBACK_ID, T.IntegerType(), False),
    (HISTORY_LENGTH, T.IntegerType(), False),
    (HISTORY_TRACK_IDS, _INTS, False),
    (HISTORY_STATION_IDS, _INTS, False),
    (HISTORY_FEEDBACK_IDS, _INTS, False),
    (CUTOFF_TS, T.TimestampType(), False),
)

# gold/stats: the dataset summary, one row per metric.
METRIC = "metric"
VALUE = "value"
STATS = _struct((METRIC, T.StringType(), False), (VALUE, T.DoubleType(), True))

TABLES = {
    "bronze/events": EVENTS,
    "bronze/quarantine": QUARANTINE,
    "silver/plays": PLAYS,
    "gold/tracks": TRACKS,
    "gold/stations": STATIONS,
    "gold/sequences": SEQUENCES,
    "gold/hard_negatives": HARD_NEGATIVES,
    "gold/eval_pairs": EVAL_PAIRS,
    "gold/eval_next": EVAL_NEXT,
    "gold/stats": STATS,
}
