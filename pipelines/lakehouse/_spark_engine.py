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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pyspark.sql import DataFrame

from pipelines.lakehouse._core import (
    TXN_KEY,
    Commit,
    ConcurrentWriteError,
    PendingWrite,
    WriteFailedError,
    WriteSpec,
    first_line,
)
from pipelines.lakehouse._files import delete_files

if TYPE_CHECKING:
    from pipelines.lakehouse import Lakehouse

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
        try:
            version = int(self._txn.commit(self._actions, self._operation, _scala_map(self._gateway, tags)))
        except Exception as exc:
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
    from pipelines.lakehouse._delta_rs import JOB_PROPERTIES, merge_rewrite

    spark = lakehouse.spark
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    jss = spark._jsparkSession
    delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(jss, spec.uri)
    txn = delta_log.startTransaction()
    options: dict[str, str] = {}
    predicate = None
    save_mode = "Overwrite"
    touched: set[str] = set()
    if spec.operation == "append":
        save_mode = "Append"
    if spec.schema_evolution:
        options["overwriteSchema" if spec.operation == "overwrite" else "mergeSchema"] = "true"
    if spec.replace_range is not None and not spec.creates:
        column, start, end = spec.replace_range
        predicate = f"`{column}` >= '{start}' AND `{column}` <= '{end}'"
        options["replaceWhere"] = predicate
    if spec.operation == "merge" and not spec.creates:
        from deltalake import DeltaTable

        # The same copy-on-write plan as delta-rs, on the snapshot this transaction read.
        snapshot = DeltaTable(spec.uri, version=int(txn.readVersion()))
        df, removed = merge_rewrite(spark, spec, df, snapshot)
        touched = {r["path"] for r in removed}
        save_mode = "Append"
    txn_id = uuid.uuid4().hex
    sc = spark.sparkContext
    previous = {key: sc.getLocalProperty(key) for key in JOB_PROPERTIES}
    sc.setLocalProperty("spark.jobGroup.id", txn_id)
    sc.setLocalProperty(
        "spark.job.description", f"downbeat: write data files of {spec.table} ({spec.operation})"
    )
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
        written = writer.write(txn, jss, none, False)
    except Exception as exc:
        at = "new table" if spec.creates else f"version {int(txn.readVersion())}"
        if spec.creates:
            remove_empty_log(spec.uri)
        raise WriteFailedError(
            f"write to {spec.table} failed before its commit; the table is unchanged ({at}): "
            f"{first_line(exc)}"
        ) from exc
    finally:
        for key, value in previous.items():
            sc.setLocalProperty(key, value)  # type: ignore[arg-type]
    actions = list(_iterate(written))
    if touched:
        # Reading every file of the snapshot marks the whole table as read: a concurrent commit
        # then conflicts with this one, as a merge needs.
        for add in _iterate(txn.filterFiles()):
            if add.path() in touched:
                actions.append(add.remove())
    adds: list[str] = []
    rows: int | None = 0
    removes = 0
    for action in actions:
        kind = action.getClass().getSimpleName()
        if kind == "AddFile":
            adds.append(unquote(action.path()))
            records = action.numLogicalRecords()
            rows = None if rows is None or not records.isDefined() else rows + int(records.get())
        elif kind == "RemoveFile":
            removes += 1
    partition_by = jvm.scala.Option.apply(utils.toSeq(list(spec.partition_by)))
    operation = getattr(jvm.org.apache.spark.sql.delta, "DeltaOperations$Write")(
        mode, partition_by, jvm.scala.Option.apply(predicate), none
    )
    return SparkWrite(spec, txn, utils.toSeq(actions), operation, adds, removes, rows, txn_id)


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
        USER_METADATA: json.dumps({TXN_KEY: txn_id, "downbeat.operation": "merge"}),
    }
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        spark.sql(
            f"MERGE INTO delta.`{spec.uri}` AS t USING {view} AS s ON {on} "
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
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)
        spark.catalog.dropTempView(view)
    from deltalake import DeltaTable

    latest = DeltaTable(spec.uri)
    entry = next(e for e in latest.history(20) if tags_of(e).get(TXN_KEY) == txn_id)
    metrics = entry.get("operationMetrics", {})
    return Commit(
        spec.table,
        int(entry["version"]),
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
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    uri = lakehouse.uri(table).replace("`", "``")
    try:
        doomed = spark.sql(f"VACUUM delta.`{uri}` RETAIN {retention_hours} HOURS DRY RUN").count()
        spark.sql(f"VACUUM delta.`{uri}` RETAIN {retention_hours} HOURS")
    finally:
        for key, old in previous.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)
    return int(doomed)


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


def tags_of(entry: dict[str, Any]) -> dict[str, Any]:
    """downbeat's commit metadata in a history entry, wherever the writing engine put it."""
    found: dict[str, Any] = dict(entry.get("tags") or {})
    user = entry.get("userMetadata")
    if isinstance(user, str) and user.startswith("{"):
        with contextlib.suppress(ValueError):
            found.update(json.loads(user))
    return {k: v for k, v in found.items() if k.startswith("downbeat.")}
