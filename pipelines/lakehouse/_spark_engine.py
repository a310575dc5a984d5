"""The spark engine: the Delta Spark connector writes and commits."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame

from pipelines.lakehouse._core import (
    Commit,
    ConcurrentWriteError,
    PendingWrite,
    WriteSpec,
    first_line,
)

if TYPE_CHECKING:
    from pipelines.lakehouse import Lakehouse


class SparkWrite(PendingWrite):
    """The Delta Spark connector writes and commits in one step, at commit()."""

    def __init__(self, lakehouse: Lakehouse, spec: WriteSpec, df: DataFrame) -> None:
        self.lakehouse, self.spec, self.df = lakehouse, spec, df

    def abort(self) -> None:
        return None

    def commit(self) -> Commit:
        spec = self.spec
        evolve = "overwriteSchema" if spec.operation == "overwrite" else "mergeSchema"
        try:
            if spec.operation == "merge":
                if spec.creates:
                    self._save("overwrite", {})
                else:
                    self._merge()
            else:
                options: dict[str, str] = {evolve: "true"} if spec.schema_evolution else {}
                mode = "append" if spec.operation == "append" else "overwrite"
                if spec.replace_range is not None:
                    column, start, end = spec.replace_range
                    options["replaceWhere"] = f"`{column}` >= '{start}' AND `{column}` <= '{end}'"
                self._save(mode, options)
        except Exception as exc:
            if "Concurrent" in type(exc).__name__ or "ConcurrentModification" in str(exc)[:2000]:
                raise ConcurrentWriteError(
                    f"{spec.operation} of {spec.table}: another writer committed "
                    f"first; nothing was committed: {first_line(exc)}"
                ) from exc
            raise
        latest = self.lakehouse._delta_table(spec.table)
        return Commit(spec.table, int(latest.version()), spec.operation, None, 0, 0)

    def _save(self, mode: str, options: dict[str, str]) -> None:
        writer = self.df.write.format("delta").mode(mode).options(**options)
        if self.spec.partition_by and self.spec.creates:
            # Only a new table takes its partitioning from the write; an existing one keeps its own.
            writer = writer.partitionBy(*self.spec.partition_by)
        writer.save(self.spec.uri)

    def _merge(self) -> None:
        spark = self.lakehouse.spark
        view = f"downbeat_merge_{uuid.uuid4().hex}"
        self.df.createOrReplaceTempView(view)
        on = " AND ".join(f"t.`{k}` = s.`{k}`" for k in self.spec.merge_keys)
        key = "spark.databricks.delta.schema.autoMerge.enabled"
        previous = spark.conf.get(key, "false")
        spark.conf.set(key, "true" if self.spec.schema_evolution else "false")
        try:
            spark.sql(
                f"MERGE INTO delta.`{self.spec.uri}` AS t USING {view} AS s ON {on} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
        finally:
            spark.conf.set(key, previous or "false")
            spark.catalog.dropTempView(view)
