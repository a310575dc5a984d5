"""Per-user passes over Arrow batches: a user's rows, sorted in the user's time order, whole.

`mapInArrow` hands a partition over in batches of at most `spark.sql.execution.arrow.
maxRecordsPerBatch` rows, which may cut a user's rows in two. `whole_users` holds the rows of each
batch's last user back until the next batch, so that a vectorised pass sees every user whole.
The rows must arrive grouped by user (every user's rows in one partition, contiguous): a shuffle
by user and a sort within partitions, or a window partitioned by user, leave them so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def whole_users(batches: Iterable[pa.RecordBatch], user: str) -> Iterator[pa.Table]:
    """Tables of whole users (single chunk each), in the order the rows came. Each row is looked at
    once, however many batches a user spans."""
    pending: list[pa.RecordBatch] = []  # rows of one user, whose last batch may not have come yet
    pending_user: object = None
    for batch in batches:
        if not batch.num_rows:
            continue
        users = batch.column(user)
        last = users[batch.num_rows - 1]
        tail = int(pc.sum(pc.equal(users, last)).as_py() or 0)  # the last user's rows, at the end
        head = batch.slice(0, batch.num_rows - tail)
        if head.num_rows or last.as_py() != pending_user:
            # the pending user ended: before this batch, or within its head
            done = [*pending, head] if head.num_rows else pending
            if done:
                yield pa.Table.from_batches(done).combine_chunks()
            pending, pending_user = [], last.as_py()
        pending.append(batch.slice(batch.num_rows - tail))
    if pending:
        yield pa.Table.from_batches(pending).combine_chunks()


def starts(keys: pa.Array) -> np.ndarray:
    """True where a row's key differs from the previous row's (and on the first row)."""
    n = len(keys)
    first = np.ones(n, dtype=bool)
    if n > 1:
        differs = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
        first[1:] = pc.fill_null(differs, True).to_numpy(zero_copy_only=False)
    return first


def group_start(first: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row of its group (groups are runs that `first` opens)."""
    return np.maximum.accumulate(np.where(first, np.arange(len(first)), 0))
