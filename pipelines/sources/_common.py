"""What every adapter shares: input files, numbered lines, row checks, and the canonical event."""

from __future__ import annotations

import datetime as dt
import functools
import glob
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import ConfigError, InputError
from downbeat.pipelines.times import EPOCH, from_micros, utc

FILE, LINE, RAW, REASON = "file", "line", "raw", "reason"
CSV_BUFFER_CHARS = 4096  # the CSV parser's input buffer per line (sources' csv_fields)
# Columns every adapter's parse() returns: the canonical event without source/event_id/date, plus
# where the row came from and why it was rejected (null when it was accepted).
PARSED = (
    S.USER_ID,
    S.TS,
    S.TRACK_ID,
    S.STATION_ID,
    S.SESSION_ID,
    S.FEEDBACK,
    S.MS_PLAYED,
    FILE,
    LINE,
    RAW,
    REASON,
)
SEPARATOR = "\u001f"


@dataclass(frozen=True)
class MovielensSettings:
    """Ratings at or above `up_min` are ups, at or below `down_max` downs, the rest plays."""

    up_min: int
    down_max: int


@dataclass(frozen=True)
class MssdSettings:
    """Which MSSD column is the skip label (`skip_1`, `skip_2`, `skip_3`)."""

    skip_column: Literal["skip_1", "skip_2", "skip_3"]


@dataclass(frozen=True)
class SourceSettings:
    movielens: MovielensSettings
    mssd: MssdSettings


OUT_OF_RANGE = "value_out_of_range"
INVALID_UTF8 = "invalid_utf8"
INT64_MAX = 2**63 - 1
HELD_SECONDS = INT64_MAX // 1_000_000  # the latest epoch second whose microseconds a timestamp holds


@dataclass(frozen=True)
class IngestSettings:
    """The plausible window of event times, [min_ts, max_ts): an event outside it goes to the
    quarantine (`ts_out_of_range`), so no engine meets a time it cannot hold. Fixed dates, never
    the clock: the same input gives the same tables on any day. ISO-8601 dates or times (no zone
    means UTC), within years 1000..9998."""

    min_ts: str
    max_ts: str

    def __post_init__(self) -> None:
        if self.micros("min_ts") >= self.micros("max_ts"):
            raise ConfigError(
                f"config key 'ingest.max_ts': {self.max_ts} is not after ingest.min_ts ({self.min_ts})"
            )

    def micros(self, key: Literal["min_ts", "max_ts"]) -> int:
        """The bound as epoch microseconds (what the window compares, on any engine)."""
        text = getattr(self, key)
        try:
            when = dt.datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"config key 'ingest.{key}': {text!r} is not an ISO-8601 date or time"
            ) from None
        if not 1000 <= when.year <= 9998:
            raise ConfigError(f"config key 'ingest.{key}': {text!r} is outside years 1000..9998")
        return (utc(when) - EPOCH) // dt.timedelta(microseconds=1)

    def days(self) -> tuple[dt.date, dt.date]:
        """The window's first and last UTC days (what a --from-date or --to-date must lie in)."""
        return from_micros(self.micros("min_ts")).date(), from_micros(self.micros("max_ts") - 1).date()


def window_checks(ids: Sequence[Column], ts: Column, window: IngestSettings) -> list[tuple[Column, str]]:
    """The checks every source shares, after its own: an id that is not valid UTF-8
    (`invalid_utf8`), a time outside the window or one that could not be held (`ts_out_of_range`)."""
    micros = F.unix_micros(ts.cast("timestamp"))
    outside = (
        micros.isNull()
        | (micros < F.lit(window.micros("min_ts")))
        | (micros >= F.lit(window.micros("max_ts")))
    )
    # Spark decodes text as UTF-8 and puts U+FFFD where bytes are not: an id would lose its bytes
    # (two users' invalid ids would merge into one)
    garbled = functools.reduce(
        Column.__or__, [F.coalesce(c.cast("string").contains("\ufffd"), F.lit(False)) for c in ids]
    )
    span = f"ingest.min_ts..ingest.max_ts ({window.min_ts}..{window.max_ts})"
    return [
        (garbled, f"{INVALID_UTF8}: an id holds bytes that are not UTF-8"),
        (outside, f"ts_out_of_range: outside {span}"),
    ]


def whole_number(text: Column, name: str, bound: int) -> tuple[Column, Column]:
    """The check that a field of digits fits `bound` (a type's range, or a plausible one):
    `value_out_of_range`, naming the field and its value. Non-digit text is another check's."""
    digits = F.regexp_extract(text, r"^\+?0*(\d+)$", 1)
    fits = (F.length(digits) < len(str(bound))) | (
        (F.length(digits) == len(str(bound))) & (digits <= F.lit(str(bound)))
    )
    return (
        text.rlike(r"^\+?\d+$") & ~fits,
        says(f"{OUT_OF_RANGE}: {name} ", text, f" is past {bound}"),
    )


