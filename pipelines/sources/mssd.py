"""Spotify Music Streaming Sessions Dataset (training logs), CSV with a header.

MSSD has no user ids and no absolute times: each session stands for one listener (`user_id` =
`session_id`), and a play's time is its `date` plus `hour_of_day` plus one minute per
`session_position`, which keeps the source's order (date, hour, position) and leaves the 30 s
rule no false skips to find. The skip label is the configured column (default `skip_2`).
`context_type` stands in for the station. Dates come as `2018-07-15` or `15-07-18`, booleans as
`true/false` or `True/False`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.sources._common import (
    LINE,
    IngestSettings,
    SourceSettings,
    blank,
    csv_fields,
    first_problem,
    header_of,
    nonblank,
    numbered_lines,
    parsed_frame,
    require_columns,
    says,
    whole_number,
)

NAME = "mssd"
# Ids that mean the same in every source; the others get a `mssd:` prefix in bronze/events
# (sources._common.events): MSSD's session and track ids are its own.
GLOBAL_IDS: frozenset[str] = frozenset()
REQUIRED = ("session_id", "session_position", "track_id_clean", "hour_of_day", "date")
STATION = "context_type"
MAX_POSITION = (
    100_000  # a play's time is its session's start plus a minute a position: past this, implausible
)


def parse(
    spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings | None = None
) -> DataFrame:
    """One row per data line; see sources._common.PARSED."""
    skip_column = settings.mssd.skip_column
    headers = {path: header_of(path) for path in files}
    first = next(iter(headers.values()))
    for path, header in headers.items():
        require_columns(path, header, (*REQUIRED, skip_column), NAME)
        if header != first:
            raise InputError(f"input file {path}: header differs from {files[0]}'s; ingest them separately")
    lines = numbered_lines(spark, files).where(F.col(LINE) > 1)
    lines, get, width_problem = csv_fields(lines, first)

    def col(name: str) -> Column:
        return F.trim(get(name))

    session = col("session_id")
    position = col("session_position").try_cast("long")
    hour = col("hour_of_day").try_cast("int")
    date_text = col("date")
    day = F.when(
        date_text.rlike(r"^\d{4}-\d{2}-\d{2}$"), F.try_to_timestamp(date_text, F.lit("yyyy-MM-dd"))
    ).when(date_text.rlike(r"^\d{2}-\d{2}-\d{2}$"), F.try_to_timestamp(date_text, F.lit("dd-MM-yy")))
    skip_text = F.lower(col(skip_column))
    ts = F.timestamp_seconds(F.unix_seconds(day) + hour * 3600 + (position - 1) * 60)
    reason = first_problem(
        width_problem,
        (blank(session), "empty session_id"),
        (blank(col("track_id_clean")), "empty track_id_clean"),
        whole_number(col("session_position"), "session_position", MAX_POSITION),
        (
            position.isNull() | (position < 1),
            says("session_position ", col("session_position"), " is not a positive integer"),
        ),
        (hour.isNull() | (hour < 0) | (hour > 23), says("hour_of_day ", col("hour_of_day"), " is not 0..23")),
        (day.isNull(), says("date ", date_text, " is neither yyyy-mm-dd nor dd-mm-yy")),
        (
            ~skip_text.isin("true", "false"),
            says(f"{skip_column} ", col(skip_column), " is not true or false"),
        ),
    )
    return parsed_frame(
        lines,
        user=session,
        ts=ts,
        track=col("track_id_clean"),
        station=nonblank(col(STATION)),
        session=session,
        feedback=F.when(skip_text == "true", F.lit(S.SKIP)),
        ms_played=F.lit(None),
        reason=reason,
        window=window,
    )
