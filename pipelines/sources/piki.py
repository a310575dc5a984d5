"""Piki: CSV with a header `id, liked, personalized, song_id, spotify_popularity, timestamp, user_id`.

`liked` 1 (like) and 2 (super-like) are ups, 0 is a down. Timestamps have no zone: read as UTC.
No station.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sources._common import (
    LINE,
    IngestSettings,
    SourceSettings,
    blank,
    by_header,
    csv_fields,
    first_problem,
    numbered_lines,
    parsed_frame,
    says,
    union_all,
)

NAME = "piki"
# Ids that mean the same in every source; the others get a `piki:` prefix in bronze/events
# (sources._common.events): Piki's user and song numbers are its own.
GLOBAL_IDS: frozenset[str] = frozenset()
REQUIRED = ("liked", "song_id", "timestamp", "user_id")


def parse(
    spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings | None = None
) -> DataFrame:
    """One row per data line; see sources._common.PARSED."""
    frames = []
    for header, paths in by_header(files, REQUIRED, NAME).items():  # a header's own column positions
        lines = numbered_lines(spark, paths).where(F.col(LINE) > 1)
        lines, get, width_problem = csv_fields(lines, header)

        def col(name: str, get: Callable[[str], Column] = get) -> Column:
            return F.trim(get(name))

        liked = col("liked")
        ts = F.try_to_timestamp(col("timestamp"), F.lit("yyyy-MM-dd HH:mm:ss"))
        reason = first_problem(
            width_problem,
            (blank(col("user_id")), "empty user_id"),
            (blank(col("song_id")), "empty song_id"),
            (ts.isNull(), says("timestamp ", col("timestamp"), " is not yyyy-mm-dd hh:mm:ss")),
            (~liked.isin("0", "1", "2"), says("liked ", liked, " is not 0, 1 or 2")),
        )
        frames.append(
            parsed_frame(
                lines,
                user=col("user_id"),
                ts=ts,
                track=col("song_id"),
                station=F.lit(None),
                session=F.lit(None),
                feedback=F.when(liked == "0", F.lit(S.DOWN)).otherwise(F.lit(S.UP)),
                ms_played=F.lit(None),
                reason=reason,
                window=window,
            )
        )
    return union_all(frames)