def input_files(paths: Sequence[str]) -> list[str]:
    """Absolute paths of the files named: files, directories (their visible files) or glob patterns."""
    if not paths:
        raise InputError("no input given (--input PATH)")
    found: list[str] = []
    for given in paths:
        # a name that exists is read as named, glob characters and all; else a pattern is matched
        literal = os.path.lexists(given) or not glob.has_magic(given)
        matches = [given] if literal else sorted(glob.glob(given))
        if not matches:
            raise InputError(f"input {given}: no file matches")
        for match in matches:
            path = Path(match)
            if path.is_dir():
                found += [str(p.resolve()) for p in sorted(path.iterdir()) if visible(p) and p.is_file()]
            elif not path.exists():
                raise InputError(f"input file {match} not found")
            elif not visible(path):
                raise InputError(
                    f"input file {match}: Spark's readers skip names that start with '_' or '.' "
                    "(or end in .crc); rename it to ingest it"
                )
            else:
                found.append(str(path.resolve()))
    for path_text in found:
        if not os.access(path_text, os.R_OK):
            raise InputError(f"input file {path_text} is not readable")
    if not found:
        raise InputError(f"input {', '.join(paths)}: no files in it")
    return sorted(dict.fromkeys(found))


def spark_path(path: str) -> str:
    """`path` as Spark's readers take it literally: Hadoop expands glob characters in a path, so
    `a[1].tsv` would read `a1.tsv`; escaped, it reads itself."""
    return re.sub(r"([\\\[\]{}*?])", r"\\\1", path)


def visible(path: Path) -> bool:
    return not path.name.startswith((".", "_")) and not path.name.endswith(".crc")


def header_of(path: str) -> list[str]:
    """The first line of a delimited text file, split on commas."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        first = handle.readline().strip().lstrip("\ufeff")
    if not first:
        raise InputError(f"input file {path} is empty (expected a header line)")
    return [name.strip().strip('"') for name in first.split(",")]


def require_columns(path: str, header: Iterable[str], required: Iterable[str], fmt: str) -> None:
    names = list(header)
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        raise InputError(f"input file {path}: header names column(s) {', '.join(twice)} more than once")
    header = names
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(
            f"input file {path}: header lacks column(s) {', '.join(missing)} required by format {fmt}"
        )


def by_header(files: Iterable[str], required: Iterable[str], fmt: str) -> dict[tuple[str, ...], list[str]]:
    """Delimited files grouped by their header line, each header checked for `required`: files that
    share a header share column positions, so each group is read as one frame (one scan, one plan,
    however many files a directory holds)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    needed = tuple(required)
    for path in files:
        header = header_of(path)
        require_columns(path, header, needed, fmt)
        groups.setdefault(tuple(header), []).append(path)
    return groups


def local_path(uri: str) -> str:
    """A file URI from Spark's `_metadata.file_path` as a local path; other URIs as they are."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme in ("", "file") else uri


def numbered_lines(spark: SparkSession, files: Sequence[str]) -> DataFrame:
    """One row per text line: file, line (1-based), raw. The whole computation stays in the JVM.

    A file is read in blocks; each block is one task and its rows get consecutive ids, so a line's
    number is the count of lines in the file's earlier blocks plus its rank in its own block.
    """
    block = "_block"
    row_id = "_row"
    text = spark.read.text([spark_path(f) for f in files]).select(
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(block),
        F.monotonically_increasing_id().alias(row_id),
        F.col("value").alias(RAW),
    )
    blocks = (
        text.groupBy(FILE, block).agg(F.min(row_id).alias("_first"), F.count(F.lit(1)).alias("_n")).collect()
    )
    offsets: list[tuple[str, int, int, int]] = []
    seen: dict[str, int] = {}
    for row in sorted(blocks, key=lambda r: (r[FILE], r[block])):
        before = seen.get(row[FILE], 0)
        offsets.append((row[FILE], row[block], row["_first"], before))
        seen[row[FILE]] = before + row["_n"]
    offset_schema = T.StructType(
        [
            T.StructField(FILE, T.StringType()),
            T.StructField(block, T.LongType()),
            T.StructField("_first", T.LongType()),
            T.StructField("_before", T.LongType()),
        ]
    )
    table = spark.createDataFrame(offsets, offset_schema)
    joined = text.join(F.broadcast(table), [FILE, block])
    return joined.select(
        _local_file(F.col(FILE), seen),
        (F.col("_before") + F.col(row_id) - F.col("_first") + 1).alias(LINE),
        F.col(RAW),
    )


def with_local_files(df: DataFrame) -> DataFrame:
    """Replace the `file` column's URIs (from `_metadata.file_path`) with local paths."""
    uris = [r[0] for r in df.select(FILE).distinct().collect()]
    return df.withColumn(FILE, _local_file(F.col(FILE), uris))


