"""What both engines share: settings, errors, the commit record, and the checks a write passes first."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines.errors import ConflictError, InputError

LAYERS = ("bronze", "silver", "gold")
CODECS = ("snappy", "uncompressed")  # Parquet codecs a write may ask for
TABLE_NAME = re.compile(r"^(bronze|silver|gold)/[a-z][a-z0-9_]*$")
FILE_NAME_COLUMN = "__downbeat_file"
TXN_KEY = "downbeat.txn"
JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description")
PARTITION_TYPES = (
    T.StringType,
    T.DateType,
    T.IntegerType,
    T.LongType,
    T.ShortType,
    T.ByteType,
    T.BooleanType,
)
DELTA_CLASS = "org.apache.spark.sql.delta.DeltaLog"
# Session settings downbeat records when it builds the session: where the connector's jars came
# from, or why there are none (read by resolve_engine to say why it chose delta-rs).
CONNECTOR_SOURCE = "spark.downbeat.delta.connector"
CONNECTOR_PROBLEM = "spark.downbeat.delta.connectorProblem"

Engine = Literal["spark", "delta-rs"]
WriteMode = Literal["overwrite", "append"]


@dataclass(frozen=True)
class LakehouseSettings:
    """Where tables live: a local path or a URI (file://, s3://); the shortest vacuum retention
    `maintain` runs without `--force` (Delta's own default, a week)."""

    root: str
    min_vacuum_hours: float = 168.0


@dataclass(frozen=True)
class DeltaSettings:
    """Which engine writes Delta; where the connector's jars come from when it is Spark."""

    engine: Literal["auto", "spark", "delta-rs"]
    packages: str | None
    jars_dir: str | None
    # The connector's log store for s3:// tables: Delta's default (one driver per table) or a
    # conditional put that lets several drivers commit to one table (docs/lakehouse.md)
    s3_log_store: Literal["single-driver", "conditional-put"] = "single-driver"


class TableNotFoundError(InputError):
    """The named table has no Delta log under the lakehouse root."""


class SchemaMismatchError(InputError):
    """The data's columns do not match the table's."""


class ConcurrentWriteError(ConflictError):
    """Another writer committed to the table while this write ran; nothing was committed."""


class WriteFailedError(RuntimeError):
    """The write failed before its commit; the table is unchanged."""


@dataclass(frozen=True)
class Commit:
    """What one write committed."""

    table: str
    version: int
    operation: str
    rows_written: int | None
    files_added: int
    files_removed: int


# ---- write planning --------------------------------------------------------


@dataclass
class WriteSpec:
    table: str
    uri: str
    operation: str  # overwrite | append | replace_range | merge
    partition_by: tuple[str, ...]
    replace_range: tuple[str, dt.date, dt.date] | None
    merge_keys: tuple[str, ...]
    schema_evolution: bool
    new_columns: tuple[T.StructField, ...] = ()
    schema: T.StructType = field(default_factory=T.StructType)
    creates: bool = False  # no table yet: this write creates it
    compression: str = "snappy"  # Parquet codec of the data files: snappy | uncompressed
    keys_unique: bool = False  # the caller made merge_keys unique: no check of the data for it
    tags: tuple[tuple[str, str], ...] = ()  # more downbeat.* keys for the commit record
    # The table version the data was computed from (None: no table yet), when the caller read the
    # table itself (read, modify, overwrite): a write on top of any other version is a conflict.
    read_version: int | None = None
    pinned: bool = False  # whether read_version holds


def check_read_version(spec: WriteSpec, base_version: int | None) -> None:
    """ConcurrentWriteError when the write's data came from another version than it would land on."""
    if spec.pinned and base_version != spec.read_version:
        was = "no table" if spec.read_version is None else f"version {spec.read_version}"
        now = "no table" if base_version is None else f"version {base_version}"
        raise ConcurrentWriteError(
            f"{spec.operation} of {spec.table}: its data was computed from {was}, but the table is at "
            f"{now}: another writer committed meanwhile; nothing was written; rerun the job"
        )


def conform(df: DataFrame, spec: WriteSpec, current: Any) -> DataFrame:
    """Check `df` against the table; settle the schema and partitioning to write. Returns the frame."""
    incoming = nullable(df.schema)
    if spec.operation not in ("overwrite", "append", "replace_range", "merge"):
        raise InputError(f"unknown write operation {spec.operation!r}")
    for name in (*spec.partition_by, *spec.merge_keys):
        if name not in incoming.fieldNames():
            raise SchemaMismatchError(f"{spec.operation} of {spec.table}: column '{name}' is not in the data")
    for name in spec.partition_by:
        if not isinstance(incoming[name].dataType, PARTITION_TYPES):
            raise InputError(
                f"{spec.table}: partition column '{name}' has type {incoming[name].dataType.simpleString()}; "
                "partition by a string, date, integer or boolean column"
            )
    if current is None:  # the write creates the table (a merge into nothing inserts every row)
        spec.schema, spec.creates = incoming, True
        return aligned(df, incoming)
    table_schema = spark_schema(current)
    table_partitions = list(current.metadata().partition_columns)
    if spec.operation == "overwrite" and spec.schema_evolution:
        spec.schema = incoming  # a full overwrite may replace the schema and the partitioning
        return aligned(df, incoming)
    if spec.replace_range is not None:
        if spec.replace_range[0] not in table_partitions:
            raise SchemaMismatchError(
                f"{spec.table}: overwriting a range needs '{spec.replace_range[0]}' to be a partition "
                f"column; the table is partitioned by {table_partitions or 'nothing'}"
            )
    elif spec.partition_by and list(spec.partition_by) != table_partitions:
        raise SchemaMismatchError(
            f"{spec.operation} of {spec.table}: the table is partitioned by "
            f"{table_partitions or 'nothing'}, not {list(spec.partition_by)}"
        )
    wanted = {f.name: f for f in table_schema.fields}
    for f in incoming.fields:
        known = wanted.get(f.name)
        if known is None:
            if not spec.schema_evolution:
                raise SchemaMismatchError(
                    f"{spec.operation} to {spec.table}: column '{f.name}' is not in the table "
                    "(ask for schema evolution to add it)"
                )
        elif nullable_type(known.dataType) != f.dataType:  # tables from before nested nullability
            raise SchemaMismatchError(
                f"{spec.operation} to {spec.table}: column '{f.name}' is "
                f"{f.dataType.simpleString()} in the data but "
                f"{known.dataType.simpleString()} in the table"
            )
    missing = [name for name in wanted if name not in incoming.fieldNames()]
    if missing and not spec.schema_evolution:
        raise SchemaMismatchError(
            f"{spec.operation} to {spec.table}: column '{missing[0]}' of the table is "
            "missing from the data (ask for schema evolution to write it as null)"
        )
    new_columns = tuple(f for f in incoming.fields if f.name not in wanted)
    spec.new_columns = new_columns
    spec.schema = T.StructType([*table_schema.fields, *new_columns])
    spec.partition_by = tuple(table_partitions)  # an existing table keeps its partitioning
    return aligned(df, spec.schema)


def aligned(df: DataFrame, schema: T.StructType) -> DataFrame:
    """`df`'s columns in `schema`'s order; a column `df` lacks becomes a typed null."""
    return df.select(
        *[
            F.col(f"`{f.name}`") if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ]
    )


def check_data(df: DataFrame, spec: WriteSpec) -> None:
    """The checks that need the data itself (one Spark job each), before any file is written."""
    if spec.replace_range is not None:
        check_range(df, spec)
    if spec.operation == "merge" and not spec.keys_unique:
        check_unique_keys(df, spec)


def check_range(df: DataFrame, spec: WriteSpec) -> None:
    assert spec.replace_range is not None
    column, start, end = spec.replace_range
    if start > end:
        raise InputError(f"{spec.table}: range start {start} is after its end {end}")
    col = F.col(f"`{column}`")
    outside = (
        df.where(col.isNull() | (col < F.lit(start)) | (col > F.lit(end))).select(col).limit(1).collect()
    )
    if outside:
        raise InputError(
            f"overwrite of {spec.table} for {column} in [{start}, {end}]: the data has a row with "
            f"{column} = {outside[0][0]}, outside the range"
        )


def check_unique_keys(df: DataFrame, spec: WriteSpec) -> None:
    """Bad input when two rows share their merge keys. First a shuffle of one 64-bit hash per row;
    only when two hashes meet (equal keys, or a rare collision) the keys themselves."""
    keys = [F.col(f"`{k}`") for k in spec.merge_keys]
    not_null = F.lit(True)
    for k in keys:
        not_null = not_null & k.isNotNull()
    keyed = df.where(not_null)
    hashes = keyed.groupBy(F.xxhash64(*keys).alias("_hash")).count().where(F.col("count") > 1)
    if not hashes.limit(1).collect():
        return
    dup = keyed.groupBy(*keys).count().where(F.col("count") > 1).limit(1).collect()
    if dup:
        key = ", ".join(f"{k}={dup[0][k]!r}" for k in spec.merge_keys)
        raise InputError(
            f"merge into {spec.table}: the data has {dup[0]['count']} rows with {key}; "
            "merge keys must be unique in the data"
        )


class PartialCommitError(RuntimeError):
    """A transaction's commit phase failed after some of its tables committed (listed in the message)."""


class PendingWrite:
    """A write whose data is staged but not visible. `commit()` publishes it; `abort()` discards it.

    `batch` tags the commit with the id of the transaction it belongs to (`downbeat.batch`)."""

    def commit(self, batch: str | None = None) -> Commit:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def spark_schema(delta_table: Any) -> T.StructType:
    schema = T.StructType.fromJson(json.loads(delta_table.schema().to_json()))
    return schema


def nullable(schema: T.StructType) -> T.StructType:
    """Delta stores every column as nullable, nested ones too (array elements, map values, struct
    fields), as the Spark connector does: both engines store the same schema for the same frame."""
    return T.StructType([T.StructField(f.name, nullable_type(f.dataType), True, f.metadata) for f in schema])


def nullable_type(kind: T.DataType) -> T.DataType:
    if isinstance(kind, T.ArrayType):
        return T.ArrayType(nullable_type(kind.elementType), True)
    if isinstance(kind, T.MapType):
        return T.MapType(nullable_type(kind.keyType), nullable_type(kind.valueType), True)
    if isinstance(kind, T.StructType):
        return nullable(kind)
    return kind


@dataclass(frozen=True)
class DataFile:
    """One data file of a snapshot, as the Delta log describes it."""

    path: str  # as in the log: relative to the table root, or absolute
    location: str  # where it is: a plain absolute path for local tables, else a URI
    size: int
    partition_values: dict[str, Any]  # typed values (date, int, str, bool, None)


def snapshot_files(delta_table: Any) -> list[DataFile]:
    """The data files of a delta-rs snapshot, from its log (never a directory listing)."""
    import pyarrow as pa

    partition_cols = list(delta_table.metadata().partition_columns)
    actions = pa.table(delta_table.get_add_actions(flatten=True)).to_pydict()
    root = delta_table.table_uri.rstrip("/")
    if root.startswith("file://"):
        root = unquote(root.removeprefix("file://"))
    files = []
    for i, path in enumerate(actions.get("path", [])):
        # Log paths are URIs (percent-encoded); storage wants them decoded.
        location = path if "://" in path or path.startswith("/") else f"{root}/{unquote(path)}"
        values = {c: actions[f"partition.{c}"][i] for c in partition_cols}
        files.append(DataFile(path, location, int(actions["size_bytes"][i]), values))
    return files


def file_url(location: str) -> str:
    """A file:// URL for a local path, unescaped (Petastorm and pyarrow take the rest as the path)."""
    return location if "://" in location else f"file://{location}"


@contextlib.contextmanager
def job_group(sc: Any, group: str, spec: WriteSpec) -> Iterator[None]:
    """The Spark jobs run inside are grouped under `group` and described as this write's, in the UI
    and the status tracker; the thread's previous job properties come back after."""
    previous = {key: sc.getLocalProperty(key) for key in JOB_PROPERTIES}
    sc.setLocalProperty("spark.jobGroup.id", group)
    sc.setLocalProperty(
        "spark.job.description", f"downbeat: write data files of {spec.table} ({spec.operation})"
    )
    try:
        yield
    finally:
        for key, value in previous.items():
            sc.setLocalProperty(key, value)


def commit_tags(entry: dict[str, Any]) -> dict[str, Any]:
    """downbeat's keys in a history entry, wherever the writing engine put them: top level
    (delta-rs custom metadata), the commit's tags or its userMetadata JSON (the connector)."""
    found: dict[str, Any] = {k: v for k, v in entry.items() if k.startswith("downbeat.")}
    found.update(entry.get("tags") or {})
    user = entry.get("userMetadata")
    if isinstance(user, str) and user.startswith("{"):
        with contextlib.suppress(ValueError):
            found.update(json.loads(user))
    return {k: v for k, v in found.items() if k.startswith("downbeat.")}


def committed_version(uri: str, txn: str, depth: int = 100) -> int | None:
    """The version whose commit carries write `txn`, or None: tells a commit call that failed
    after its log entry landed (a lost reply) from one that did not."""
    found = committed_entry(uri, txn, depth)
    return None if found is None else found[0]


def committed_entry(uri: str, txn: str, depth: int = 100) -> tuple[int, dict[str, Any]] | None:
    """(version, commitInfo) of the commit that carries write `txn`, or None."""
    from deltalake import DeltaTable

    try:
        entries = commit_log(uri, int(DeltaTable(uri).version()), depth)
    except Exception:  # no table, or a store that refuses it: no commit is found
        return None
    for version, info in entries:
        if commit_tags(info).get(TXN_KEY) == txn:
            return version, info
    return None


def commit_log(uri: str, latest: int, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(version, commitInfo) of the table's commits from `latest` down (at most `limit`), each commit
    file read under its own version number. delta-rs's `history()` numbers the commits it lists
    down from the version its snapshot loaded, so a commit landing between the two shifts every
    number by one (two drivers on one table saw it; a third commit numbered -1). The store is
    opened here (a refusal raises at the call); the files are read as the entries are taken."""
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    stop = -1 if limit is None else max(latest - limit, -1)
    return _commit_files(fs, f"{base.rstrip('/')}/_delta_log", range(latest, stop, -1))


def _commit_files(fs: Any, log: str, versions: range) -> Iterator[tuple[int, dict[str, Any]]]:
    for version in versions:
        try:
            with fs.open_input_stream(f"{log}/{version:020d}.json") as stream:
                lines = stream.read().decode("utf-8").split("\n")  # not splitlines(): U+0085 in a value
        except (FileNotFoundError, OSError):
            return  # an older part of the log, already folded into a checkpoint and cleaned up
        infos = [json.loads(line).get("commitInfo") for line in lines if line.strip()]
        yield version, next((info for info in infos if info), {})


def jvm_loads(jvm: Any, name: str) -> bool:
    """Whether class `name` loads in this JVM (Spark's class loader: --jars and spark.jars count)."""
    if jvm is None:
        return False
    try:
        jvm.org.apache.spark.util.Utils.classForName(name, True, False)
    except Exception:
        return False
    return True
