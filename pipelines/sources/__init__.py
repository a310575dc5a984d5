"""Source adapters: one module per raw log format, each turning files into canonical events.

Each adapter's `parse(spark, files, settings, window)` returns one row per input record with the
canonical columns and `file`, `line`, `raw`, `reason` (null when the row is accepted); with a
`window`, the checks every source shares (`window_checks`: times outside it, ids that are not
UTF-8) follow the adapter's own in one chain. `parse()` here runs the format's adapter with the
configured window; `events()` and `rejects()` split that into bronze/events and bronze/quarantine
rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pyspark.sql import DataFrame, SparkSession

from downbeat.pipelines.errors import InputError
from downbeat.pipelines.sources import events as events_format
from downbeat.pipelines.sources import lastfm1k, movielens, mssd, piki
from downbeat.pipelines.sources._common import (
    IngestSettings,
    MovielensSettings,
    MssdSettings,
    SourceSettings,
    events,
    has_duplicates,
    input_files,
    rejects,
)


class Parser(Protocol):
    """An adapter's parse: `window` None leaves out the shared checks (sources._common.window_checks)."""

    def __call__(
        self,
        spark: SparkSession,
        files: Sequence[str],
        settings: SourceSettings,
        window: IngestSettings | None = None,
    ) -> DataFrame: ...


ADAPTERS: dict[str, Parser] = {
    lastfm1k.NAME: lastfm1k.parse,
    mssd.NAME: mssd.parse,
    piki.NAME: piki.parse,
    movielens.NAME: movielens.parse,
    events_format.NAME: events_format.parse,
}
FORMATS = tuple(ADAPTERS)
# Which id columns each format shares with every other source; the rest are namespaced by source.
GLOBAL_IDS: dict[str, frozenset[str]] = {
    lastfm1k.NAME: lastfm1k.GLOBAL_IDS,
    mssd.NAME: mssd.GLOBAL_IDS,
    piki.NAME: piki.GLOBAL_IDS,
    movielens.NAME: movielens.GLOBAL_IDS,
    events_format.NAME: events_format.GLOBAL_IDS,
}


def parse(
    fmt: str, spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings
) -> DataFrame:
    """`files` in format `fmt`, a row per record; after the adapter's own checks, ids that are not
    UTF-8 (`invalid_utf8`) and times outside `window` (`ts_out_of_range`) are rejected."""
    if fmt not in ADAPTERS:
        raise InputError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return ADAPTERS[fmt](spark, files, settings, window)


__all__ = [
    "ADAPTERS",
    "FORMATS",
    "GLOBAL_IDS",
    "IngestSettings",
    "MovielensSettings",
    "MssdSettings",
    "SourceSettings",
    "events",
    "has_duplicates",
    "input_files",
    "parse",
    "rejects",
]
