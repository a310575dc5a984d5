"""The spark engine: the Delta Spark connector writes the data files, then commits them later.

The connector's public writer (`df.write.format("delta")`) writes and commits in one call, which
cannot stage several tables before committing any. So this engine drives the connector's own
write in its two steps, through its JVM API: `WriteIntoDelta.write(txn)` writes the data files
and returns the log actions (the same code `save()` runs, with the same overwrite, replaceWhere,
schema and partitioning rules), and `OptimisticTransaction.commit(actions)` publishes them with
the connector's conflict detection. This is the connector's internal API: delta-spark is pinned,
and tests/pipelines/test_lakehouse.py exercises every operation through it.

A staged merge rewrites the files that hold a matching key (copy-on-write, as on delta-rs), since
the connector's MERGE command commits as it runs; `Lakehouse.merge()` outside a transaction uses
the connector's MERGE itself.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pyspark.sql import DataFrame

from downbeat.pipelines.errors import first_line
from downbeat.pipelines.lakehouse._core import (
    TXN_KEY,
    Commit,
    ConcurrentWriteError,
    PendingWrite,
    WriteFailedError,
    WriteSpec,
    check_read_version,
    committed_entry,
    committed_version,
    job_group,
)
from downbeat.pipelines.lakehouse._files import delete_files

if TYPE_CHECKING:
    from downbeat.pipelines.lakehouse import Lakehouse

CONFLICT_CLASS = "org.apache.spark.sql.delta.DeltaConcurrentModificationException"
USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


class SparkWrite(PendingWrite):
    """Data files the connector wrote, with the actions that will publish them at commit()."""

    def __init__(
        self,
        spec: WriteSpec,
        txn: Any,
        actions: Any,
        operation: Any,
        adds: list[str],
        removes: int,
        rows: int | None,
        txn_id: str,
    ) -> None:
        self.spec, self._txn, self._actions, self._operation = spec, txn, actions, operation
        self.adds, self.removes, self.rows, self.txn_id = adds, removes, rows, txn_id
        self.done = False

    def abort(self) -> None:
        if self.done:
            return
        self.done = True
        delete_files(self.spec.uri, self.adds)
        if self.spec.creates:
            remove_empty_log(self.spec.uri)

    def commit(self, batch: str | None = None) -> Commit:
        spec = self.spec
        if self.done:
            raise RuntimeError(f"write to {spec.table} was already committed or aborted")
        tags = {TXN_KEY: self.txn_id, "downbeat.operation": spec.operation}
        if self.rows is not None:
            tags["downbeat.rows"] = str(self.rows)
        if batch is not None:
            tags["downbeat.batch"] = batch
        tags.update(spec.tags)
        try:
            version = int(self._txn.commit(self._actions, self._operation, _scala_map(self._gateway, tags)))
        except Exception as exc:
            if not is_conflict(self._gateway, exc):
                landed = committed_version(spec.uri, self.txn_id)
                if landed is not None:  # the commit is in the log; only its reply was lost
                    self.done = True
                    return Commit(spec.table, landed, spec.operation, self.rows, len(self.adds), self.removes)
            self.abort()
            if is_conflict(self._gateway, exc):
                since = "" if spec.creates else f" after version {self._txn.readVersion()}"
                raise ConcurrentWriteError(
                    f"{spec.operation} of {spec.table}: another writer committed{since} while this write "
                    f"ran; nothing was committed, rerun the job ({first_line(exc)})"
                ) from exc
            raise
        self.done = True
        return Commit(spec.table, version, spec.operation, self.rows, len(self.adds), self.removes)

    @property
    def _gateway(self) -> Any:
        from pyspark import SparkContext

        sc = SparkContext._active_spark_context
        assert sc is not None and sc._jvm is not None
        return sc._jvm


def stage(lakehouse: Lakehouse, spec: WriteSpec, df: DataFrame, current: Any) -> SparkWrite:
    """Write the data files of a checked write through the connector; nothing is committed."""
    from downbeat.pipelines.lakehouse._delta_rs import merge_rewrite

    spark = lakehouse.spark
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jss = spark._jsparkSession
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(jss, spec.uri)
    txn = delta_log.startTransaction()
    read = int(txn.readVersion())
    check_read_version(spec, None if read < 0 else read)
    save_mode, options, predicate = _write_options(spec)
    touched: set[str] | None = None  # a merge into a table: the log paths of the files it rewrites
    if spec.operation == "merge" and not spec.creates:
        from deltalake import DeltaTable

        # The same copy-on-write plan as delta-rs, on the snapshot this transaction read.
        snapshot = DeltaTable(spec.uri, version=int(txn.readVersion()))
        df, removed = merge_rewrite(spark, spec, df, snapshot)
        touched = {r["path"] for r in removed}
        save_mode = "Append"
        options.pop("partitionOverwriteMode")
    txn_id = uuid.uuid4().hex
    mode = jvm.org.apache.spark.sql.SaveMode.valueOf(save_mode)
    utils = jvm.org.apache.spark.api.python.PythonUtils
    none = jvm.scala.Option.empty()
    try:
        writer = jvm.org.apache.spark.sql.delta.commands.WriteIntoDelta(
            delta_log,
            mode,
            jvm.org.apache.spark.sql.delta.DeltaOptions(_scala_map(jvm, options), jss.sessionState().conf()),
            utils.toSeq(list(spec.partition_by)),
            _scala_map(jvm, {}),
            df._jdf,
            none,
            none,
        )
        with job_group(spark.sparkContext, txn_id, spec):
            written = writer.write(txn, jss, none, False)
    except Exception as exc:
        at = "new table" if spec.creates else f"version {int(txn.readVersion())}"
        if spec.creates:
            remove_empty_log(spec.uri)
        raise WriteFailedError(
            f"write to {spec.table} failed before its commit; the table is unchanged ({at}): "
            f"{first_line(exc)}"
        ) from exc
    try:
        return _pending(jvm, spec, txn, written, touched, mode, predicate, txn_id)
    except BaseException:
        delete_files(spec.uri, [unquote(a.path()) for a in _iterate(written) if _kind(a) == "AddFile"])
        raise


def _write_options(spec: WriteSpec) -> tuple[str, dict[str, str], str | None]:
    """The connector's save mode, its write options, and the replaceWhere predicate (if any)."""
    # Only when asked for: otherwise the session's spark.sql.parquet.compression.codec (snappy) holds.
    options: dict[str, str] = {} if spec.compression == "snappy" else {"compression": spec.compression}
    predicate = None
    save_mode = "Overwrite"
    if spec.operation == "append":
        save_mode = "Append"
    else:
        # Whatever spark.sql.sources.partitionOverwriteMode says: an overwrite replaces the table
        # (or the replaceWhere range), as on delta-rs, never only the partitions the data has.
        options["partitionOverwriteMode"] = "static"
    if spec.schema_evolution:
        options["overwriteSchema" if spec.operation == "overwrite" else "mergeSchema"] = "true"
    if spec.replace_range is not None and not spec.creates:
        column, start, end = spec.replace_range
        predicate = f"`{column}` >= '{start}' AND `{column}` <= '{end}'"
        options["replaceWhere"] = predicate
    return save_mode, options, predicate