def _local_file(uri: Column, uris: Iterable[str]) -> Column:
    pairs = [F.lit(x) for u in sorted(uris) for x in (u, local_path(u))]
    return (F.create_map(*pairs)[uri] if pairs else uri).alias(FILE)


def first_problem(*checks: tuple[Column, Column | str]) -> Column:
    """The message of the first check whose condition holds, else null."""
    reason: Column = F.lit(None).cast("string")
    for condition, message in reversed(checks):
        text = F.lit(message) if isinstance(message, str) else message
        reason = F.when(condition, text).otherwise(reason)
    return reason


def blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def nonblank(col: Column) -> Column:
    """The trimmed text, or null when empty."""
    return F.when(blank(col), F.lit(None).cast("string")).otherwise(F.trim(col))


def quoted(col: Column) -> Column:
    return F.concat(F.lit("'"), F.coalesce(col, F.lit("")), F.lit("'"))


def says(before: str, value: Column, after: str) -> Column:
    """A message quoting a row's value: says("rating ", col, " is not 1..5")."""
    return F.concat(F.lit(before), quoted(value), F.lit(after))


def wrong_width(parts: Column, expected: int, separator: str) -> tuple[Column, Column]:
    """The check that a split line has `expected` fields, naming the count found."""
    found = F.size(parts)
    message = F.concat(
        F.lit(f"expected {expected} {separator}-separated fields, found "), found.cast("string")
    )
    return found != expected, message


OVERFLOW, RECORD = "_overflow", "_record"


def csv_fields(
    lines: DataFrame, header: Sequence[str]
) -> tuple[DataFrame, Callable[[str], Column], tuple[Column, str]]:
    """Each line of `lines` read as RFC 4180 says (a quoted field may hold the delimiter and doubled
    quotes), once, into a column of its own (every field read from the record would otherwise
    parse the line again, and the generated code outgrows the JVM's 64 KB a method): the lines, a
    getter of the header's fields by name (null where the line is short), and the check that the
    line has the header's width."""
    schema = ", ".join(f"`{name}` STRING" for name in (*header, OVERFLOW))
    # from_csv starts a parser for every line, and the parser allocates its input buffer (1M chars,
    # 2 MB, by default): a humongous object per line, which filled a 2 GB heap in a long session.
    # A line longer than the buffer is still read whole, in more reads.
    # RFC 4180: a quote inside a quoted field is written twice (Spark's own default escape is "\\")
    options = {
        "mode": "PERMISSIVE",
        "nullValue": "\u0000",
        "escape": '"',
        "inputBufferSize": str(CSV_BUFFER_CHARS),
    }
    lines = lines.withColumn(RECORD, F.from_csv(F.col(RAW), schema, options))
    record, raw = F.col(RECORD), F.col(RAW)
    width = F.size(F.split(raw, ",", -1))
    quoted = raw.contains('"')
    too_many = F.when(quoted, record[OVERFLOW].isNotNull()).otherwise(width > len(header))
    too_few = ~quoted & (width < len(header))
    problem = (too_many | too_few, f"expected {len(header)} comma-separated fields as in the header")

    def get(name: str) -> Column:
        return record[name] if name in header else F.lit(None).cast("string")

    return lines, get, problem


def field(parts: Column, index: int) -> Column:
    """The index-th field of a split line (0-based), null past the end."""
    return F.get(parts, index)


def parsed_frame(
    lines: DataFrame,
    *,
    user: Column,
    ts: Column,
    track: Column,
    station: Column,
    session: Column,
    feedback: Column,
    ms_played: Column,
    reason: Column,
    window: IngestSettings | None,
) -> DataFrame:
    """The adapter's result in PARSED's column order, its `reason` followed by `window_checks`
    (none when `window` is None). A rejected row's `ts` is null (an adapter may compute it with
    arithmetic that only its own checks make safe); its other fields are text or try-casts, left as
    read: only accepted rows become events.

    The reason is one expression, read once by each column: Spark substitutes a column's expression
    into every filter on it, so a field wrapped in the reason, or a check on such a field, copies the
    whole chain into the filter (a predicate too long for the JIT ran ingest at a third of its speed).
    """
    if window is not None:
        later = window_checks((user, track, station, session), ts, window)
        reason = F.coalesce(reason, *[F.when(check, F.lit(message)) for check, message in later])
    return lines.select(
        user.cast("string").alias(S.USER_ID),
        F.when(reason.isNull(), ts).cast("timestamp").alias(S.TS),
        track.cast("string").alias(S.TRACK_ID),
        station.cast("string").alias(S.STATION_ID),
        session.cast("string").alias(S.SESSION_ID),
        feedback.cast("string").alias(S.FEEDBACK),
        ms_played.cast("long").alias(S.MS_PLAYED),
        F.col(FILE),
        F.col(LINE).cast("long").alias(LINE),
        F.col(RAW),  # read (and, for Parquet, rendered) only where a reject selects it
        reason.alias(REASON),
    )


