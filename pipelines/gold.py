"""Every gold table's frame from silver/plays, around one partitioning of the plays by user.

gold_inputs() gives the shared inputs (plays by user with roles, the hard-negative columns, the
vocabularies, gold/sequences) and gold_tables() every table from them. Both only plan: the build job
caches the shared inputs between the two, counts the training rows, and writes the tables.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from downbeat.models.contract import Tables
from downbeat.pipelines import schemas as S
from downbeat.pipelines.eval_sets import eval_next, eval_pairs
from downbeat.pipelines.hard_negatives import hard_negatives, with_hard_negative
from downbeat.pipelines.sequences import sequences, training_sequences
from downbeat.pipelines.settings import FeatureSettings
from downbeat.pipelines.split import Periods, leave_one_out, temporal, temporal_users, with_roles
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
class GoldInputs:
    """The frames several gold tables read. The caller caches `shared` before any table is computed
    (each is then computed once), and releases it once the tables are written."""

    roles: DataFrame  # silver/plays partitioned by user, with each play's role
    vocabulary: DataFrame  # gold/tracks
    station_ids: DataFrame  # gold/stations
    periods: Periods
    annotated: DataFrame  # the training period, with the hard-negative columns
    sequences: DataFrame  # gold/sequences

    @property
    def shared(self) -> tuple[DataFrame, ...]:
        """In the order they are computed from each other: a frame cached after one it reads picks
        up that one's cache; cached before it, it would compute what it reads again."""
        return (self.roles, self.vocabulary, self.station_ids, self.annotated, self.sequences)

    def training_rows(self) -> DataFrame:
        """gold/sequences' training rows (their count sizes gold/training_sequences' files)."""
        return self.sequences.where(F.col(S.SPLIT) == S.TRAIN)


def gold_inputs(
    played: DataFrame, features: FeatureSettings, cutoff_ts: dt.datetime | None, partitions: int
) -> GoldInputs:
    """The shared inputs of every gold table, around one partitioning of silver/plays by user.

    cutoff_ts: the temporal split's cut-off (None under `split.protocol: leave_one_out`).
    """
    roles = with_roles(played, features.sequences, features.eval).repartition(partitions, S.USER_ID)
    vocabulary = tracks(played)
    station_ids = stations(played)
    periods = _periods(roles, features, cutoff_ts)
    annotated = with_hard_negative(periods.training)
    seqs = sequences(
        annotated,
        vocabulary,
        station_ids,
        cutoff=periods.training_cutoff,
        max_length=features.sequences.row_length(),
        validation_percent=periods.validation_percent,
        by_session=features.sequences.unit == "session",
        min_events=features.sequences.session_min_events if features.sequences.unit == "session" else 1,
    )
    return GoldInputs(roles, vocabulary, station_ids, periods, annotated, seqs)


def gold_tables(inputs: GoldInputs, features: FeatureSettings, train_rows: int) -> dict[str, DataFrame]:
    """Every gold table's frame from the shared inputs. gold/training_sequences' rows hold
    `features.sequences.row_length()` positions (a data setting: a model reads the last ones).
    train_rows: gold/sequences' training rows, which size gold/training_sequences' files.
    """
    return {
        Tables.TRACKS: inputs.vocabulary,
        Tables.STATIONS: inputs.station_ids,
        Tables.SEQUENCES: inputs.sequences,
        Tables.TRAINING_SEQUENCES: training_sequences(
            inputs.sequences,
            width=features.sequences.row_length(),
            partitions=max(1, -(-train_rows // TRAINING_ROWS_PER_GROUP)),
        ),
        Tables.HARD_NEGATIVES: hard_negatives(inputs.annotated),
        **_evaluation_frames(inputs, features),
        # from the user-partitioned plays and vocabularies: no shuffle of all plays again
        Tables.STATS: stats(inputs.roles, inputs.sequences, inputs.vocabulary, inputs.station_ids),
    }


def _periods(roles: DataFrame, features: FeatureSettings, cutoff_ts: dt.datetime | None) -> Periods:
    """The split's frames under `split.protocol`: leave-one-out, or the temporal cut-off (validation
    users held out of training with a period before the cut-off, or half the users after it)."""
    if features.split.protocol == "leave_one_out":
        return leave_one_out(roles)
    if cutoff_ts is None:
        raise ValueError("the temporal split needs its cut-off")
    if features.split.protocol == "temporal_users":
        return temporal_users(roles, cutoff_ts)
    return temporal(roles, cutoff_ts, features.split, features.sequences.validation_percent)


def _evaluation_frames(inputs: GoldInputs, features: FeatureSettings) -> dict[str, DataFrame]:
    """gold/eval_pairs, eval_next, validation_pairs and validation_next: each period's targets, and
    the histories before its cut-off (the training plays, unless the protocol gives its own)."""
    periods, annotated = inputs.periods, inputs.annotated
    vocabulary, station_ids = inputs.vocabulary, inputs.station_ids
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
