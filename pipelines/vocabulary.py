"""gold/tracks and gold/stations: contiguous integer ids for tracks and stations (0 = padding)."""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S


def _vocabulary(plays: DataFrame, key: str, index: str) -> DataFrame:
    counts = plays.where(F.col(key).isNotNull()).groupBy(key).agg(F.count(F.lit(1)).alias(S.PLAY_COUNT))
    # Most played first, ties by id: the same plays give the same ids. One small global sort.
    order = Window.orderBy(F.col(S.PLAY_COUNT).desc(), F.col(key))
    return counts.select(key, F.row_number().over(order).cast("int").alias(index), S.PLAY_COUNT)


def tracks(plays: DataFrame) -> DataFrame:
    """One row per track_id in silver/plays: track_idx 1..N (most played first) and play_count."""
    return _vocabulary(plays, S.TRACK_ID, S.TRACK_IDX).select(*S.TRACKS.fieldNames())


def stations(plays: DataFrame) -> DataFrame:
    """One row per non-null station_id in silver/plays: station_idx 1..N and play_count."""
    return _vocabulary(plays, S.STATION_ID, S.STATION_IDX).select(*S.STATIONS.fieldNames())


def with_track_index(df: DataFrame, tracks: DataFrame, *, column: str, as_: str) -> DataFrame:
    """Adds the integer id of track column `column` as `as_` (0 when null), by broadcast join."""
    ids = tracks.select(F.col(S.TRACK_ID).alias(column), F.col(S.TRACK_IDX).alias(as_))
    return df.join(F.broadcast(ids), column, "left").withColumn(as_, F.coalesce(F.col(as_), F.lit(S.PAD)))


def with_station_index(df: DataFrame, stations: DataFrame) -> DataFrame:
    """Adds station_idx for station_id (0 when there is no station), by broadcast join."""
    ids = stations.select(S.STATION_ID, S.STATION_IDX)
    return df.join(F.broadcast(ids), S.STATION_ID, "left").withColumn(
        S.STATION_IDX, F.coalesce(F.col(S.STATION_IDX), F.lit(S.PAD))
    )
