"""The delta-rs engine: Spark executors write the data files, the driver commits them once."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines.errors import first_line
from downbeat.pipelines.lakehouse._core import (
    FILE_NAME_COLUMN,
    TXN_KEY,
    Commit,
    ConcurrentWriteError,
    PendingWrite,
    WriteFailedError,
    WriteSpec,
    aligned,
    check_read_version,
    committed_version,
    job_group,
    snapshot_files,
    spark_schema,
)
from downbeat.pipelines.lakehouse._files import delete_files, delete_txn_files, partition_text, task_writer


def read_files(spark: SparkSession, delta_table: Any, *, with_file: bool) -> DataFrame:
    """Read a snapshot's data files; partition values come from the log, joined per file name."""
    schema = spark_schema(delta_table)
    partition_cols = list(delta_table.metadata().partition_columns)
    files = snapshot_files(delta_table)
    if not files:
        empty = spark.createDataFrame([], schema)
        return empty.withColumn(FILE_NAME_COLUMN, F.lit(None).cast("string")) if with_file else empty
    data_schema = T.StructType([f for f in schema.fields if f.name not in partition_cols])
    df = spark.read.schema(data_schema).parquet(*[f.location for f in files])
    if not partition_cols and not with_file:
        return df.select(*schema.fieldNames())
    names = [file_name(f.path) for f in files]
    if len(set(names)) != len(names):
        raise RuntimeError(
            f"table {delta_table.table_uri} has data files with the same name in different folders; "
            "downbeat matches partition values to files by name"
        )
    by_file = T.StructType(
        [T.StructField(FILE_NAME_COLUMN, T.StringType()), *[schema[c] for c in partition_cols]]
    )
    rows = [
        (name, *[f.partition_values[c] for c in partition_cols]) for name, f in zip(names, files, strict=True)
    ]
    df = df.withColumn(FILE_NAME_COLUMN, F.col("_metadata.file_name")).join(
        F.broadcast(spark.createDataFrame(rows, by_file)), FILE_NAME_COLUMN
    )
    return df.select(*schema.fieldNames(), *([FILE_NAME_COLUMN] if with_file else []))


def file_name(path: str) -> str:
    return unquote(path.rsplit("/", 1)[-1])


@dataclass
class DeltaRsWrite(PendingWrite):
    """Data files written by the executors, not in the log yet: invisible until commit()."""

    spec: WriteSpec
    base_version: int | None  # None: the write creates the table
    adds: list[Any]
    removes: list[Any]
    mode: str  # delta-rs save mode: append (adds and removes as given) or overwrite
    partition_filters: list[tuple[str, str, Any]] | None
    txn: str
    done: bool = False

    @property
    def rows(self) -> int:
        return sum(int(json.loads(a.stats)["numRecords"]) for a in self.adds)

    def abort(self) -> None:
        if not self.done:
            delete_files(self.spec.uri, [a.path for a in self.adds])
            self.done = True

    def commit(self, batch: str | None = None) -> Commit:
        from deltalake.exceptions import CommitFailedError

        spec = self.spec
        if self.done:
            raise RuntimeError(f"write to {spec.table} was already committed or aborted")
        schema, properties, blind_append = self._commit_properties(batch)
        try:
            self._transact(schema, properties, blind_append)
        except Exception as exc:
            conflict = isinstance(exc, CommitFailedError) or "already exists" in str(exc)
            landed = None if conflict else committed_version(spec.uri, self.txn)
            if landed is not None:  # the commit is in the log; only its reply was lost
                self.done = True
                return Commit(
                    spec.table, landed, spec.operation, self.rows, len(self.adds), len(self.removes)
                )
            self.abort()
            if conflict:
                since = "" if self.base_version is None else f" after version {self.base_version}"
                raise ConcurrentWriteError(
                    f"{spec.operation} of {spec.table}: another writer committed{since} while this write "
                    f"ran; nothing was committed, rerun the job ({first_line(exc)})"
                ) from exc
            raise
        self.done = True
        return Commit(
            spec.table,
            version_of_txn(spec.uri, self.txn),
            spec.operation,
            self.rows,
            len(self.adds),
            len(self.removes),
        )

    def _commit_properties(self, batch: str | None) -> tuple[Any, Any, bool]:
        """The table's delta-rs schema, the commit's properties (tagged with this write's
        transaction id, row count, batch and the spec's tags), and whether it is a blind append."""
        from deltalake import Schema
        from deltalake.transaction import CommitProperties

        spec = self.spec
        schema = Schema.from_json(spec.schema.json())
        metadata = {TXN_KEY: self.txn, "downbeat.operation": spec.operation, "downbeat.rows": str(self.rows)}
        if batch is not None:
            metadata["downbeat.batch"] = batch
        metadata.update(spec.tags)
        blind_append = spec.operation == "append" and not spec.new_columns
        # Anything but a blind append was computed from base_version: it lands right on top of it or
        # not at all. Blind appends commute with other commits, so delta-rs may retry them.
        properties = CommitProperties(
            custom_metadata=metadata, max_commit_retries=None if blind_append else 0
        )
        return schema, properties, blind_append

    def _transact(self, schema: Any, properties: Any, blind_append: bool) -> None:
        """One Delta commit of the staged files, creating the table when there was none."""
        from deltalake import DeltaTable, Field
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import create_table_with_add_actions

        spec = self.spec
        partition_by = list(spec.partition_by) or None
        if self.base_version is None:
            create_table_with_add_actions(
                spec.uri,
                schema,
                self.adds,
                mode="error",
                partition_by=partition_by,
                commit_properties=properties,
            )
            return
        table = DeltaTable(spec.uri)
        if not blind_append and table.version() != self.base_version:
            raise CommitFailedError(f"the table is at version {table.version()}")
        if spec.new_columns:  # a metadata-only commit first: adds nullable columns
            table.alter.add_columns([Field.from_json(f.json()) for f in spec.new_columns])
        table.create_write_transaction(
            [*self.adds, *self.removes],
            mode=self.mode,
            schema=schema,
            partition_by=partition_by,
            partition_filters=self.partition_filters,
            commit_properties=properties,
        )


