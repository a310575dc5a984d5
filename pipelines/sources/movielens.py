"""MovieLens ratings (`u.data`): tab-separated `user item rating unix_seconds`, no header.

Ratings >= `sources.movielens.up_min` are ups, <= `down_max` downs, the rest plays. When `u.item`
and `u.genre` lie beside the ratings file, the item's first genre (in `u.genre` order) is its
station; otherwise there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pipelines import schemas as S
from pipelines.sources._common import (
    RAW,
    SourceSettings,
    blank,
    field,
    first_problem,
    numbered_lines,
    parsed_frame,
    says,
    wrong_width,
)

NAME = "movielens"
# Ids that mean the same in every source; the others get a `movielens:` prefix in bronze/events
# (sources._common.events): MovieLens's user and item numbers mean nothing outside it.
GLOBAL_IDS: frozenset[str] = frozenset()
FIELDS = 4
ITEM = "_item"
GENRE = "_genre"


def parse(spark: SparkSession, files: Sequence[str], settings: SourceSettings) -> DataFrame:
    """One row per input line; see sources._common.PARSED."""
    thresholds = settings.movielens
    lines = numbered_lines(spark, files)
    parts = F.split(F.col(RAW), "\t", -1)
    user, item, rating_text, seconds_text = (F.trim(field(parts, i)) for i in range(FIELDS))
    rating = rating_text.try_cast("int")
    seconds = seconds_text.try_cast("long")
    reason = first_problem(
        wrong_width(parts, FIELDS, "tab"),
        (blank(user), "empty user id"),
        (blank(item), "empty item id"),
        (rating.isNull() | (rating < 1) | (rating > 5), says("rating ", rating_text, " is not 1..5")),
        (seconds.isNull() | (seconds < 0), says("timestamp ", seconds_text, " is not unix seconds")),
    )
    feedback = (
        F.when(rating >= thresholds.up_min, F.lit(S.UP))
        .when(rating <= thresholds.down_max, F.lit(S.DOWN))
        .otherwise(F.lit(S.PLAY))
    )
    rows = lines.withColumn(ITEM, item)
    genres = item_genres(spark, files)
    station = F.lit(None).cast("string")
    if genres is not None:
        rows = rows.join(F.broadcast(genres), ITEM, "left")
        station = F.col(GENRE)
    return parsed_frame(
        rows,
        user=user,
        ts=F.timestamp_seconds(seconds),
        track=item,
        station=station,
        session=F.lit(None),
        feedback=feedback,
        ms_played=F.lit(None),
        reason=reason,
    )


def item_genres(spark: SparkSession, files: Sequence[str]) -> DataFrame | None:
    """(item, first genre) from u.item and u.genre beside the first ratings file, if both are there."""
    folder = Path(files[0]).parent
    items, genre_file = folder / "u.item", folder / "u.genre"
    if not (items.is_file() and genre_file.is_file()):
        return None
    names = [
        line.split("|")[0] for line in genre_file.read_text(encoding="latin-1").splitlines() if line.strip()
    ]
    parts = F.split(F.col("value"), r"\|", -1)
    flags = F.slice(parts, -len(names), len(names))
    first = F.array_position(flags, "1")
    genre = F.when(first > 0, F.element_at(F.array(*[F.lit(n) for n in names]), first.cast("int")))
    return (
        spark.read.text(str(items))
        .where(F.size(parts) >= len(names) + 1)
        .select(F.trim(F.get(parts, 0)).alias(ITEM), genre.alias(GENRE))
        .dropDuplicates([ITEM])
    )
