"""The canonical columns as CSV (with a header), JSON lines, or Parquet; what `downbeat synth` writes.

Required: `user_id`, `ts` (ISO-8601; no zone means UTC), `track_id`. Optional: `station_id`,
`session_id`, `feedback` (up, down, skip, play or empty), `ms_played`. The file's extension tells
its format: .csv, .jsonl / .json / .ndjson, .parquet (a folder of part files works too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.sources._common import (
    FILE,
    LINE,
    RAW,
    IngestSettings,
    SourceSettings,
    by_header,
    csv_fields,
    first_problem,
    nonblank,
    numbered_lines,
    parsed_frame,
    says,
    spark_path,
    union_all,
    with_local_files,
)

NAME = "events"
# Ids that mean the same in every source (sources._common.events): all of them, as downbeat's own
# format carries the user's ids, shared by every log written in it.
GLOBAL_IDS: frozenset[str] = frozenset({S.USER_ID, S.TRACK_ID, S.STATION_ID})
REQUIRED = (S.USER_ID, S.TS, S.TRACK_ID)
OPTIONAL = (S.STATION_ID, S.SESSION_ID, S.FEEDBACK, S.MS_PLAYED)
FORMATS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet"}


def parse(
    spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings | None = None
) -> DataFrame:
    """One row per record; see sources._common.PARSED (`window`: parsed_frame's)."""
    by_format: dict[str, list[str]] = {}
    for path in files:
        suffix = Path(path).suffix.lower()
        if suffix not in FORMATS:
            raise InputError(
                f"input file {path}: cannot tell its format from the extension '{suffix}'"
                f" (format events reads {', '.join(FORMATS)})"
            )
        by_format.setdefault(FORMATS[suffix], []).append(path)
    frames = []
    for header, paths in by_header(by_format.get("csv", []), REQUIRED, f"{NAME} (csv)").items():
        frames.append(_csv(spark, paths, header, window))
    if "json" in by_format:
        frames.append(_json(spark, by_format["json"], window))
    if "parquet" in by_format:
        frames.append(_parquet(spark, by_format["parquet"], window))
    return union_all(frames)


def _csv(
    spark: SparkSession, paths: list[str], header: Sequence[str], window: IngestSettings | None
) -> DataFrame:
    """Files that share `header`, read together."""
    lines, get, shape_problem = csv_fields(numbered_lines(spark, paths).where(F.col(LINE) > 1), header)
    return _checked(lines, get, window, shape_problem=shape_problem)


def _json(spark: SparkSession, paths: list[str], window: IngestSettings | None) -> DataFrame:
    schema = T.StructType([T.StructField(n, T.StringType()) for n in (*REQUIRED, *OPTIONAL)])
    lines = numbered_lines(spark, paths).where(F.trim(F.col(RAW)) != "")
    record = F.from_json(F.col(RAW), schema, {"mode": "PERMISSIVE"})
    is_object = F.trim(F.col(RAW)).startswith("{") & F.try_parse_json(F.col(RAW)).isNotNull()
    return _checked(lines, lambda name: record[name], window, shape_problem=(~is_object, "not a JSON object"))


def _parquet(spark: SparkSession, paths: list[str], window: IngestSettings | None) -> DataFrame:
    """Parquet files, read per the unit their `ts` column declares: Spark reads microseconds and
    milliseconds as times itself, and nanoseconds (pandas' and Arrow's default) as the int64 count
    (`spark.sql.legacy.parquet.nanosAsLong`, set by pipelines.spark), turned into a time here."""
    in_nanos: dict[bool, list[str]] = {}
    for path in paths:  # each file's footer, so that a file that is no Parquet is named
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowException, OSError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise InputError(f"input file {path}: not a readable Parquet file ({reason})") from None
        ts_type = schema.field(S.TS).type if S.TS in schema.names else None
        nanos = ts_type is not None and pa.types.is_timestamp(ts_type) and ts_type.unit == "ns"
        in_nanos.setdefault(nanos, []).append(path)
    return union_all([_parquet_files(spark, group, nanos, window) for nanos, group in in_nanos.items()])


def _parquet_files(
    spark: SparkSession, paths: list[str], nanos: bool, window: IngestSettings | None
) -> DataFrame:
    data = spark.read.parquet(*[spark_path(p) for p in paths])
    present = set(data.columns)
    missing = [c for c in REQUIRED if c not in present]
    if missing:
        raise InputError(
            f"input {paths[0]}: Parquet data lacks column(s) {', '.join(missing)} (format {NAME})"
        )
    # nanoseconds to the microseconds a time holds, rounded down (floor, not toward zero)
    ts = F.expr(f"timestamp_micros(({S.TS} - pmod({S.TS}, 1000)) div 1000)") if nanos else F.col(S.TS)
    rows = data.select(
        *[
            (F.col(n).cast("string") if n != S.TS else ts).alias(n)
            if n in present
            else F.lit(None).cast("string").alias(n)
            for n in (*REQUIRED, *OPTIONAL)
        ],
        F.col("_metadata.file_path").alias(FILE),
        (F.col("_metadata.row_index") + 1).alias(LINE),
        F.to_json(F.struct(*[F.col(c) for c in data.columns])).alias(RAW),
    )
    ts_typed = nanos or isinstance(data.schema[S.TS].dataType, T.TimestampType | T.TimestampNTZType)
    return _checked(
        with_local_files(rows), F.col, window, shape_problem=(F.lit(False), ""), ts_is_timestamp=ts_typed
    )


def _checked(
    rows: DataFrame,
    get: Callable[[str], Column],
    window: IngestSettings | None,
    *,
    shape_problem: tuple[Column, str],
    ts_is_timestamp: bool = False,
) -> DataFrame:
    user, track = nonblank(get(S.USER_ID)), nonblank(get(S.TRACK_ID))
    ts_raw = get(S.TS)
    ts = ts_raw.cast("timestamp") if ts_is_timestamp else F.try_to_timestamp(F.trim(ts_raw.cast("string")))
    feedback = F.lower(nonblank(get(S.FEEDBACK)))
    ms_text = nonblank(get(S.MS_PLAYED))
    ms = ms_text.try_cast("long")
    reason = first_problem(
        shape_problem,
        (user.isNull(), "empty user_id"),
        (ts.isNull(), says("ts ", ts_raw.cast("string"), " is not an ISO-8601 time")),
        (track.isNull(), "empty track_id"),
        (
            feedback.isNotNull() & ~feedback.isin(*S.FEEDBACK_TYPES),
            says("feedback ", feedback, f" is not one of {', '.join(S.FEEDBACK_TYPES)}"),
        ),
        (
            ms_text.isNotNull() & (ms.isNull() | (ms < 0)),
            says("ms_played ", ms_text, " is not a non-negative integer"),
        ),
    )
    return parsed_frame(
        rows,
        user=user,
        ts=ts,
        track=track,
        station=nonblank(get(S.STATION_ID)),
        session=nonblank(get(S.SESSION_ID)),
        feedback=feedback,
        ms_played=ms,
        reason=reason,
        window=window,
    )
