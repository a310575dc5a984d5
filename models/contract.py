"""The gold tables' contract between pipelines/ (which write them) and models/ (which read them).

Table names (`Tables`), column names, feedback codes, hard-negative tiers and split names, in one
place that imports nothing but the standard library, so models/ (which never imports pyspark) and
pipelines/schemas.py (which builds the Spark schemas from these names) cannot drift apart.
Which plays are positives and which are negatives is decided once, by the pipelines
(`pipelines/split.py`), and stored in the gold tables as columns (`is_target`, `is_positive`,
`is_negative`); readers use those columns and never re-derive the rule.
"""

from __future__ import annotations


class Tables:
    """Every table's name: its path under the lakehouse root."""

    EVENTS = "bronze/events"
    QUARANTINE = "bronze/quarantine"
    DOCTOR = "bronze/doctor"  # `downbeat doctor`'s probe table, removed after the probe
    PLAYS = "silver/plays"
    TRACKS = "gold/tracks"
    STATIONS = "gold/stations"
    SEQUENCES = "gold/sequences"
    TRAINING_SEQUENCES = "gold/training_sequences"
    HARD_NEGATIVES = "gold/hard_negatives"
    EVAL_PAIRS = "gold/eval_pairs"
    EVAL_NEXT = "gold/eval_next"
    VALIDATION_PAIRS = "gold/validation_pairs"
    VALIDATION_NEXT = "gold/validation_next"
    STATS = "gold/stats"
    RECOMMENDATIONS = "gold/recommendations"


# ---- feedback ----------------------------------------------------------------------------------
UP, DOWN, SKIP, PLAY = "up", "down", "skip", "play"
FEEDBACK_TYPES = (UP, DOWN, SKIP, PLAY)
# Integer codes in gold arrays; 0 is padding.
PAD = 0
UP_ID, DOWN_ID, SKIP_ID, PLAY_ID = 1, 2, 3, 4
FEEDBACK_IDS = {UP: UP_ID, DOWN: DOWN_ID, SKIP: SKIP_ID, PLAY: PLAY_ID}
N_FEEDBACK = 5  # codes 0..4

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

# ---- column names shared by several tables -----------------------------------------------------
USER_ID = "user_id"
TS = "ts"
TRACK_ID = "track_id"
STATION_ID = "station_id"
FEEDBACK = "feedback"
TRACK_IDX = "track_idx"
STATION_IDX = "station_idx"
CUTOFF_TS = "cutoff_ts"

# gold/sequences: aligned id arrays per user (or per session: sequences.unit)
SPLIT = "split"
LENGTH = "length"
TRACK_IDS = "track_ids"
STATION_IDS = "station_ids"
FEEDBACK_IDS_COL = "feedback_ids"
TARGET_MASK = "is_target"
NEGATIVE_TRACK_IDS = "negative_track_ids"
NEGATIVE_TIERS = "negative_tiers"
SEQUENCE_ARRAYS = (
    TRACK_IDS,
    STATION_IDS,
    FEEDBACK_IDS_COL,
    TARGET_MASK,
    NEGATIVE_TRACK_IDS,
    NEGATIVE_TIERS,
)

# gold/training_sequences: the train rows of gold/sequences in the layout the training loader
# streams: each array as a fixed-width binary column of `width` little-endian values, left-padded
# with 0 (the most recent item last), so a row group is one contiguous (rows, width) buffer per array.
# Ids are int32; feedback codes, target flags (0/1) and tiers are single bytes.
TRAINING_ARRAYS = SEQUENCE_ARRAYS
TRAINING_DTYPES = {
    TRACK_IDS: "<i4",
    STATION_IDS: "<i4",
    FEEDBACK_IDS_COL: "i1",
    TARGET_MASK: "i1",
    NEGATIVE_TRACK_IDS: "<i4",
    NEGATIVE_TIERS: "i1",
}

# gold/eval_pairs and gold/validation_pairs: one (up event, down event) pair per row
UP_TRACK_ID = "up_track_id"
DOWN_TRACK_ID = "down_track_id"
UP_TRACK_IDX = "up_track_idx"
DOWN_TRACK_IDX = "down_track_idx"
UP_EVENT_ID = "up_event_id"
DOWN_EVENT_ID = "down_event_id"

# gold/eval_next and gold/validation_next: a user's first target-period play and the history before it
FEEDBACK_ID = "feedback_id"
IS_POSITIVE = "is_positive"
IS_NEGATIVE = "is_negative"
HISTORY_LENGTH = "history_length"
HISTORY_TRACK_IDS = "history_track_ids"
HISTORY_STATION_IDS = "history_station_ids"
HISTORY_FEEDBACK_IDS = "history_feedback_ids"

# ---- scoring frames (models/serving.py): what a model takes and gives, and the recommend job ----
CANDIDATE_TRACK_IDS = "candidate_track_ids"
EXCLUDE_TRACK_IDS = "exclude_track_ids"  # tracks never to recommend to the row's user
TOP_TRACK_IDS = "top_track_ids"  # recommended track idx, best first
SCORES = "scores"
SERVED = "served"