def _pending(
    jvm: Any,
    spec: WriteSpec,
    txn: Any,
    written: Any,
    touched: set[str] | None,
    mode: Any,
    predicate: str | None,
    txn_id: str,
) -> SparkWrite:
    """The staged write: the connector's actions, plus a merge's removals of the files it rewrote."""
    actions = list(_iterate(written))
    if touched is not None:
        # Every file of the snapshot is read, even when no key matched: the commit is then never a
        # blind append, and any concurrent commit to the table conflicts with this merge.
        removed = [add for add in _iterate(txn.filterFiles()) if add.path() in touched]
        if len(removed) != len(touched):
            raise RuntimeError(
                f"merge into {spec.table}: {len(touched)} files to rewrite, but the connector's snapshot "
                f"lists {len(removed)} of them"
            )
        actions.extend(add.remove() for add in removed)
    adds: list[str] = []
    rows: int | None = 0
    removes = 0
    for action in actions:
        kind = _kind(action)
        if kind == "AddFile":
            adds.append(unquote(action.path()))
            records = action.numLogicalRecords()
            rows = None if rows is None or not records.isDefined() else rows + int(records.get())
        elif kind == "RemoveFile":
            removes += 1
    utils = jvm.org.apache.spark.api.python.PythonUtils
    partition_by = jvm.scala.Option.apply(utils.toSeq(list(spec.partition_by)))
    operation = getattr(jvm.org.apache.spark.sql.delta, "DeltaOperations$Write")(
        mode, partition_by, jvm.scala.Option.apply(predicate), jvm.scala.Option.empty()
    )
    return SparkWrite(spec, txn, utils.toSeq(actions), operation, adds, removes, rows, txn_id)


def _kind(action: Any) -> str:
    return str(action.getClass().getSimpleName())


