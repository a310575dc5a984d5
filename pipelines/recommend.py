"""gold/recommendations: each user's latest history from silver/plays in, ranked tracks out.

`user_histories` gives the scoring input (what a model reads of a user now, and the tracks the
user rated down, never to be recommended); the model's ranking runs outside this module (jobs/
recommend.py hands each partition to the registered model); `recommendation_rows` turns its
ranked lists into table rows, and `replacing` keeps the rows the run does not replace.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sequences import feedback_id
from downbeat.pipelines.vocabulary import with_station_index, with_track_index

# The scoring input's columns (models/serving.py recommend_frame reads them by these names) and
# the ranked output's.
STATION_QUERY = S.STATION_IDX
EXCLUDE, TOP_TRACKS, SCORES, SERVED = S.EXCLUDE_TRACK_IDS, S.TOP_TRACK_IDS, S.SCORES, S.SERVED
RANKED = T.StructType(
    [
        T.StructField(S.USER_ID, T.StringType(), False),
        T.StructField(TOP_TRACKS, T.ArrayType(T.LongType(), False), False),
        T.StructField(SCORES, T.ArrayType(T.FloatType(), False), False),
        T.StructField(SERVED, T.BooleanType(), False),
    ]
)


def user_histories(
    plays: DataFrame,
    tracks: DataFrame,
    stations: DataFrame,
    *,
    width: int,
    users: DataFrame | None = None,
    seen: Column | None = None,
) -> DataFrame:
    """One row per user with plays (of `users`' user_id column, when given; grain: user_id): the
    user's last `width` plays, any feedback, oldest first, as track, station and feedback id arrays;
    the station of the last play (the query); and the tracks never to recommend (track idx,
    ascending): every track the user rated down, and every track of a play for which `seen`
    (split.seen_excluded: films are rated once) holds. Plays are ordered by (ts, event_id), as
    everywhere else; plays of tracks `tracks` does not hold are left out."""
    if width < 1:
        raise ValueError(f"history width must be at least 1, got {width}")
    if users is not None:
        plays = plays.join(users.select(S.USER_ID).distinct(), S.USER_ID, "left_semi")
    # a play of a track gold/tracks does not know (silver/plays newer than the catalog) is left out:
    # the model has no id for it
    indexed = (
        with_station_index(with_track_index(plays, tracks, column=S.TRACK_ID, as_="_track"), stations).where(
            F.col("_track") > 0
        )
    ).withColumn(
        "_recent",
        F.row_number().over(
            Window.partitionBy(S.USER_ID).orderBy(F.col(S.TS).desc(), F.col(S.EVENT_ID).desc())
        ),
    )
    item = F.struct(
        F.col(S.TS).alias("ts"),
        F.col(S.EVENT_ID).alias("event"),
        F.col("_track").alias("track"),
        F.col(S.STATION_IDX).alias("station"),
        feedback_id(F.col(S.FEEDBACK)).alias("feedback"),
    )
    never = F.col(S.FEEDBACK) == S.DOWN
    if seen is not None:
        never = never | seen
    grouped = indexed.groupBy(S.USER_ID).agg(
        F.array_sort(F.collect_list(F.when(F.col("_recent") <= width, item))).alias("_items"),
        F.array_sort(F.collect_set(F.when(never, F.col("_track")))).alias("_never"),
    )
    return grouped.select(
        S.USER_ID,
        F.transform("_items", lambda x: x["track"].cast("long")).alias(S.HISTORY_TRACK_IDS),
        F.transform("_items", lambda x: x["station"].cast("long")).alias(S.HISTORY_STATION_IDS),
        F.transform("_items", lambda x: x["feedback"].cast("long")).alias(S.HISTORY_FEEDBACK_IDS),
        F.element_at("_items", -1)["station"].cast("long").alias(STATION_QUERY),
        F.transform("_never", lambda x: x.cast("long")).alias(EXCLUDE),
    )


def recommendation_rows(
    ranked: DataFrame,
    tracks: DataFrame,
    *,
    model_name: str,
    model_version: str,
    run_id: str,
    history_version: int,
) -> DataFrame:
    """gold/recommendations rows from ranked lists (RANKED): one per (user, rank), rank 1 the best,
    with the track's id, the model's score and where both came from. Unserved users have none."""
    exploded = ranked.select(
        S.USER_ID, F.posexplode(F.arrays_zip(F.col(TOP_TRACKS), F.col(SCORES))).alias("_pos", "_pick")
    )
    ids = tracks.select(S.TRACK_ID, S.TRACK_IDX)
    return (
        exploded.select(
            S.USER_ID,
            (F.col("_pos") + 1).cast("int").alias(S.RANK),
            F.col("_pick")[TOP_TRACKS].cast("int").alias(S.TRACK_IDX),
            F.col("_pick")[SCORES].cast("float").alias(S.SCORE),
        )
        .join(F.broadcast(ids), S.TRACK_IDX, "inner")
        .select(
            S.USER_ID,
            S.RANK,
            S.TRACK_ID,
            S.TRACK_IDX,
            S.SCORE,
            F.lit(model_name).alias(S.MODEL_NAME),
            F.lit(model_version).alias(S.MODEL_VERSION),
            F.lit(run_id).alias(S.MODEL_RUN_ID),
            F.lit(history_version).cast("long").alias(S.HISTORY_VERSION),
        )
    )


def replacing(
    current: DataFrame,
    new: DataFrame,
    *,
    model_name: str,
    model_version: str,
    users: DataFrame | None,
    keep_versions: Collection[str] | None = None,
) -> DataFrame:
    """The table after a run: `current`'s rows except those the run replaces (its model version's,
    for every user, or for `users` only when given), then the run's own rows. With `keep_versions`,
    the rows of `model_name`'s other versions not in it are dropped (other models' rows stay)."""
    same = (F.col(S.MODEL_NAME) == model_name) & (F.col(S.MODEL_VERSION) == model_version)
    if keep_versions is not None:
        current = current.where(
            (F.col(S.MODEL_NAME) != model_name) | F.col(S.MODEL_VERSION).isin(*sorted(keep_versions))
        )
    if users is None:
        kept = current.where(~same)
    else:
        theirs = current.where(same).join(users.select(S.USER_ID).distinct(), S.USER_ID, "left_anti")
        kept = current.where(~same).unionByName(theirs)
    columns = S.RECOMMENDATIONS.fieldNames()
    return kept.select(*columns).unionByName(new.select(*columns))


_LOADED: dict[str, Any] = {}  # per Python worker: the model each shipped folder holds


def rank_partition(
    frames: Iterable[pd.DataFrame], *, shipped: str, top_k: int, batch_size: int
) -> Iterator[pd.DataFrame]:
    """mapInPandas: each user's top `top_k` tracks, by the model in the shipped folder, loaded once
    per Python worker with the code it was logged with, on as many threads as the task has cores."""
    import torch
    from pyspark import SparkFiles, TaskContext

    path = SparkFiles.get(shipped)  # the unpacked archive
    model = _LOADED.get(path)
    if model is None:
        import mlflow

        _LOADED.clear()  # one model per worker: a reused worker drops an earlier run's
        model = _LOADED[path] = mlflow.pyfunc.load_model(path).unwrap_python_model()
    context = TaskContext.get()
    torch.set_num_threads(max(1, context.cpus() if context is not None else 1))
    for frame in frames:
        if frame.empty:
            continue
        out = model.recommend(frame, top_k, batch_size)
        yield pd.DataFrame(
            {
                S.USER_ID: frame[S.USER_ID].to_numpy(),
                S.TOP_TRACK_IDS: out[S.TOP_TRACK_IDS].to_numpy(),
                S.SCORES: out[S.SCORES].to_numpy(),
                S.SERVED: out[S.SERVED].to_numpy(dtype=bool),
            }
        )
