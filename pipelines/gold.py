"""Every gold table's frame from silver/plays, around one partitioning of the plays by user.

The shared inputs (plays by user with roles, the hard-negative columns, the vocabularies,
gold/sequences) are cached once; each table reads them, and GoldFrames.unpersist() releases them
after the tables are written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from downbeat.models.contract import Tables
from downbeat.pipelines import schemas as S
from downbeat.pipelines.eval_sets import eval_next, eval_pairs
from downbeat.pipelines.hard_negatives import hard_negatives, with_hard_negative
from downbeat.pipelines.sequences import sequences, training_sequences
from downbeat.pipelines.settings import FeatureSettings
from downbeat.pipelines.split import Periods, leave_one_out, temporal, with_roles
from downbeat.pipelines.stats import stats
from downbeat.pipelines.vocabulary import stations, tracks

GOLD = (
    Tables.TRACKS,
    Tables.STATIONS,
    Tables.SEQUENCES,
    Tables.TRAINING_SEQUENCES,
    Tables.HARD_NEGATIVES,
    Tables.EVAL_PAIRS,
    Tables.EVAL_NEXT,
    Tables.VALIDATION_PAIRS,
    Tables.VALIDATION_NEXT,
    Tables.STATS,
)
# Rows per partition of the user-partitioned plays that every gold table reads from the cache: a
# cached partition is read back whole, so it must stay far below the executor heap.
ROWS_PER_PARTITION = 500_000
# Rows per file of gold/training_sequences, one row group each: a Petastorm shard is a row group, so
# this sets how evenly ranks share the rows, and every group read costs a file open (~6 MB a group
# at width 200).
TRAINING_ROWS_PER_GROUP = 2048


def compression_of(table: str) -> str:
    """Streamed tables are read far more often than stored: uncompressed (decoding is the loader's cost)."""
    return "uncompressed" if table in S.STREAMED_TABLES else "snappy"


def user_partitions(shuffle_partitions: int, rows: int) -> int:
    """Partitions for plays by user: the session's shuffle partitions, more for big tables."""
    return max(shuffle_partitions, -(-rows // ROWS_PER_PARTITION))


@dataclass(frozen=True)
class GoldFrames:
    """Every gold table's frame, and the shared inputs they cache (to release once written)."""

    tables: dict[str, DataFrame]
    cached: tuple[DataFrame, ...]

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def gold_frames(
    played: DataFrame, features: FeatureSettings, cutoff_ts: dt.datetime | None, partitions: int, width: int
) -> GoldFrames:
    """Every gold table's frame, from one pass that partitions silver/plays by user.

    cutoff_ts: the temporal split's cut-off (None under `split.protocol: leave_one_out`).
    width: positions per row of gold/training_sequences (what the model reads).
    """
    level = StorageLevel.MEMORY_AND_DISK
    roles = with_roles(played, features.sequences, features.eval)
    roles = roles.repartition(partitions, S.USER_ID).persist(level)
    vocabulary = tracks(played).persist(level)
    station_ids = stations(played).persist(level)
    periods = _periods(roles, features, cutoff_ts)
    annotated = with_hard_negative(periods.training).persist(level)
    seqs = sequences(
        annotated,
        vocabulary,
        station_ids,
        cutoff=periods.training_cutoff,
        max_length=features.sequences.row_length(),
        validation_percent=periods.validation_percent,
        by_session=features.sequences.unit == "session",
        min_events=features.sequences.session_min_events if features.sequences.unit == "session" else 1,
    ).persist(level)  # written, and summarised in gold/stats
    train_rows = seqs.where(F.col(S.SPLIT) == S.TRAIN).count()
    tables = {
        Tables.TRACKS: vocabulary,
        Tables.STATIONS: station_ids,
        Tables.SEQUENCES: seqs,
        Tables.TRAINING_SEQUENCES: training_sequences(
            seqs, width=width, partitions=max(1, -(-train_rows // TRAINING_ROWS_PER_GROUP))
        ),
        Tables.HARD_NEGATIVES: hard_negatives(annotated),
        **_evaluation_frames(periods, annotated, vocabulary, station_ids, features),
        # from the cached, user-partitioned plays and vocabularies: no shuffle of all plays again
        Tables.STATS: stats(roles, seqs, vocabulary, station_ids),
    }
    return GoldFrames(tables, (roles, vocabulary, station_ids, annotated, seqs))


def _periods(roles: DataFrame, features: FeatureSettings, cutoff_ts: dt.datetime | None) -> Periods:
    """The split's frames under `split.protocol`: leave-one-out, or the temporal cut-off."""
    if features.split.protocol == "leave_one_out":
        return leave_one_out(roles)
    if cutoff_ts is None:
        raise ValueError("the temporal split needs its cut-off")
    return temporal(roles, cutoff_ts, features.split, features.sequences.validation_percent)


def _evaluation_frames(
    periods: Periods,
    annotated: DataFrame,
    vocabulary: DataFrame,
    station_ids: DataFrame,
    features: FeatureSettings,
) -> dict[str, DataFrame]:
    """gold/eval_pairs, eval_next, validation_pairs and validation_next: each period's targets, and
    the histories before its cut-off (the training plays, unless the protocol gives its own)."""
    test_history = annotated if periods.test_history is None else periods.test_history
    validation_history = annotated if periods.validation_history is None else periods.validation_history
    pairs_per_user = features.eval.max_pairs_per_user
    return {
        Tables.EVAL_PAIRS: eval_pairs(
            periods.test_targets,
            vocabulary,
            station_ids,
            cutoff=periods.test_cutoff,
            max_pairs_per_user=pairs_per_user,
        ),
        Tables.EVAL_NEXT: eval_next(
            test_history,
            periods.test_targets,
            vocabulary,
            station_ids,
            cutoff=periods.test_cutoff,
            max_length=features.sequences.max_length,
        ),
        Tables.VALIDATION_PAIRS: eval_pairs(
            periods.validation_targets,
            vocabulary,
            station_ids,
            cutoff=periods.validation_cutoff,
            max_pairs_per_user=pairs_per_user,
        ),
        Tables.VALIDATION_NEXT: eval_next(
            validation_history,
            periods.validation_targets,
            vocabulary,
            station_ids,
            cutoff=periods.validation_cutoff,
            max_length=features.sequences.max_length,
        ),
    }