def merge_now(lakehouse: Lakehouse, spec: WriteSpec, df: DataFrame) -> Commit:
    """MERGE through the connector's own command (it commits as it runs): Lakehouse.merge()."""
    spark = lakehouse.spark
    view = f"downbeat_merge_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(view)
    on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in spec.merge_keys)
    txn_id = uuid.uuid4().hex
    settings = {
        "spark.databricks.delta.schema.autoMerge.enabled": "true" if spec.schema_evolution else "false",
        # downbeat's keys ride in the commit's userMetadata (the MERGE command takes no tags).
        USER_METADATA: json.dumps({TXN_KEY: txn_id, "downbeat.operation": "merge", **dict(spec.tags)}),
    }
    target = spec.uri.replace("`", "``")
    try:
        with session_settings(spark, settings):
            spark.sql(
                f"MERGE INTO delta.`{target}` AS t USING {view} AS s ON {on} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
    except Exception as exc:
        if is_conflict(spark.sparkContext._jvm, exc):
            raise ConcurrentWriteError(
                f"merge of {spec.table}: another writer committed while this merge ran; nothing was "
                f"committed, rerun the job ({first_line(exc)})"
            ) from exc
        raise
    finally:
        spark.catalog.dropTempView(view)
    found = committed_entry(spec.uri, txn_id)
    if found is None:
        raise RuntimeError(f"merge into {spec.table}: its commit is not among the table's last 100")
    version, entry = found
    metrics = entry.get("operationMetrics", {})
    return Commit(
        spec.table,
        version,
        "merge",
        int(metrics["numOutputRows"]) if "numOutputRows" in metrics else None,
        int(metrics.get("numTargetFilesAdded", 0)),
        int(metrics.get("numTargetFilesRemoved", 0)),
    )


def optimize(lakehouse: Lakehouse, table: str) -> tuple[int, int]:
    """The connector's OPTIMIZE (compaction): (files added, files removed)."""
    from delta.tables import DeltaTable

    result = DeltaTable.forPath(lakehouse.spark, lakehouse.uri(table)).optimize().executeCompaction()
    metrics = result.select("metrics.numFilesAdded", "metrics.numFilesRemoved").first()
    return (int(metrics[0]), int(metrics[1])) if metrics else (0, 0)


def restore(lakehouse: Lakehouse, table: str, version: int, tags: dict[str, str]) -> tuple[int, int]:
    """The connector's RESTORE, the commit tagged (its userMetadata): (files restored, files removed)."""
    from delta.tables import DeltaTable

    settings = {"spark.databricks.delta.commitInfo.userMetadata": json.dumps(tags, sort_keys=True)}
    with session_settings(lakehouse.spark, settings):
        result = DeltaTable.forPath(lakehouse.spark, lakehouse.uri(table)).restoreToVersion(version).first()
    return (int(result["num_restored_files"]), int(result["num_removed_files"])) if result else (0, 0)


def vacuum(lakehouse: Lakehouse, table: str, retention_hours: float) -> int:
    """The connector's VACUUM at the given retention; the number of files it deleted."""
    spark = lakehouse.spark
    settings = {
        # the retention is the caller's choice (the job's flag), below the connector's 7-day floor too
        "spark.databricks.delta.retentionDurationCheck.enabled": "false",
        # VACUUM lists the table with this many tasks (default 10,000): one round of the cluster's cores
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            spark.sparkContext.defaultParallelism
        ),
    }
    uri = lakehouse.uri(table).replace("`", "``")
    with session_settings(spark, settings):
        doomed = spark.sql(f"VACUUM delta.`{uri}` RETAIN {retention_hours} HOURS DRY RUN").count()
        spark.sql(f"VACUUM delta.`{uri}` RETAIN {retention_hours} HOURS")
    return int(doomed)


@contextlib.contextmanager
def session_settings(spark: Any, settings: dict[str, str]) -> Iterator[None]:
    """SQL settings for the block only; the session's own values (or their absence) come back after."""
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


def is_conflict(jvm: Any, exc: BaseException) -> bool:
    """Whether the connector refused a commit because another writer committed first (any
    subclass of its DeltaConcurrentModificationException)."""
    cls = getattr(getattr(exc, "java_exception", None), "getClass", lambda: None)()
    while cls is not None:
        if cls.getName() == CONFLICT_CLASS:
            return True
        cls = cls.getSuperclass()
    return False


def remove_empty_log(uri: str) -> None:
    """A table that never committed keeps no empty _delta_log folder (it would not be a table)."""
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    log = f"{base.rstrip('/')}/_delta_log"
    with contextlib.suppress(OSError):
        infos = fs.get_file_info(pafs.FileSelector(log, recursive=True, allow_not_found=True))
        if not any(i.type == pafs.FileType.File for i in infos):
            fs.delete_dir(log)


def _scala_map(jvm: Any, values: dict[str, str]) -> Any:
    java = jvm.java.util.HashMap()
    for key, value in values.items():
        java.put(key, value)
    return jvm.org.apache.spark.api.python.PythonUtils.toScalaMap(java)


def _iterate(seq: Any) -> Any:
    it = seq.iterator()
    while it.hasNext():
        yield it.next()
