"""gold/hard_negatives: one hard negative per target position, by the UMAP'24 cascade.

Tiers, best first: a down the same UTC day on the same station; a skip the same day on the same
station; any later down; any later skip; else random (negative left null: drawn at training
time). Within a tier the candidate nearest in time wins. Candidates come from the history (before
the cut-off) and never share the target's track.

No pairwise join: each "nearest candidate with a different track" is found with running windows
over the user's time-ordered plays. The nearest candidate after a row may be the target's own
track; then the answer is the first candidate after *it* with a different track, which each
candidate row carries (the next run of a different track). The same holds looking back.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from pipelines import schemas as S
from pipelines.plays import micros_between
from pipelines.split import IS_POSITIVE, USER_POSITION

_CANDIDATE = tuple(S.NEGATIVE_CANDIDATE.fieldNames())


def _struct_of_row() -> Column:
    return F.struct(*[F.col(c) for c in _CANDIDATE])


def _nearest(
    is_candidate: Column, partition: list[str], name: str, *, ahead: bool
) -> list[tuple[str, Column]]:
    """Column steps: for each row, the nearest candidate before it (or after it, `ahead`) whose track
    differs from the row's.

    Looking ahead is looking back in reverse time order: Spark recomputes frames that end at
    UNBOUNDED FOLLOWING for every row (quadratic per user), while frames that start at UNBOUNDED
    PRECEDING grow row by row.
    """
    order = [F.col(S.TS), F.col(S.EVENT_ID)]
    window = Window.partitionBy(*partition).orderBy(*[c.desc() for c in order] if ahead else order)
    before = window.rowsBetween(Window.unboundedPreceding, -1)
    upto = window.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    nearest, further = f"_{name}_nearest", f"_{name}_further"
    nearest_candidate = F.last(F.when(is_candidate, _struct_of_row()), ignorenulls=True).over(before)
    # On candidate rows: the nearest candidate beyond this row's run of equal tracks.
    run_edge = is_candidate & (F.col(nearest).isNull() | (F.col(nearest)[S.TRACK_ID] != F.col(S.TRACK_ID)))
    further_candidate = F.last(F.when(run_edge, F.col(nearest)), ignorenulls=True).over(upto)
    carried = F.last(
        F.when(is_candidate, F.struct(*[F.col(c) for c in _CANDIDATE], F.col(further).alias("other"))),
        ignorenulls=True,
    ).over(before)
    return [(nearest, nearest_candidate), (further, further_candidate), (name, _differing(carried))]


def _differing(carried: Column) -> Column:
    """The carried candidate if its track is not this row's, else the candidate it carries."""
    own = F.struct(*[carried[c].alias(c) for c in _CANDIDATE])
    return (
        F.when(carried.isNull(), F.lit(None))
        .when(carried[S.TRACK_ID] != F.col(S.TRACK_ID), own)
        .otherwise(carried["other"])
    )


def _apply(df: DataFrame, steps: list[tuple[str, Column]]) -> DataFrame:
    for name, column in steps:
        df = df.withColumn(name, column)
    return df


def _nearer(before: str, after: str) -> Column:
    """The nearer in time of two candidates; on a tie the earlier one."""
    b, a = F.col(before), F.col(after)
    b_gap = micros_between(b[S.TS], F.col(S.TS))
    a_gap = micros_between(F.col(S.TS), a[S.TS])
    return F.when(b.isNull(), a).when(a.isNull(), b).when(a_gap < b_gap, a).otherwise(b)


def with_hard_negative(history: DataFrame) -> DataFrame:
    """Adds NEGATIVE_TRACK_ID, NEGATIVE_TS and TIER to split.history() rows with IS_POSITIVE.

    Target rows (positives) get their cascade's pick (tier 1..5; 5 = random, negative null); other
    rows get tier 0 and nulls. Windows over the user's order: one shuffle by user, two sorts.
    """
    user = [S.USER_ID]
    day = [S.USER_ID, S.DATE, S.STATION_ID]
    down = F.col(S.FEEDBACK) == S.DOWN
    skip = F.col(S.FEEDBACK) == S.SKIP
    # Grouped by window order, so that each order costs one sort.
    steps = [
        *_nearest(down, day, "_day_down_before", ahead=False),
        *_nearest(skip, day, "_day_skip_before", ahead=False),
        *_nearest(down, day, "_day_down_after", ahead=True),
        *_nearest(skip, day, "_day_skip_after", ahead=True),
        *_nearest(down, user, "_later_down", ahead=True),
        *_nearest(skip, user, "_later_skip", ahead=True),
    ]
    found = _apply(history, steps)
    tiers = [
        (S.TIER_SAME_DAY_DOWN, _nearer("_day_down_before", "_day_down_after")),
        (S.TIER_SAME_DAY_SKIP, _nearer("_day_skip_before", "_day_skip_after")),
        (S.TIER_LATER_DOWN, F.col("_later_down")),
        (S.TIER_LATER_SKIP, F.col("_later_skip")),
    ]
    none = F.lit(None).cast(S.NEGATIVE_CANDIDATE)
    chosen = F.when(~F.col(IS_POSITIVE), F.struct(F.lit(0).alias(S.TIER), none.alias("n"))).otherwise(
        F.coalesce(
            *[F.when(c.isNotNull(), F.struct(F.lit(t).alias(S.TIER), c.alias("n"))) for t, c in tiers],
            F.struct(F.lit(S.TIER_RANDOM).alias(S.TIER), none.alias("n")),
        )
    )
    temporary = [name for name, _ in steps]
    return (
        found.withColumn("_chosen", chosen)
        .withColumn(S.NEGATIVE_TRACK_ID, F.col("_chosen")["n"][S.TRACK_ID])
        .withColumn(S.NEGATIVE_TS, F.col("_chosen")["n"][S.TS])
        .withColumn(S.TIER, F.col("_chosen")[S.TIER].cast("int"))
        .drop("_chosen", *temporary)
    )


def hard_negatives(annotated: DataFrame) -> DataFrame:
    """One row per target position (user_id, position), from with_hard_negative() rows."""
    names = F.create_map(*[F.lit(x) for t, n in S.TIER_NAMES.items() for x in (t, n)])
    return annotated.where(F.col(IS_POSITIVE)).select(
        F.col(S.USER_ID),
        F.col(USER_POSITION).alias(S.POSITION),
        F.col(S.TRACK_ID).alias(S.TARGET_TRACK_ID),
        F.col(S.TS).alias(S.TARGET_TS),
        F.col(S.STATION_ID),
        F.col(S.NEGATIVE_TRACK_ID),
        F.col(S.NEGATIVE_TS),
        F.col(S.TIER),
        names[F.col(S.TIER)].alias(S.TIER_NAME),
    )
