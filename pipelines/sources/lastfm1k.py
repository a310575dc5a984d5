"""Last.fm LFM-1K: tab-separated `userid, timestamp, artid, artname, traid, traname`, no header.

Rows are newest first per user (order does not matter downstream). Many rows have no track id:
the track is then identified by a stable hash of the lower-cased artist and title. Plays only: no
feedback, no station; skips are derived later from the time to the next play.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from downbeat.pipelines import schemas as S
from downbeat.pipelines.sources._common import (
    RAW,
    IngestSettings,
    SourceSettings,
    blank,
    field,
    first_problem,
    nonblank,
    numbered_lines,
    parsed_frame,
    says,
    stable_id,
    wrong_width,
)

FIELDS = 6
NAME = "lastfm1k"
# Ids that mean the same in every source; the others get a `lastfm1k:` prefix in bronze/events
# (sources._common.events): MusicBrainz track ids, and the `lfm:` ids derived from artist and
# title, name a track anywhere; user ids are Last.fm's own.
GLOBAL_IDS: frozenset[str] = frozenset({S.TRACK_ID})


def parse(
    spark: SparkSession, files: Sequence[str], settings: SourceSettings, window: IngestSettings | None = None
) -> DataFrame:
    """One row per input line; see sources._common.PARSED."""
    lines = numbered_lines(spark, files)
    parts = F.split(F.col(RAW), "\t", -1)
    user, ts_text, artist, title, track_id = (
        field(parts, 0),
        field(parts, 1),
        field(parts, 3),
        field(parts, 5),
        field(parts, 4),
    )
    ts = F.try_to_timestamp(F.trim(ts_text), F.lit("yyyy-MM-dd'T'HH:mm:ssX"))
    derived = F.concat(
        F.lit("lfm:"), F.substring(stable_id(F.lower(F.trim(artist)), F.lower(F.trim(title))), 1, 24)
    )
    track = F.coalesce(nonblank(track_id), F.when(~blank(artist) & ~blank(title), derived))
    reason = first_problem(
        wrong_width(parts, FIELDS, "tab"),
        (blank(user), "empty user id"),
        (ts.isNull(), says("timestamp ", ts_text, " is not ISO-8601 UTC")),
        (track.isNull(), "no track id, and no artist and title to derive one"),
    )
    return parsed_frame(
        lines,
        user=F.trim(user),
        ts=ts,
        track=track,
        station=F.lit(None),
        session=F.lit(None),
        feedback=F.lit(None),
        ms_played=F.lit(None),
        reason=reason,
        window=window,
    )
