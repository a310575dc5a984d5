"""The training stream: gold/training_sequences row groups -> shuffled Batches, read ahead of the step.

Three layers, so that another streaming library can replace Petastorm without touching `fit()`:

- a chunk source (`PetastormChunks`, or `ArrowChunks` with pyarrow alone) reads one rank's shard of
  the table's row groups, in an order seeded per pass, as `Chunk`s: (rows, width) arrays decoded
  from the fixed-width binary columns in one `np.frombuffer` per column, never row by row;
- `ShuffledBatches` turns chunks into exactly `steps` Batches per epoch (a shuffle buffer on top of
  shuffled row groups), each one gather per column into contiguous arrays that reach torch through
  `torch.from_numpy`, trimmed to the batch's longest row (left padding makes that a tail slice);
- `Prefetcher` runs that in a background thread, `depth` batches ahead of the training step, pinning
  them in page-locked memory when they go to a GPU, and times its own work (rows/s).

`fit()` sees only an iterable of Batches per epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq
import torch

from downbeat.models.contract import LENGTH, TARGET_MASK, TRAINING_ARRAYS, TRAINING_DTYPES, USER_ID
from downbeat.models.network import Batch
from downbeat.models.settings import RunSettings

log = logging.getLogger("downbeat.loader")
logging.getLogger("petastorm").setLevel(logging.WARNING)  # it logs every reader's set-up at INFO
# petastorm 0.12 goes through pyarrow's legacy dataset API, which warns on every file it opens.
for _category in (FutureWarning, DeprecationWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"petastorm(\.|$)")
    warnings.filterwarnings("ignore", category=_category, module=r"pyarrow\.parquet")
LOADERS = ("petastorm", "arrow")


@dataclass(frozen=True)
class Chunk:
    """Consecutive rows of one row group: (rows, width) arrays per column, and row lengths."""

    columns: dict[str, np.ndarray]
    lengths: np.ndarray  # (rows,) items per row (the rest, on the left, is padding)

    @property
    def rows(self) -> int:
        return len(self.lengths)

    def take(self, keep: np.ndarray) -> Chunk:
        return Chunk({c: v[keep] for c, v in self.columns.items()}, self.lengths[keep])


class ChunkSource(Protocol):
    """One rank's shard of the table as chunks, pass after pass without end, each pass's order of
    row groups drawn from a generator seeded by `seed`: the same seed, the same stream."""

    shard_rows: int  # about how many rows one pass holds

    def __call__(self, seed: int) -> Iterator[Chunk]: ...


def decode(name: str, values: Sequence[bytes] | np.ndarray, rows: int) -> np.ndarray:
    """(rows, width) array of one fixed-width binary column, from its values joined once."""
    dtype = np.dtype(TRAINING_DTYPES[name])
    joined = b"".join(values)
    if rows == 0:
        return np.zeros((0, 0), dtype=dtype)
    size = len(joined) // rows
    if size * rows != len(joined) or size % dtype.itemsize:
        raise ValueError(
            f"column {name} of gold/training_sequences is not fixed-width {dtype.name}: "
            f"{len(joined)} bytes in {rows} rows (rebuild the table with `downbeat build`)"
        )
    return np.frombuffer(joined, dtype=dtype).reshape(rows, size // dtype.itemsize)


def decode_binary(name: str, column: pa.Array) -> np.ndarray:
    """As `decode`, straight from an arrow binary column's data buffer (no Python objects)."""
    dtype = np.dtype(TRAINING_DTYPES[name])
    if not pa.types.is_binary(column.type):
        raise ValueError(f"column {name} of gold/training_sequences is {column.type}, not binary")
    rows = len(column)
    if rows == 0:
        return np.zeros((0, 0), dtype=dtype)
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset : column.offset + rows + 1]
    size = int(offsets[1] - offsets[0])
    if np.any(np.diff(offsets) != size) or size % dtype.itemsize:
        raise ValueError(f"column {name} of gold/training_sequences is not fixed-width {dtype.name}")
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    return data.view(dtype).reshape(rows, size // dtype.itemsize)


@contextlib.contextmanager
def _parquet(url: str) -> Iterator[pq.ParquetFile]:
    """One data file (a URL or path of any pyarrow filesystem), open for reading."""
    filesystem, path = pa.fs.FileSystem.from_uri(url)
    with filesystem.open_input_file(path) as handle:
        yield pq.ParquetFile(handle)


def table_width(files: Sequence[str]) -> int:
    """Positions per row of a gold/training_sequences snapshot (from its first row)."""
    with _parquet(files[0]) as parquet:
        first = parquet.read_row_group(0, columns=["track_ids"]).column(0).chunk(0)
    return int(decode_binary("track_ids", first[:1]).shape[1])


def user_shard(user_ids: np.ndarray, world: int) -> np.ndarray:
    """A stable shard number per user (crc32), for tables with fewer row groups than ranks."""
    return np.fromiter(
        (zlib.crc32(str(u).encode()) % world for u in user_ids), dtype=np.int64, count=len(user_ids)
    )


class Sharded:
    """Which rows a rank reads: whole row groups (rank r of w takes every w-th), or, when the table
    has fewer row groups than ranks, every row group filtered to the rank's users."""

    def __init__(self, files: Sequence[str], rank: int, world: int) -> None:
        if not files:
            raise ValueError("gold/training_sequences has no data files")
        self.files, self.rank, self.world = list(files), rank, world
        self.groups: list[tuple[str, int]] = []  # (file, row group) of every row group, from the footers
        rows = 0
        for f in self.files:
            with _parquet(f) as parquet:
                self.groups += [(f, g) for g in range(parquet.metadata.num_row_groups)]
                rows += parquet.metadata.num_rows
        self.by_row_group = world == 1 or len(self.groups) >= world
        self.shard_rows = -(-rows // world)  # about: row groups differ in size
        if not self.by_row_group:
            log.info("gold/training_sequences has fewer row groups than %d ranks: sharding by user", world)
            users = np.concatenate([_users_in(f) for f in self.files])
            self.shard_rows = int((user_shard(users, world) == rank).sum())
            if self.shard_rows == 0:
                raise ValueError(f"rank {rank} of {world} has no users in gold/training_sequences")

    def keep(self, chunk: Chunk, users: np.ndarray | None) -> Chunk:
        if self.by_row_group or users is None:
            return chunk
        return chunk.take(user_shard(users, self.world) == self.rank)


class PetastormChunks(Sharded):
    """Petastorm's `make_batch_reader` over the table's data files: no TransformSpec, no pandas.

    Petastorm picks, shards and shuffles the row groups and decodes them, in the calling thread (the
    Prefetcher's): a worker pool on top of that thread measured slower on 2 cores, and more than one
    worker would make the order, and so the run, differ between runs. Its batch reader would hand
    every binary value over as a Python bytes object; the rows are taken as the arrow table it
    decoded instead (see `_ArrowTables`), so a column becomes an array without a copy.
    """

    def __call__(self, seed: int) -> Iterator[Chunk]:
        from petastorm import make_batch_reader

        fields = [LENGTH, *TRAINING_ARRAYS] + ([] if self.by_row_group else [USER_ID])
        shard = (
            {"cur_shard": self.rank, "shard_count": self.world}
            if self.by_row_group and self.world > 1
            else {}
        )
        # One reader a pass, each seeded by (seed, pass): a reader left to run pass after pass
        # (num_epochs=None) shuffles its next pass again each time its ventilator finds the queue
        # full at the pass's start (petastorm 0.12.1's ConcurrentVentilator), so every pass after
        # the first took an order that depended on how fast the consumer ran.
        for n in itertools.count():
            reader = make_batch_reader(
                self.files,
                schema_fields=fields,
                reader_pool_type="dummy",  # decoded in the caller's thread, the Prefetcher's (DESIGN.md)
                shuffle_row_groups=True,
                seed=(seed + 1_000_033 * n) % 2**31,
                num_epochs=1,
                filesystem=_petastorm_filesystem(self.files),
                **shard,
            )
            tables = _ArrowTables.install(reader)
            parts = 0
            with reader:
                for part in reader:
                    parts += 1
                    if tables:
                        yield self.keep(*_chunk_of(part))
                        continue
                    rows = len(part.length)  # petastorm's own conversion: one bytes object per value
                    columns = {c: decode(c, getattr(part, c), rows) for c in TRAINING_ARRAYS}
                    chunk = Chunk(columns, np.asarray(part.length, dtype=np.int64))
                    yield self.keep(chunk, getattr(part, USER_ID, None))
            if parts == 0:
                raise ValueError(
                    f"rank {self.rank} of {self.world} read no row groups of gold/training_sequences"
                )


def _petastorm_filesystem(files: Sequence[str]) -> Any:
    """The filesystem Petastorm reads `s3://` files through, or None (Petastorm resolves the rest).

    Petastorm 0.12.1 opens a dataset with pyarrow's legacy ParquetDataset arguments, which pyarrow
    accepts only with a legacy filesystem: s3fs (credentials and AWS_ENDPOINT_URL from the
    environment, as every other reader takes them) in pyarrow's legacy wrapper."""
    if not files or not str(files[0]).startswith("s3://"):
        return None
    import s3fs
    from pyarrow.filesystem import S3FSWrapper

    with warnings.catch_warnings():  # the wrapper's deprecation: Petastorm needs exactly it
        warnings.simplefilter("ignore", FutureWarning)
        return S3FSWrapper(s3fs.S3FileSystem())


class _ArrowTables:
    """A results reader for a Petastorm Reader that returns each row group's arrow table as decoded.

    Petastorm 0.12.1 (its last release) builds its batch reader's results reader from the worker
    class and keeps it in `Reader._results_queue_reader`; replacing it skips the per-value Python
    objects and nothing else. Where that attribute is missing, `install` leaves the reader alone.
    """

    batched_output = True

    @classmethod
    def install(cls, reader: object) -> bool:
        if not hasattr(reader, "_results_queue_reader"):
            log.warning("this petastorm has no _results_queue_reader: using its per-row conversion")
            return False
        reader._results_queue_reader = cls()
        return True

    @staticmethod
    def read_next(workers_pool: object, schema: object, ngram: object) -> pa.Table:
        from petastorm.workers_pool import EmptyResultError

        try:
            return workers_pool.get_results()  # type: ignore[attr-defined]
        except EmptyResultError:
            raise StopIteration from None


def _chunk_of(table: pa.Table) -> tuple[Chunk, np.ndarray | None]:
    """A Chunk (and the user ids, when read) from an arrow table of the training columns."""
    table = table.combine_chunks()
    arrays = {c: decode_binary(c, table.column(c).chunks[0]) for c in TRAINING_ARRAYS}
    lengths = table.column(LENGTH).to_numpy().astype(np.int64)
    users = table.column(USER_ID).to_numpy(zero_copy_only=False) if USER_ID in table.column_names else None
    return Chunk(arrays, lengths), users


class ArrowChunks(Sharded):
    """The same shard read with pyarrow alone (any pyarrow version, no Petastorm)."""

    def __call__(self, seed: int) -> Iterator[Chunk]:
        groups = self.groups[self.rank :: self.world] if self.by_row_group else self.groups
        if not groups:
            raise ValueError(f"rank {self.rank} of {self.world} has no row groups of gold/training_sequences")
        rng = np.random.default_rng(seed)
        columns = [LENGTH, *TRAINING_ARRAYS] + ([] if self.by_row_group else [USER_ID])
        while True:
            for i in rng.permutation(len(groups)):
                path, group = groups[i]
                with _parquet(path) as parquet:
                    table = parquet.read_row_group(group, columns=columns)
                yield self.keep(*_chunk_of(table))


def _users_in(path: str) -> np.ndarray:
    with _parquet(path) as parquet:
        return parquet.read(columns=[USER_ID]).column(USER_ID).to_numpy(zero_copy_only=False)


def chunk_source(kind: str, files: Sequence[str], rank: int, world: int) -> PetastormChunks | ArrowChunks:
    if kind == "petastorm":
        return PetastormChunks(files, rank, world)
    if kind == "arrow":
        return ArrowChunks(files, rank, world)
    raise ValueError(f"unknown loader {kind!r}: one of {', '.join(LOADERS)}")


@dataclass
class Buffer:
    """Chunks held for shuffling, and the order in which their rows are still to be batched."""

    chunks: list[Chunk]
    starts: np.ndarray  # (chunks + 1,) first row of each chunk in the buffer's numbering
    lengths: np.ndarray  # (rows,) every row's length, in that numbering
    order: np.ndarray  # buffer row numbers not yet batched, shuffled

    @classmethod
    def of(cls, chunks: list[Chunk], rng: np.random.Generator) -> Buffer:
        starts = np.concatenate([[0], np.cumsum([c.rows for c in chunks])])
        lengths = np.concatenate([c.lengths for c in chunks])
        return cls(chunks, starts, lengths, rng.permutation(len(lengths)))


def gather(parts: list[tuple[Buffer, np.ndarray]], width: int) -> Batch:
    """The Batch of these rows (buffer row numbers): one copy, chunk by chunk, straight into the
    batch's contiguous arrays, of the last w positions only, where w is the longest of the rows (at
    most `width`; left padding makes that a tail slice). Rows come grouped by chunk."""
    longest = max(int(buffer.lengths[rows].max()) for buffer, rows in parts)
    w = min(max(longest, 1), width)
    n = sum(len(rows) for _, rows in parts)
    first = parts[0][0].chunks[0].columns
    out = {c: np.empty((n, w), dtype=v.dtype) for c, v in first.items()}
    at = 0
    for buffer, rows in parts:
        which = np.searchsorted(buffer.starts, rows, side="right") - 1
        sorter = np.argsort(which, kind="stable")
        rows, which = rows[sorter], which[sorter]
        bounds = np.searchsorted(which, np.arange(len(buffer.chunks) + 1))
        for k, chunk in enumerate(buffer.chunks):
            a, b = int(bounds[k]), int(bounds[k + 1])
            if a == b:
                continue
            local = rows[a:b] - buffer.starts[k]
            for c, v in chunk.columns.items():
                np.take(v[:, v.shape[1] - w :], local, axis=0, out=out[c][at + a : at + b])
        at += len(rows)
    t = {c: torch.from_numpy(v) for c, v in out.items()}
    return Batch(
        tracks=t["track_ids"],
        stations=t["station_ids"],
        feedback=t["feedback_ids"],
        targets=t[TARGET_MASK].view(torch.bool),  # stored as 0/1 bytes
        negatives=t["negative_track_ids"],
        tiers=t["negative_tiers"],
    )


class ShuffledBatches:
    """Exactly `steps` Batches of `batch_size` rows per epoch from a chunk source, on every rank alike
    (DDP needs the same number of steps everywhere).

    Each epoch starts a fresh pass seeded by (seed, epoch, pass), so epoch e is the same whether or not
    the run was resumed before it; rows are shuffled in a buffer of `shuffle_buffer` rows on top of
    the shuffled row groups, and the shard starts over when it runs out.
    """

    def __init__(
        self,
        source: ChunkSource,
        *,
        batch_size: int,
        steps: int,
        width: int,
        seed: int,
        shuffle_buffer: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.source = source
        self.batch_size, self.steps, self.width = batch_size, steps, width
        self.seed, self.shuffle_buffer, self.rank, self.world = seed, shuffle_buffer, rank, world

    def _buffers(self, epoch: int) -> Generator[Buffer, None, None]:
        """Shuffle buffers of at least `shuffle_buffer` rows from this epoch's stream of chunks."""
        rng = np.random.default_rng([self.seed, epoch, self.rank])
        # never more than about a pass: a buffer larger than the shard would read it many times over
        fill = max(1, min(self.shuffle_buffer, self.source.shard_rows))
        pending: list[Chunk] = []
        size = 0
        for chunk in self.source((self.seed * 1_000_003 + epoch * 1_009) % 2**31):
            if chunk.rows == 0:
                continue
            pending.append(chunk)
            size += chunk.rows
            if size >= fill:
                yield Buffer.of(pending, rng)
                pending, size = [], 0

    def epoch(self, epoch: int) -> Generator[Batch, None, None]:
        """This rank's `steps` batches of the epoch (then the stream, and its reader, close)."""
        buffers = self._buffers(epoch)
        try:
            buffer = next(buffers)
            for _ in range(self.steps):
                parts: list[tuple[Buffer, np.ndarray]] = []
                need = self.batch_size
                while need > 0:
                    if len(buffer.order) == 0:
                        buffer = next(buffers)
                    rows, buffer.order = buffer.order[:need], buffer.order[need:]
                    parts.append((buffer, rows))
                    need -= len(rows)
                yield gather(parts, self.width)
        finally:
            buffers.close()


class Prefetcher:
    """Runs a batch iterator in a background thread, `depth` batches ahead of its consumer.

    pin: copy each batch into page-locked memory (for asynchronous copies to a GPU). The thread's
    own working time (not the time it waits for room in the queue) gives `rows_per_second`.
    """

    _END = object()

    def __init__(
        self, make: Callable[[int], Generator[Batch, None, None]], *, depth: int = 4, pin: bool = False
    ) -> None:
        self.make, self.depth, self.pin = make, max(1, depth), pin
        self.rows = 0
        self.seconds = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @staticmethod
    def _put(out: queue.Queue[object], item: object, stop: threading.Event) -> bool:
        """Put `item` once there is room; False when the consumer stopped first."""
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def epoch(self, epoch: int) -> Iterator[Batch]:
        """The batches of `epoch`; rows_per_second then counts this epoch's work only."""
        self.rows, self.seconds = 0, 0.0
        out: queue.Queue[object] = queue.Queue(self.depth)
        stop = threading.Event()

        def produce() -> None:
            try:
                started = time.perf_counter()
                with contextlib.closing(self.make(epoch)) as batches:  # closes the reader on a stop
                    for batch in batches:
                        if self.pin:
                            batch = batch.pin_memory()
                        self.seconds += time.perf_counter() - started
                        self.rows += batch.rows
                        if not self._put(out, batch, stop):
                            return
                        started = time.perf_counter()
                self._put(out, self._END, stop)
            except BaseException as exc:  # handed to the consumer, raised there
                self._put(out, exc, stop)

        thread = threading.Thread(target=produce, name=f"downbeat-loader-epoch-{epoch}", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            thread.join(timeout=10)


class TrainingStream:
    """What a rank trains from: `epoch(e)` yields this rank's `steps` Batches, read ahead in a thread.

    The reading library is `loader` (petastorm | arrow); nothing else here depends on it.
    """

    def __init__(
        self,
        files: Sequence[str],
        *,
        batch_size: int,
        steps: int,
        max_length: int,
        seed: int,
        shuffle_buffer: int,
        rank: int = 0,
        world: int = 1,
        loader: str = "petastorm",
        prefetch: int = 4,
        pin_memory: bool = False,
    ) -> None:
        source = chunk_source(loader, files, rank, world)
        self.batches = ShuffledBatches(
            source,
            batch_size=batch_size,
            steps=steps,
            width=max_length,
            seed=seed,
            shuffle_buffer=shuffle_buffer,
            rank=rank,
            world=world,
        )
        self.prefetcher = Prefetcher(self.batches.epoch, depth=prefetch, pin=pin_memory)

    @classmethod
    def of_run(
        cls,
        files: Sequence[str],
        run: RunSettings,
        *,
        steps: int,
        max_length: int,
        rank: int = 0,
        world: int = 1,
        pin_memory: bool = False,
    ) -> TrainingStream:
        """The stream a run's settings (config `train`: batch, seed, shuffle buffer, loader,
        prefetch) describe, for this rank."""
        return cls(
            files,
            batch_size=run.batch_size,
            steps=steps,
            max_length=max_length,
            seed=run.seed,
            shuffle_buffer=run.shuffle_buffer,
            rank=rank,
            world=world,
            loader=run.loader,
            prefetch=run.prefetch,
            pin_memory=pin_memory,
        )

    @property
    def rows_per_second(self) -> float:
        """The loader's rows/s since the last `epoch()` began (its own working time)."""
        return self.prefetcher.rows_per_second

    def epoch(self, epoch: int) -> Iterator[Batch]:
        return self.prefetcher.epoch(epoch)
