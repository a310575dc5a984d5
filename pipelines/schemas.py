"""Every table's schema and column names, and the integer codes the gold tables use.

Column names are constants: pipeline code refers to `USER_ID`, never to the literal "user_id".
The names and codes the models read too come from `contract` (no pyspark there), the one source
both sides import.
"""

from __future__ import annotations

from pyspark.sql import types as T

from downbeat.models.contract import (  # noqa: F401  (re-exported: pipeline code reads every name from here)
    CUTOFF_TS,
    DOWN,
    DOWN_EVENT_ID,
    DOWN_TRACK_ID,
    DOWN_TRACK_IDX,
    EXCLUDE_TRACK_IDS,
    FEEDBACK,
    FEEDBACK_ID,
    FEEDBACK_IDS,
    FEEDBACK_IDS_COL,
    FEEDBACK_TYPES,
    HISTORY_FEEDBACK_IDS,
    HISTORY_LENGTH,
    HISTORY_STATION_IDS,
    HISTORY_TRACK_IDS,
    IS_NEGATIVE,
    IS_POSITIVE,
    LENGTH,
    NEGATIVE_TIERS,
    NEGATIVE_TRACK_IDS,
    PAD,
    PLAY,
    SCORES,
    SEQUENCE_ARRAYS,
    SERVED,
    SKIP,
    SPLIT,
    STATION_ID,
    STATION_IDS,
    STATION_IDX,
    TARGET_MASK,
    TIER_LATER_DOWN,
    TIER_LATER_SKIP,
    TIER_NAMES,
    TIER_RANDOM,
    TIER_SAME_DAY_DOWN,
    TIER_SAME_DAY_SKIP,
    TOP_TRACK_IDS,
    TRACK_ID,
    TRACK_IDS,
    TRACK_IDX,
    TRAIN,
    TRAINING_DTYPES,
    TS,
    UP,
    UP_EVENT_ID,
    UP_TRACK_ID,
    UP_TRACK_IDX,
    USER_ID,
    VALIDATION,
    Tables,
)

# ---- column names ----------------------------------------------------------------------------
SESSION_ID = "session_id"
MS_PLAYED = "ms_played"
SOURCE = "source"
EVENT_ID = "event_id"
DATE = "date"
POSITION = "position"


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

# gold/sequences: one row per user (per session with sequences.unit session); aligned arrays, oldest
# first, ending on a positive.
FIRST_TS = "first_ts"
LAST_TS = "last_ts"
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

# gold/training_sequences: one train row per user (or session), each array a fixed-width binary column
# (contract.py).
TRAINING_SEQUENCES = _struct(
    (USER_ID, T.StringType(), False),
    (LENGTH, T.IntegerType(), False),  # positions holding an item (the rest, on the left, are padding)
    *((name, T.BinaryType(), False) for name in SEQUENCE_ARRAYS),
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

# gold/eval_pairs (test period, every user) and gold/validation_pairs (validation period,
# validation users): one row per (positive event, negative event) of one user on one station.
UP_TS = "up_ts"
DOWN_TS = "down_ts"
EVAL_PAIRS = _struct(
    (USER_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (UP_TRACK_ID, T.StringType(), False),
    (DOWN_TRACK_ID, T.StringType(), False),
    (UP_TS, T.TimestampType(), False),
    (DOWN_TS, T.TimestampType(), False),
    (UP_EVENT_ID, T.StringType(), False),
    (DOWN_EVENT_ID, T.StringType(), False),
    (STATION_IDX, T.IntegerType(), False),
    (UP_TRACK_IDX, T.IntegerType(), False),
    (DOWN_TRACK_IDX, T.IntegerType(), False),
    (CUTOFF_TS, T.TimestampType(), False),
)

# gold/eval_next (and gold/validation_next): per user with target-period events, the first one (under
# leave_one_out and temporal_users: the user's last play), its role (a positive target, a negative
# one, or neither), and the history before the cut-off (cutoff_ts).
EVAL_NEXT = _struct(
    (USER_ID, T.StringType(), False),
    (TS, T.TimestampType(), False),
    (TRACK_ID, T.StringType(), False),
    (STATION_ID, T.StringType(), True),
    (FEEDBACK, T.StringType(), False),
    (TRACK_IDX, T.IntegerType(), False),
    (STATION_IDX, T.IntegerType(), False),
    (FEEDBACK_ID, T.IntegerType(), False),
    (IS_POSITIVE, T.BooleanType(), False),
    (IS_NEGATIVE, T.BooleanType(), False),
    (HISTORY_LENGTH, T.IntegerType(), False),
    (HISTORY_TRACK_IDS, _INTS, False),
    (HISTORY_STATION_IDS, _INTS, False),
    (HISTORY_FEEDBACK_IDS, _INTS, False),
    (EXCLUDE_TRACK_IDS, _INTS, False),  # left out of the user's ranking (eval.exclude_seen)
    (CUTOFF_TS, T.TimestampType(), False),
)

# A hard-negative candidate as the cascade carries it through its windows (pipelines/hard_negatives.py).
NEGATIVE_CANDIDATE = _struct((TS, T.TimestampType(), True), (TRACK_ID, T.StringType(), True))

# One history position as eval_next collects it, before it splits into the HISTORY_* arrays.
HISTORY_ITEM = _struct(
    ("p", T.IntegerType(), True),
    ("track", T.IntegerType(), True),
    ("station", T.IntegerType(), True),
    ("feedback", T.IntegerType(), True),
)

# gold/stats: the dataset summary, one row per metric.
METRIC = "metric"
VALUE = "value"
STATS = _struct((METRIC, T.StringType(), False), (VALUE, T.DoubleType(), True))

# gold/recommendations (written by `downbeat recommend`, not by build): one row per (model version,
# user, rank); a run replaces the rows of its model version (for its users), keeping other versions'.
RANK = "rank"
SCORE = "score"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
MODEL_RUN_ID = "model_run_id"
HISTORY_VERSION = "history_version"
RECOMMENDATIONS = _struct(
    (USER_ID, T.StringType(), False),
    (RANK, T.IntegerType(), False),
    (TRACK_ID, T.StringType(), False),
    (TRACK_IDX, T.IntegerType(), False),
    (SCORE, T.FloatType(), False),
    (MODEL_NAME, T.StringType(), False),
    (MODEL_VERSION, T.StringType(), False),
    (MODEL_RUN_ID, T.StringType(), False),
    (HISTORY_VERSION, T.LongType(), False),
)

# Tables laid out for the training loader: uncompressed files of one row group each. `build` writes
# them so; `maintain --optimize` leaves them alone (compaction would undo the layout).
STREAMED_TABLES = (Tables.TRAINING_SEQUENCES,)

TABLES = {
    Tables.EVENTS: EVENTS,
    Tables.QUARANTINE: QUARANTINE,
    Tables.PLAYS: PLAYS,
    Tables.TRACKS: TRACKS,
    Tables.STATIONS: STATIONS,
    Tables.SEQUENCES: SEQUENCES,
    Tables.TRAINING_SEQUENCES: TRAINING_SEQUENCES,
    Tables.HARD_NEGATIVES: HARD_NEGATIVES,
    Tables.EVAL_PAIRS: EVAL_PAIRS,
    Tables.EVAL_NEXT: EVAL_NEXT,
    Tables.VALIDATION_PAIRS: EVAL_PAIRS,
    Tables.VALIDATION_NEXT: EVAL_NEXT,
    Tables.STATS: STATS,
    Tables.RECOMMENDATIONS: RECOMMENDATIONS,
}