def union_all(frames: Sequence[DataFrame]) -> DataFrame:
    """The frames' rows together (columns matched by name)."""
    return functools.reduce(DataFrame.unionByName, frames)


def identity_text(*cols: Column) -> Column:
    """The columns' text joined by SEPARATOR, nulls as empty: what stable_id() digests."""
    return F.concat_ws(SEPARATOR, *[F.coalesce(c.cast("string"), F.lit("")) for c in cols])


def stable_id(*cols: Column) -> Column:
    """A hex digest of the columns' text (nulls as empty): equal input, equal id, in any run."""
    return F.sha2(identity_text(*cols), 256)


# The ids a source names its users, tracks and stations with (see each adapter's GLOBAL_IDS).
ID_COLUMNS = (S.USER_ID, S.TRACK_ID, S.STATION_ID)


def namespaced(col: Column, source: str) -> Column:
    """`source:id`, so that two sources' local ids (MovieLens item 50, Piki song 50) never meet."""
    return F.when(col.isNull(), col).otherwise(F.concat(F.lit(f"{source}:"), col))


def _identity(source: str) -> list[Column]:
    """What makes an event itself: its source and fields as the source wrote them."""
    ts_text = F.date_format(F.col(S.TS), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
    return [
        F.lit(source),
        F.col(S.USER_ID),
        ts_text,
        F.col(S.TRACK_ID),
        F.col(S.STATION_ID),
        F.col(S.SESSION_ID),
        F.col(S.FEEDBACK),
        F.col(S.MS_PLAYED),
    ]


def has_duplicates(parsed: DataFrame, source: str) -> bool:
    """Whether two accepted rows may have the same event_id: a shuffle of one 64-bit hash of the text
    event_id digests, per row, not of the rows. Equal ids have equal hashes, so False is certain;
    a hash collision only says "maybe" (then events() deduplicates in full)."""
    key = F.xxhash64(identity_text(*_identity(source))).alias("_key")
    found = parsed.where(F.col(REASON).isNull()).groupBy(key).count().where(F.col("count") > 1)
    return bool(found.limit(1).count())


def events(
    parsed: DataFrame, source: str, global_ids: Iterable[str], *, deduplicate: bool = True
) -> DataFrame:
    """Accepted rows as canonical events (bronze/events); exact duplicates become one event.

    Id columns not in `global_ids` get the `source:` prefix (the event_id hashes the ids as the
    source wrote them, with the source, so it is the same either way). `deduplicate=False` skips
    the shuffle by event_id, for input has_duplicates() cleared.
    """
    shared = frozenset(global_ids)
    unknown = shared - set(ID_COLUMNS)
    if unknown:
        raise ValueError(f"global_ids names {sorted(unknown)}, not id columns {ID_COLUMNS}")
    accepted = parsed.where(F.col(REASON).isNull()).select(
        *[
            (F.col(f.name) if f.name in shared else namespaced(F.col(f.name), source)).alias(f.name)
            if f.name in ID_COLUMNS
            else F.col(f.name)
            for f in S.EVENTS.fields
            if f.name in PARSED
        ],
        F.lit(source).alias(S.SOURCE),
        stable_id(*_identity(source)).alias(S.EVENT_ID),
        F.to_date(F.col(S.TS)).alias(S.DATE),
    )
    if deduplicate:
        accepted = accepted.dropDuplicates([S.EVENT_ID])
    return accepted.select(*[f.name for f in S.EVENTS.fields])


def rejects(parsed: DataFrame, source: str) -> DataFrame:
    """Rejected rows (bronze/quarantine), keyed by source, file and line."""
    return parsed.where(F.col(REASON).isNotNull()).select(
        F.lit(source).alias(S.SOURCE),
        F.col(FILE),
        F.col(LINE),
        F.col(REASON),
        F.col(RAW),
        stable_id(F.lit(source), F.col(FILE), F.col(LINE)).alias("row_id"),
    )
