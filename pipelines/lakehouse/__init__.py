"""The Delta table layer: the only code in downbeat that reads or writes storage.

Tables are named `layer/name` (layer: bronze, silver or gold) under `lakehouse.root`. Two engines
write the same Delta protocol:

- `spark`: the Delta Spark connector, when its classes are on the classpath: its own write,
  driven in two steps (files, then commit) so that several tables can be staged first.
- `delta-rs`: Spark executors write the Parquet data files (`mapInArrow`, one writer per task);
  the driver collects only their descriptions (path, size, partition values, stats) and commits
  them once through delta-rs. No table passes through driver memory.

Guarantees (tests/pipelines/test_lakehouse.py shows each on both engines):
- a write that fails before its commit leaves the table at its previous version, with no rows of
  the failed write visible (delta-rs deletes its data files; the connector's stay, unreferenced,
  until a vacuum);
- `transaction()` stages several tables, then commits them in order (see its docstring);
- a write that read the table (overwrite, merge) fails with ConcurrentWriteError and commits
  nothing when another writer committed to it since the write started (delta-rs: any write but a
  blind append; the connector: by its own conflict rules, under which a range overwrite conflicts
  only with commits that touch its range); blind appends commute;
- a frame whose schema differs from the table's fails naming the column, unless schema evolution
  is asked for (new columns are added; a full overwrite replaces the schema);
- every table is a plain Delta table that `deltalake.DeltaTable` opens in any process.

Readers take the snapshot's file list from the Delta log, never a directory listing.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from downbeat.pipelines.errors import ConfigError, InputError, first_line
from downbeat.pipelines.lakehouse import _delta_rs, _spark_engine
from downbeat.pipelines.lakehouse._core import (
    CODECS,
    CONNECTOR_PROBLEM,
    CONNECTOR_SOURCE,
    DELTA_CLASS,
    LAYERS,
    TABLE_NAME,
    TXN_KEY,
    Commit,
    ConcurrentWriteError,
    DeltaSettings,
    Engine,
    LakehouseSettings,
    PartialCommitError,
    PendingWrite,
    SchemaMismatchError,
    TableNotFoundError,
    WriteFailedError,
    WriteMode,
    WriteSpec,
    check_data,
    commit_log,
    commit_tags,
    conform,
    file_url,
    jvm_loads,
    snapshot_files,
    spark_schema,
)

S3A_CLASS = "org.apache.hadoop.fs.s3a.S3AFileSystem"


class Unpinned:
    """The default of `read_version`: the write does not say which version its data came from."""


UNPINNED = Unpinned()

log = logging.getLogger("downbeat.lakehouse")


_FALLBACKS_LOGGED: set[str] = set()


def resolve_engine(spark: SparkSession, engine: str) -> Engine:
    """`auto` -> `spark` when the Delta connector's classes load in this session, else `delta-rs`
    (logged once per session and reason)."""
    if engine == "delta-rs":
        return "delta-rs"
    available = connector_available(spark)
    problem = spark.conf.get(CONNECTOR_PROBLEM, None) or "its classes are not on the classpath"
    if engine == "spark" and not available:
        raise InputError(
            f"config key 'delta.engine' is 'spark' but the Delta Spark connector is missing: {problem} "
            "(set delta.jars_dir or delta.packages, or use delta.engine=auto)"
        )
    if not available:
        key = f"{spark.sparkContext.applicationId}: {problem}"
        if key not in _FALLBACKS_LOGGED:
            _FALLBACKS_LOGGED.add(key)
            log.warning("delta.engine=auto: no Delta Spark connector (%s); writing with delta-rs", problem)
        return "delta-rs"
    return "spark"


def connector_available(spark: SparkSession) -> bool:
    """Whether the Delta Spark connector's classes load in this session's JVM."""
    return jvm_loads(getattr(spark.sparkContext, "_jvm", None), DELTA_CLASS)


def normalize_root(root: str) -> str:
    """Local roots become absolute paths; URIs are kept as they are."""
    if "://" in root and not root.startswith("file://"):
        return root.rstrip("/")
    path = root.removeprefix("file://")
    return str(Path(path).expanduser().resolve())


def object_store_defaults(root: str, env: MutableMapping[str, str]) -> None:
    """For an `s3://` root, the delta-rs settings downbeat relies on, where the environment does not
    set them already: commits by conditional put (`If-None-Match`, which S3, MinIO and moto honour),
    so that two writers cannot both commit one version; plain HTTP when AWS_ENDPOINT_URL is http://.
    pyarrow, delta-rs, boto3 and (through pipelines/spark.py) Hadoop's S3A read the same variables.
    Lakehouse() applies it to os.environ: the settings hold for the rest of the process, and for
    the Spark workers it starts (their delta-rs and pyarrow read them too)."""
    if not root.startswith("s3://"):
        return
    env.setdefault("AWS_CONDITIONAL_PUT", "etag")
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
    if endpoint.startswith("http://"):
        env.setdefault("AWS_ALLOW_HTTP", "true")


class Lakehouse:
    """Reads and writes the lakehouse's Delta tables through one engine."""

    def __init__(self, spark: SparkSession | None, root: str, engine: Engine = "delta-rs") -> None:
        """`spark` may be None for metadata only (versions, file lists, history): reads and writes need it."""
        self._spark = spark
        self.root = normalize_root(root)
        object_store_defaults(self.root, os.environ)
        self.engine: Engine = engine

    @classmethod
    def from_settings(
        cls, spark: SparkSession, lakehouse: LakehouseSettings, delta: DeltaSettings
    ) -> Lakehouse:
        root = normalize_root(lakehouse.root)
        if root.startswith("s3://") and not jvm_loads(getattr(spark.sparkContext, "_jvm", None), S3A_CLASS):
            raise ConfigError(
                f"config key 'lakehouse.root' is {root} but Hadoop's S3A ({S3A_CLASS}) is not on Spark's "
                "classpath: set spark.packages to org.apache.hadoop:hadoop-aws:<pyspark's Hadoop, 3.4.1> "
                "(under spark-submit, add it to --packages)"
            )
        return cls(spark, root, resolve_engine(spark, delta.engine))

    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            raise RuntimeError("this Lakehouse was opened without Spark: reads and writes need a session")
        return self._spark

    # ---- names and metadata -------------------------------------------------------------------

    def uri(self, table: str) -> str:
        """The table's location: `{root}/{layer}/{name}`."""
        if not TABLE_NAME.match(table):
            raise InputError(
                f"table name {table!r} must be layer/name with layer one of {', '.join(LAYERS)}"
                " and name in lower case letters, digits and '_'"
            )
        return f"{self.root}/{table}"

    def exists(self, table: str) -> bool:
        from deltalake import DeltaTable

        uri = self.uri(table)
        try:
            return bool(DeltaTable.is_deltatable(uri))
        except OSError as exc:  # the object store refused (no credentials, no such bucket, no network)
            raise store_refused(table, uri, exc) from None

    def version(self, table: str) -> int:
        """The table's current version."""
        return int(self._delta_table(table).version())

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit records, newest first: version, timestamp, operation, operationParameters, ...,
        and downbeat's own keys (downbeat.operation, .rows, .txn, .batch) whichever engine wrote it."""
        latest = int(self._delta_table(table).version())  # checks the table exists and can be read
        entries = commit_log(self.uri(table), latest, limit)
        return [{**info, "version": version, **commit_tags(info)} for version, info in entries]

    def file_uris(self, table: str, version: int | None = None) -> list[str]:
        """URLs of the snapshot's data files (file:// for local tables), from the Delta log."""
        return [file_url(f.location) for f in snapshot_files(self._delta_table(table, version))]

    def snapshot(self, table: str, version: int | None = None) -> tuple[int, list[str], int | None]:
        """(version, data file URLs, row count or None) of one snapshot, all read from the same log state."""
        import pyarrow as pa

        delta = self._delta_table(table, version)
        files = [file_url(f.location) for f in snapshot_files(delta)]
        counts = pa.table(delta.get_add_actions(flatten=True)).to_pydict().get("num_records")
        rows = None if counts is None or any(c is None for c in counts) else int(sum(counts))
        return int(delta.version()), files, rows

    def rows(self, table: str) -> int:
        """The table's row count, from the log's per-file statistics (a scan only where they lack it)."""
        counted = self.snapshot(table)[2]
        return counted if counted is not None else self.read(table).count()

    def partition_columns(self, table: str) -> list[str]:
        return list(self._delta_table(table).metadata().partition_columns)

    def schema(self, table: str, version: int | None = None) -> T.StructType:
        """The table's Spark schema (Delta's schema JSON is Spark's own)."""
        return spark_schema(self._delta_table(table, version))

    # ---- reads --------------------------------------------------------------------------------

    def read(self, table: str, version: int | None = None) -> DataFrame:
        """The table's rows at `version` (default: current), columns in table order."""
        if self.engine == "spark":
            uri = self.uri(table)
            self._delta_table(table, version)  # same not-found error as the delta-rs engine
            reader = self.spark.read.format("delta")
            if version is not None:
                reader = reader.option("versionAsOf", version)
            return reader.load(uri)
        return _delta_rs.read_files(self.spark, self._delta_table(table, version), with_file=False)

    # ---- writes -------------------------------------------------------------------------------

    def write(
        self,
        df: DataFrame,
        table: str,
        *,
        mode: WriteMode = "overwrite",
        partition_by: Sequence[str] = (),
        schema_evolution: bool = False,
    ) -> Commit:
        """Overwrite the table with `df`, or append `df` to it; creates the table when absent."""
        if mode not in ("overwrite", "append"):
            raise InputError(f"write mode {mode!r} must be overwrite or append")
        return self._run(
            df, table, operation=mode, partition_by=partition_by, schema_evolution=schema_evolution
        )

    def overwrite_partitions(
        self,
        df: DataFrame,
        table: str,
        *,
        column: str,
        start: dt.date,
        end: dt.date,
        schema_evolution: bool = False,
    ) -> Commit:
        """Replace the rows whose partition `column` lies in [start, end] with `df`'s rows."""
        return self._run(
            df,
            table,
            operation="replace_range",
            partition_by=(column,),
            replace_range=(column, start, end),
            schema_evolution=schema_evolution,
        )

    def merge(
        self, df: DataFrame, table: str, *, keys: Sequence[str], schema_evolution: bool = False
    ) -> Commit:
        """Upsert: rows of `df` replace the table's rows with equal `keys`; the others are inserted.

        On the spark engine this is the connector's MERGE; in a transaction, a staged rewrite."""
        if self.engine == "spark" and self.exists(table):
            spec, df = self._checked(
                df, table, operation="merge", merge_keys=keys, schema_evolution=schema_evolution
            )
            return _spark_engine.merge_now(self, spec, df)
        return self._run(
            df, table, operation="merge", merge_keys=tuple(keys), schema_evolution=schema_evolution
        )

    # ---- maintenance --------------------------------------------------------------------------

    def tables(self) -> list[str]:
        """Every Delta table under the root (`layer/name`), sorted."""
        import pyarrow.fs as pafs

        fs, base = pafs.FileSystem.from_uri(file_url(self.root))
        found = []
        for layer in LAYERS:
            selector = pafs.FileSelector(f"{base.rstrip('/')}/{layer}", allow_not_found=True)
            for info in fs.get_file_info(selector):
                name = f"{layer}/{info.base_name}"
                if info.type == pafs.FileType.Directory and TABLE_NAME.match(name) and self.exists(name):
                    found.append(name)
        return sorted(found)

    def optimize(self, table: str) -> Maintenance:
        """Compact small data files into larger ones (bin-packing, per partition): a new version."""
        started = time.monotonic()
        before = self.version(table)
        if self.engine == "spark":
            added, removed = _spark_engine.optimize(self, table)
        else:
            metrics = self._delta_table(table).optimize.compact()
            added, removed = int(metrics["numFilesAdded"]), int(metrics["numFilesRemoved"])
        return Maintenance(
            table, "optimize", before, self.version(table), added, removed, time.monotonic() - started
        )

    def vacuum(self, table: str, retention_hours: float) -> Maintenance:
        """Delete data files that no version newer than `retention_hours` ago needs, and files no
        version references (left by failed writes) older than that. Time travel to versions whose
        files are gone fails afterwards."""
        if not math.isfinite(retention_hours) or retention_hours < 0:
            raise InputError(f"vacuum retention must be 0 hours or more, not {retention_hours}")
        started = time.monotonic()
        before = self.version(table)
        if self.engine == "spark":
            deleted = _spark_engine.vacuum(self, table, retention_hours)
        else:
            deleted = len(
                self._delta_table(table).vacuum(
                    retention_hours=math.ceil(retention_hours),  # whole hours: never less than asked
                    dry_run=False,
                    enforce_retention_duration=False,
                    full=True,
                )
            )
        return Maintenance(
            table, "vacuum", before, self.version(table), 0, deleted, time.monotonic() - started
        )

    def restore(self, table: str, version: int) -> Maintenance:
        """Roll `table` back to `version`'s content (Delta's RESTORE): a new version, whose commit
        carries the downbeat tags of the write that made `version`'s data (its build's batch too),
        and `downbeat.restored_from`. Versions after it stay in the log until a vacuum."""
        started = time.monotonic()
        before = self.version(table)
        if not 0 <= version < before:
            raise InputError(
                f"restore {table} to version {version}: its versions are 0..{before}; name an earlier one"
            )
        writer = next(
            (e for e in self.history(table) if e.get("version", -1) <= version and "downbeat.operation" in e),
            {},
        )
        tags = {k: str(v) for k, v in commit_tags(writer).items() if k != TXN_KEY}
        tags["downbeat.restored_from"] = str(version)
        if self.engine == "spark":
            restored, removed = _spark_engine.restore(self, table, version, tags)
        else:
            from deltalake.transaction import CommitProperties

            metrics = self._delta_table(table).restore(
                version, commit_properties=CommitProperties(custom_metadata=tags)
            )
            restored, removed = int(metrics.get("numRestoredFile", 0)), int(metrics.get("numRemovedFile", 0))
        return Maintenance(
            table, "restore", before, self.version(table), restored, removed, time.monotonic() - started
        )

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Writes to several tables, committed together at the end of the block.

        `tx.stage(df, table, ...)` writes a table's data files at once (nothing visible); leaving
        the block commits every staged write in staging order. An exception in the block aborts
        them all (their files are deleted, every table stays as it was). A failure in the commit
        phase leaves the tables committed before it at their new versions and every later table at
        its previous version, and raises PartialCommitError naming both (docs/lakehouse.md).
        """
        tx = Transaction(self)
        try:
            yield tx
        except BaseException:
            tx.abort()
            raise
        tx.commit()

    def prepare(
        self,
        df: DataFrame,
        table: str,
        *,
        operation: str,
        partition_by: Sequence[str] = (),
        replace_range: tuple[str, dt.date, dt.date] | None = None,
        merge_keys: Sequence[str] = (),
        schema_evolution: bool = False,
        compression: str = "snappy",
        keys_unique: bool = False,
        tags: Mapping[str, str] | None = None,
        read_version: int | Unpinned | None = UNPINNED,
    ) -> PendingWrite:
        """First half of a write: check it and write its data files. `commit()` publishes them.

        read_version: the version the caller computed `df` from (None: the table did not exist);
        the write then fails with ConcurrentWriteError, before any file is written, unless it
        lands right on that version (the engines catch any commit after this point)."""
        spec, df = self._checked(
            df,
            table,
            operation=operation,
            partition_by=partition_by,
            replace_range=replace_range,
            merge_keys=merge_keys,
            schema_evolution=schema_evolution,
            compression=compression,
            keys_unique=keys_unique,
            tags=tags,
        )
        if not isinstance(read_version, Unpinned):
            spec.read_version, spec.pinned = read_version, True
        current = None if spec.creates else self._delta_table(table)
        if self.engine == "spark":
            return _spark_engine.stage(self, spec, df, current)
        return _delta_rs.stage(self.spark, spec, df, current)

    # ---- internals ----------------------------------------------------------------------------

    def _checked(
        self,
        df: DataFrame,
        table: str,
        *,
        operation: str,
        partition_by: Sequence[str] = (),
        replace_range: tuple[str, dt.date, dt.date] | None = None,
        merge_keys: Sequence[str] = (),
        schema_evolution: bool = False,
        compression: str = "snappy",
        keys_unique: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[WriteSpec, DataFrame]:
        """The write's plan, checked against the table (schema, partitioning, range, keys)."""
        if compression not in CODECS:
            raise InputError(
                f"write to {table}: compression {compression!r} is not one of {', '.join(CODECS)}"
            )
        uri = self.uri(table)
        spec = WriteSpec(
            table=table,
            uri=uri,
            operation=operation,
            partition_by=tuple(partition_by),
            replace_range=replace_range,
            merge_keys=tuple(merge_keys),
            schema_evolution=schema_evolution,
            compression=compression,
            keys_unique=keys_unique,
            tags=_downbeat_tags(tags),
        )
        current = self._current(table)
        df = conform(df, spec, current)
        check_data(df, spec)
        return spec, df

    def _run(self, df: DataFrame, table: str, **how: Any) -> Commit:
        started = time.monotonic()
        log.info("%s %s: writing data files (%s engine)", how["operation"], table, self.engine)
        commit = self.prepare(df, table, **how).commit()
        log_commit(commit, time.monotonic() - started)
        return commit

    def _current(self, table: str) -> Any:
        """The table's current snapshot, or None when there is no table yet."""
        try:
            return self._delta_table(table)
        except TableNotFoundError:
            return None

    def _delta_table(self, table: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError as DeltaNotFound

        uri = self.uri(table)
        try:
            return DeltaTable(uri, version=version)
        except DeltaNotFound:
            raise TableNotFoundError(f"table {table} does not exist (no Delta log under {uri})") from None
        except Exception as exc:
            if version is not None and "version" in str(exc).lower():
                raise InputError(f"table {table} has no version {version}: {first_line(exc)}") from None
            if isinstance(exc, OSError) and "://" in uri and not uri.startswith("file:"):
                raise store_refused(table, uri, exc) from None
            raise


def store_refused(table: str, uri: str, exc: OSError) -> InputError:
    """Bad input (exit 2) naming the table, its URI and delta-rs's chain of causes on one line."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # delta-rs colours its chain of causes
    causes = [line.strip().lstrip("\u21b3").strip() for line in plain.splitlines()]
    reason = "; ".join(c for c in causes if c)
    return InputError(
        f"table {table} at {uri}: the object store refused access ({reason}); check the credentials "
        "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or an instance role) and lakehouse.root"
    )


def log_commit(commit: Commit, seconds: float) -> None:
    rows = "" if commit.rows_written is None else f", {commit.rows_written} rows"
    log.info(
        "%s %s: committed version %d%s, +%d/-%d files in %.1f s",
        commit.operation,
        commit.table,
        commit.version,
        rows,
        commit.files_added,
        commit.files_removed,
        seconds,
    )


@dataclass(frozen=True)
class Maintenance:
    """What one optimize, vacuum or restore did to a table."""

    table: str
    action: str
    version_before: int
    version_after: int
    files_added: int
    files_removed: int  # optimize: files compacted away; vacuum: files deleted from storage; restore: files
    # the restored version no longer holds (files_added: the ones it holds again)
    seconds: float


class Transaction:
    """Staged writes to several tables, committed together: see Lakehouse.transaction()."""

    def __init__(self, lakehouse: Lakehouse) -> None:
        self.lakehouse = lakehouse
        self.id = uuid.uuid4().hex
        self.staged: list[tuple[str, PendingWrite]] = []
        self.commits: dict[str, Commit] = {}
        self._started = time.monotonic()

    def stage(
        self,
        df: DataFrame,
        table: str,
        *,
        operation: str = "overwrite",
        partition_by: Sequence[str] = (),
        replace_range: tuple[str, dt.date, dt.date] | None = None,
        merge_keys: Sequence[str] = (),
        schema_evolution: bool = False,
        compression: str = "snappy",
        keys_unique: bool = False,
        tags: Mapping[str, str] | None = None,
        read_version: int | Unpinned | None = UNPINNED,
    ) -> None:
        """Write `df`'s data files for `table` now; they become visible when the transaction commits.

        compression: the data files' Parquet codec, snappy or uncompressed (for a table read
        more often than it is stored, such as the one training streams every epoch).
        keys_unique: the caller made `merge_keys` unique itself (ingest deduplicates on event_id),
        so the check for duplicate keys, a shuffle of every key, is skipped.
        tags: more `downbeat.*` keys for the commit record (what a reader must know of how the
        data was made; Lakehouse.history() returns them).
        read_version: the table version `df` was computed from (None: no table), for a write that
        read the table itself; see Lakehouse.prepare."""
        if any(name == table for name, _ in self.staged):
            raise InputError(f"transaction {self.id}: {table} is staged twice")
        log.info("%s %s: writing data files (%s engine, staged)", operation, table, self.lakehouse.engine)
        write = self.lakehouse.prepare(
            df,
            table,
            operation=operation,
            partition_by=partition_by,
            replace_range=replace_range,
            merge_keys=merge_keys,
            schema_evolution=schema_evolution,
            compression=compression,
            keys_unique=keys_unique,
            tags=tags,
            read_version=read_version,
        )
        self.staged.append((table, write))

    def abort(self) -> None:
        """Discard every staged write that has not committed."""
        Transaction.abort_all(self.staged)

    @staticmethod
    def abort_all(staged: list[tuple[str, PendingWrite]]) -> None:
        """Discard these staged writes (best effort: one that cannot delete
        its files leaves them unreferenced, for a vacuum, and the others still go)."""
        for table, write in staged:
            try:
                write.abort()
            except Exception as exc:
                log.warning("%s: could not delete the staged files (%s)", table, first_line(exc))

    def commit(self) -> dict[str, Commit]:
        """Commit the staged writes in staging order; see Lakehouse.transaction() for failures."""
        for i, (table, write) in enumerate(self.staged):
            try:
                commit = write.commit(batch=self.id)
            except BaseException as exc:
                rest = [name for name, _ in self.staged[i:]]
                Transaction.abort_all(self.staged[i + 1 :])
                if not self.commits:
                    raise  # nothing committed: every table is as it was
                done = ", ".join(f"{c.table} v{c.version}" for c in self.commits.values())
                raise PartialCommitError(
                    f"transaction {self.id}: committed {done}, then {table} failed ({first_line(exc)}); "
                    f"{', '.join(rest)} kept their previous versions and their staged files were "
                    "deleted: rerun the job"
                ) from exc
            self.commits[table] = commit
            log_commit(commit, time.monotonic() - self._started)
        return self.commits


RESERVED_TAGS = (TXN_KEY, "downbeat.operation", "downbeat.rows", "downbeat.batch")


def _downbeat_tags(tags: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """Commit tags as a WriteSpec holds them; each key must be downbeat's own."""
    for key in tags or {}:
        if not key.startswith("downbeat."):
            raise ValueError(f"commit tag {key!r} is not a downbeat.* key")
        if key in RESERVED_TAGS:
            raise ValueError(f"commit tag {key!r} is the table layer's own")
    return tuple(sorted((tags or {}).items()))


__all__ = [
    "CONNECTOR_PROBLEM",
    "CONNECTOR_SOURCE",
    "Commit",
    "ConcurrentWriteError",
    "DeltaSettings",
    "Lakehouse",
    "LakehouseSettings",
    "Maintenance",
    "PartialCommitError",
    "PendingWrite",
    "SchemaMismatchError",
    "TableNotFoundError",
    "Transaction",
    "WriteFailedError",
    "connector_available",
    "normalize_root",
    "object_store_defaults",
    "resolve_engine",
]