def stage(spark: SparkSession, spec: WriteSpec, df: DataFrame, current: Any) -> DeltaRsWrite:
    """Run the Spark job that writes the data files of a checked write; commit() comes later."""
    from deltalake.transaction import RemoveAction

    base_version = None if current is None else int(current.version())
    check_read_version(spec, base_version)
    removes: list[dict[str, Any]] = []
    filters: list[tuple[str, str, Any]] | None = None
    mode = "overwrite" if spec.operation == "overwrite" else "append"
    if spec.replace_range is not None:
        column, start, end = spec.replace_range
        if current is not None:
            mode = "overwrite"
            filters = [(column, ">=", start.isoformat()), (column, "<=", end.isoformat())]
    elif spec.operation == "merge" and current is not None:
        df, removes = merge_rewrite(spark, spec, df, current)
    txn = uuid.uuid4().hex
    adds = write_data_files(df, spec, txn, base_version)
    now = int(time.time() * 1000)
    remove_actions = [RemoveAction(r["path"], True, now, r["size"], r["partition_values"]) for r in removes]
    return DeltaRsWrite(spec, base_version, adds, remove_actions, mode, filters, txn)


def merge_rewrite(
    spark: SparkSession, spec: WriteSpec, df: DataFrame, current: Any
) -> tuple[DataFrame, list[dict[str, Any]]]:
    """Copy-on-write merge: rewrite only the files holding a matching key, minus those rows, plus `df`."""
    keys = [f"`{k}`" for k in spec.merge_keys]
    target = read_files(spark, current, with_file=True)
    source_keys = df.select(*keys).distinct()
    touched = {
        r[0]
        for r in target.join(source_keys, list(spec.merge_keys), "left_semi")
        .select(FILE_NAME_COLUMN)
        .distinct()
        .collect()
    }
    kept = (
        target.where(F.col(FILE_NAME_COLUMN).isin(sorted(touched)))
        .join(source_keys, list(spec.merge_keys), "left_anti")
        .drop(FILE_NAME_COLUMN)
    )
    rewritten = aligned(kept, spec.schema).unionByName(df)
    removes = [
        {
            "path": f.path,
            "size": f.size,
            "partition_values": {c: partition_text(v) for c, v in f.partition_values.items()},
        }
        for f in snapshot_files(current)
        if file_name(f.path) in touched
    ]
    return rewritten, removes


FILE_ROW = T.StructType(
    [
        T.StructField("path", T.StringType()),
        T.StructField("size", T.LongType()),
        T.StructField("partition_values", T.StringType()),
        T.StructField("stats", T.StringType()),
        T.StructField("rows", T.LongType()),
    ]
)


def write_data_files(df: DataFrame, spec: WriteSpec, txn: str, base_version: int | None) -> list[Any]:
    """Executors write Parquet files under the table; the driver gets one small row per file."""
    from deltalake.transaction import AddAction

    uri, table, partition_by = spec.uri, spec.table, list(spec.partition_by)
    if partition_by:
        # One open file per task at a time, as Spark's own writer does for dynamic partitions.
        df = df.sortWithinPartitions(*[F.col(f"`{c}`") for c in partition_by])
    writer = task_writer(uri, partition_by, txn, spec.compression)
    sc = df.sparkSession.sparkContext
    try:
        with job_group(sc, txn, spec):
            rows = df.mapInArrow(writer, FILE_ROW).collect()
    except Exception as exc:
        # Sibling tasks of a failed one may still be writing: let them end, then delete every file
        # this write produced, so nothing of it stays behind.
        wait_for_tasks(sc, txn)
        delete_txn_files(uri, txn)
        at = "new table" if base_version is None else f"version {base_version}"
        raise WriteFailedError(
            f"write to {table} failed before its commit; the table is unchanged ({at}): {first_line(exc)}"
        ) from exc
    now = int(time.time() * 1000)
    return [
        AddAction(r["path"], r["size"], json.loads(r["partition_values"]), now, True, r["stats"])
        for r in rows
    ]


def wait_for_tasks(sc: Any, group: str, timeout_s: float = 60.0) -> None:
    """Block until no task of the job group runs any more (or the timeout passes)."""
    tracker = sc.statusTracker()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job else []:
                stage = tracker.getStageInfo(stage_id)
                active += stage.numActiveTasks if stage else 0
        if active == 0:
            return
        time.sleep(0.1)


def version_of_txn(uri: str, txn: str) -> int:
    """The version whose commit carries this write's transaction id."""
    version = committed_version(uri, txn)
    if version is None:
        raise RuntimeError(f"{uri}: the commit of transaction {txn} is not in the last 100 versions")
    return version
