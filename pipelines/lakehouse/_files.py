"""Executor side of the delta-rs engine: each Spark task writes its rows as Parquet data files.

Runs inside `mapInArrow` on executors, so it imports only pyarrow and pyspark's TaskContext.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

ROWS_PER_FILE = 1_000_000
ROWS_PER_ROW_GROUP = 131_072
BYTES_PER_ROW_GROUP = 64 * 1024 * 1024  # bounds a task's buffer for wide rows (long arrays)
STAT_STRING_LIMIT = 32
SAFE_DIR_VALUE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def task_writer(
    uri: str, partition_by: list[str], txn: str, compression: str = "snappy"
) -> Callable[[Iterable[Any]], Iterator[Any]]:
    """The function each task runs: write its rows (Parquet, `compression`), yield a row per file written."""

    def write(batch_iter: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.fs as pafs
        from pyspark import TaskContext

        batches = iter(batch_iter)
        first = next(batches, None)
        if first is None:
            return
        ctx = TaskContext.get()
        task = f"{ctx.partitionId():05d}-{txn}-{ctx.attemptNumber()}" if ctx else f"00000-{txn}-0"
        fs, base = pafs.FileSystem.from_uri(uri)
        data_names = [n for n in first.schema.names if n not in partition_by]
        out = FileRoller(
            fs, base, task, pa.schema([first.schema.field(n) for n in data_names]), partition_by, compression
        )
        try:
            for batch in itertools.chain([first], batches):
                for key, piece in runs(batch, partition_by):
                    out.write(key, piece.select(data_names))
            out.close()
        except BaseException:
            out.discard()  # a task that fails removes what it wrote; the driver sweeps the rest
            raise
        yield pa.RecordBatch.from_pylist(
            out.files,
            schema=pa.schema(
                [
                    ("path", pa.string()),
                    ("size", pa.int64()),
                    ("partition_values", pa.string()),
                    ("stats", pa.string()),
                    ("rows", pa.int64()),
                ]
            ),
        )

    return write


def runs(batch: Any, partition_by: list[str]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Split a batch sorted by the partition columns into runs of equal partition values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not partition_by or batch.num_rows == 0:
        yield (), batch
        return
    n = batch.num_rows
    change = pa.array([False] * (n - 1), pa.bool_()) if n > 1 else None
    if change is not None:
        for name in partition_by:
            col = batch.column(name)
            if pa.types.is_null(col.type):
                continue  # all null: one run
            a, b = col.slice(1), col.slice(0, n - 1)
            differs = pc.fill_null(pc.not_equal(a, b), True)
            both_null = pc.and_(pc.is_null(a), pc.is_null(b))
            change = pc.or_(change, pc.and_not(differs, both_null))
    starts = [0] + ([i + 1 for i in pc.indices_nonzero(change).to_pylist()] if change is not None else [])
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        key = tuple(batch.column(c)[start].as_py() for c in partition_by)
        yield key, batch.slice(start, stop - start)


class FileRoller:
    """Writes one Parquet file at a time per partition key, rolling over at ROWS_PER_FILE."""

    def __init__(
        self, fs: Any, base: str, task: str, schema: Any, partition_by: list[str], compression: str = "snappy"
    ) -> None:
        self.fs, self.base, self.task, self.schema = fs, base.rstrip("/"), task, schema
        self.compression = compression
        self.partition_by = partition_by
        self.files: list[dict[str, Any]] = []
        self.key: tuple[Any, ...] | None = None
        self.writer: Any = None
        self.buffer: list[Any] = []
        self.buffered = self.buffered_bytes = 0
        self.stats: Stats | None = None
        self.count = 0
        self.path = ""
        self.partition_values: dict[str, str | None] = {}

    def write(self, key: tuple[Any, ...], batch: Any) -> None:
        if self.writer is None or key != self.key or (self.stats and self.stats.rows >= ROWS_PER_FILE):
            self._close_file()
            self._open_file(key)
        assert self.stats is not None
        self.stats.add(batch)
        self.buffer.append(batch)
        self.buffered += batch.num_rows
        self.buffered_bytes += batch.nbytes
        if self.buffered >= ROWS_PER_ROW_GROUP or self.buffered_bytes >= BYTES_PER_ROW_GROUP:
            self._flush()

    def close(self) -> None:
        self._close_file()

    def discard(self) -> None:
        """Delete every file this task opened."""
        paths = [f["path"] for f in self.files] + ([self.path] if self.writer is not None else [])
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
            self.writer = None
        for path in paths:
            with contextlib.suppress(OSError):
                self.fs.delete_file(f"{self.base}/{path}")

    def _open_file(self, key: tuple[Any, ...]) -> None:
        import pyarrow.parquet as pq

        self.key = key
        names = self.partition_by
        self.partition_values = {n: partition_text(v) for n, v in zip(names, key, strict=True)}
        folder = "/".join(f"{n}={dir_value(self.partition_values[n])}" for n in names)
        codec = "" if self.compression == "uncompressed" else f".{self.compression}"
        name = f"part-{self.task}-{self.count:04d}{codec}.parquet"
        self.count += 1
        self.path = f"{folder}/{name}" if folder else name
        full = f"{self.base}/{self.path}"
        self.fs.create_dir(f"{self.base}/{folder}".rstrip("/"), recursive=True)
        self.writer = pq.ParquetWriter(
            full,
            self.schema,
            filesystem=self.fs,
            compression="none" if self.compression == "uncompressed" else self.compression,
        )
        self.stats = Stats(self.schema)

    def _flush(self) -> None:
        import pyarrow as pa

        if self.buffer:
            self.writer.write_table(pa.Table.from_batches(self.buffer, schema=self.schema))
        self.buffer, self.buffered, self.buffered_bytes = [], 0, 0

    def _close_file(self) -> None:
        if self.writer is None:
            return
        self._flush()
        self.writer.close()
        assert self.stats is not None
        size = self.fs.get_file_info(f"{self.base}/{self.path}").size
        self.files.append(
            {
                "path": self.path,
                "size": size,
                "partition_values": json.dumps(self.partition_values),
                "stats": self.stats.to_json(),
                "rows": self.stats.rows,
            }
        )
        self.writer = None


class Stats:
    """Delta file statistics: numRecords, and nullCount/minValues/maxValues where they are exact."""

    def __init__(self, schema: Any) -> None:
        import pyarrow as pa

        self.rows = 0
        self.nulls: dict[str, int] = {}
        self.mins: dict[str, Any] = {}
        self.maxs: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}
        for f in schema:
            if pa.types.is_integer(f.type):
                self.kinds[f.name] = "int"
            elif pa.types.is_date32(f.type):
                self.kinds[f.name] = "date"
            elif pa.types.is_timestamp(f.type) and f.type.unit == "us":
                self.kinds[f.name] = "ts"
            elif pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                self.kinds[f.name] = "str"
            elif pa.types.is_boolean(f.type) or pa.types.is_floating(f.type):
                self.kinds[f.name] = "count"  # null counts only: NaN makes float min/max unsafe

    def add(self, batch: Any) -> None:
        import pyarrow.compute as pc

        self.rows += batch.num_rows
        for name, kind in self.kinds.items():
            col = batch.column(name)
            self.nulls[name] = self.nulls.get(name, 0) + col.null_count
            if kind == "count" or col.null_count == len(col):
                continue
            mm = pc.min_max(col)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            if name not in self.mins or lo < self.mins[name]:
                self.mins[name] = lo
            if name not in self.maxs or hi > self.maxs[name]:
                self.maxs[name] = hi

    def to_json(self) -> str:
        stats: dict[str, Any] = {"numRecords": self.rows, "nullCount": dict(self.nulls)}
        mins: dict[str, Any] = {}
        maxs: dict[str, Any] = {}
        for name, lo in self.mins.items():
            hi, kind = self.maxs[name], self.kinds[name]
            if kind == "int":
                mins[name], maxs[name] = lo, hi
            elif kind == "date":
                mins[name], maxs[name] = lo.isoformat(), hi.isoformat()
            elif kind == "ts":
                # Delta readers keep millisecond stats: round the bounds outwards so they stay bounds.
                mins[name], maxs[name] = ts_text(lo, up=False), ts_text(hi, up=True)
            elif kind == "str" and len(hi) <= STAT_STRING_LIMIT:
                # A prefix of the minimum is still a lower bound; a cut maximum would not be an upper one.
                mins[name], maxs[name] = lo[:STAT_STRING_LIMIT], hi
        if mins:
            stats["minValues"], stats["maxValues"] = mins, maxs
        return json.dumps(stats, ensure_ascii=False)


def ts_text(value: dt.datetime, *, up: bool) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    micros = value.microsecond
    millis = math.ceil(micros / 1000) if up else micros // 1000
    value = value.replace(microsecond=0) + dt.timedelta(milliseconds=millis)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def partition_text(value: Any) -> str | None:
    """Delta's text form of a partition value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def dir_value(text: str | None) -> str:
    """A folder name for a partition value; the log, not the folder, holds the value."""
    if text is None:
        return "__HIVE_DEFAULT_PARTITION__"
    if SAFE_DIR_VALUE.match(text):
        return text
    return "h" + uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:16]


def delete_files(uri: str, relative_paths: Sequence[str]) -> None:
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    for path in relative_paths:
        with contextlib.suppress(FileNotFoundError, OSError):
            fs.delete_file(f"{base.rstrip('/')}/{path}")


def delete_txn_files(uri: str, txn: str) -> None:
    """Best-effort removal of every data file a failed write left behind (its names carry `txn`)."""
    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except OSError:
        return
    for info in infos:
        if info.type == pafs.FileType.File and txn in info.base_name:
            with contextlib.suppress(OSError):
                fs.delete_file(info.path)
