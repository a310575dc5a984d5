"""MovieLens ratings in the shapes its releases use, told apart line by line from the content:

- ML-100K `u.data`: `user<TAB>item<TAB>rating<TAB>unix_seconds`;
- ML-1M and ML-10M `ratings.dat`: `user::item::rating::unix_seconds`;
- ML-20M, 25M and 32M `ratings.csv`: `userId,movieId,rating,timestamp` after that header line.

Ratings run from 0.5 to 5 in half stars (the 100K and 1M sets use whole stars). Ratings >=
`sources.movielens.up_min` are ups, <= `down_max` downs, the rest plays. A line in none of these
shapes is quarantined with its reason. The station is the item's first genre, from the item file
beside the first ratings file: `u.item` with `u.genre` (100K), `movies.dat` (1M, 10M; Latin-1) or
`movies.csv` (20M and later); without one there is none.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sources._common import (
    HELD_SECONDS,
    INT64_MAX,
    LINE,
    RAW,
    IngestSettings,
    SourceSettings,
    blank,
    field,
    first_problem,
    numbered_lines,
    parsed_frame,
    says,
    whole_number,
)

NAME = "movielens"
# Ids that mean the same in every source; the others get a `movielens:` prefix in bronze/events
# (sources._common.events): MovieLens's user and item numbers mean nothing outside it.
GLOBAL_IDS: frozenset[str] = frozenset()
FIELDS = 4
ITEM = "_item"
GENRE = "_genre"
CSV_HEADER = "userid,movieid,rating,timestamp"  # ratings.csv's first line, compared in lower case


def separator_of(raw: Column) -> tuple[Column, Column]:
    """(the line split into fields, the separator's name) by the line's shape: '::' (ML-1M/10M),
    tab (ML-100K) or comma (ML-20M and later); null for a line with none of them."""
    double_colon, tab, comma = raw.contains("::"), raw.contains("\t"), raw.contains(",")
    parts = (
        F.when(double_colon, F.split(raw, "::", -1))
        .when(tab, F.split(raw, "\t", -1))
        .when(comma, F.split(raw, ",", -1))
    )
    name = F.when(double_colon, F.lit("'::'")).when(tab, F.lit("tab")).when(comma, F.lit("comma"))
    return parts, name


def parse(
    spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings | None = None
) -> DataFrame:
    """One row per input line (a ratings.csv header excepted); see sources._common.PARSED."""
    thresholds = settings.movielens
    lines = numbered_lines(spark, files)
    header = (F.col(LINE) == 1) & (F.lower(F.trim(F.regexp_replace(F.col(RAW), "\ufeff", ""))) == CSV_HEADER)
    lines = lines.where(~header)
    parts, separator = separator_of(F.col(RAW))
    user, item, rating_text, seconds_text = (F.trim(field(parts, i)) for i in range(FIELDS))
    rating = rating_text.try_cast("double")
    seconds = seconds_text.try_cast("long")
    found = F.size(parts)
    reason = first_problem(
        (parts.isNull(), "no '::', tab or comma between fields: not a MovieLens ratings line"),
        (
            found != FIELDS,
            F.concat(
                F.lit(f"expected {FIELDS} "),
                separator,
                F.lit("-separated fields, found "),
                found.cast("string"),
            ),
        ),
        (blank(user), "empty user id"),
        (blank(item), "empty item id"),
        (
            rating.isNull() | (rating < 0.5) | (rating > 5) | (F.floor(rating * 2) != rating * 2),
            says("rating ", rating_text, " is not 0.5..5 in half stars"),
        ),
        whole_number(seconds_text, "timestamp", INT64_MAX),
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
        # past HELD_SECONDS the time's microseconds overflow: null, then ingest's window rejects it
        ts=F.when(seconds <= HELD_SECONDS, F.timestamp_seconds(seconds)),
        track=item,
        station=station,
        session=F.lit(None),
        feedback=feedback,
        ms_played=F.lit(None),
        reason=reason,
        window=window,
    )


def item_genres(spark: SparkSession, files: Sequence[str]) -> DataFrame | None:
    """(item, first genre) from the item file beside the first ratings file, if there is one."""
    folder = Path(files[0]).parent
    pairs = _u_item(folder)
    if pairs is None:
        pairs = _movies(folder)
    if pairs is None:
        return None
    schema = T.StructType([T.StructField(ITEM, T.StringType()), T.StructField(GENRE, T.StringType())])
    return spark.createDataFrame(sorted(pairs.items()), schema)


def _latin1_lines(path: Path) -> list[str]:
    """A Latin-1 file's lines, split at line ends only: str.splitlines() also splits at 0x85
    (cp1252's ellipsis in a title), 0x0b, 0x0c and 0x1c-0x1e."""
    return path.read_text(encoding="latin-1").split("\n")  # text mode: \r\n and \r are \n already


def _u_item(folder: Path) -> dict[str, str | None] | None:
    """ML-100K: u.item's genre flags, named by u.genre (in its order); the first flagged genre."""
    items, genre_file = folder / "u.item", folder / "u.genre"
    if not (items.is_file() and genre_file.is_file()):
        return None
    names = [line.split("|")[0] for line in _latin1_lines(genre_file) if line.strip()]
    out: dict[str, str | None] = {}
    for line in _latin1_lines(items):
        parts = line.split("|")
        if len(parts) < len(names) + 1:
            continue
        flags = parts[-len(names) :]
        first = next((n for n, flag in zip(names, flags, strict=True) if flag.strip() == "1"), None)
        out.setdefault(parts[0].strip(), first)
    return out


def _movies(folder: Path) -> dict[str, str | None] | None:
    """ML-1M/10M movies.dat (`id::title::Genre|Genre`, Latin-1) or ML-20M+ movies.csv (`movieId,title,
    genres` with a header, titles quoted where they hold commas): the first listed genre."""
    dat, csv_file = folder / "movies.dat", folder / "movies.csv"
    rows: list[list[str]]
    if dat.is_file():
        rows = [line.split("::") for line in _latin1_lines(dat)]
    elif csv_file.is_file():
        with open(csv_file, encoding="utf-8", errors="replace", newline="") as handle:
            rows = list(csv.reader(handle))[1:]
    else:
        return None
    out: dict[str, str | None] = {}
    for parts in rows:
        if len(parts) < 3:
            continue
        first = parts[-1].split("|")[0].strip()
        out.setdefault(parts[0].strip(), None if first in ("", "(no genres listed)") else first)
    return out
