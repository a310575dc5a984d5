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
    """Tables of whole users (single chunk each), in the order the rows came."""
    pending: pa.Table | None = None
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if pending is not None and len(pending):
            table = pa.concat_tables([pending, table])
        if not len(table):
            continue
        users = table.column(user)
        last = users[len(users) - 1]
        split = len(users) - int(pc.sum(pc.equal(users, last)).as_py() or 0)
        if split > 0:
            yield table.slice(0, split).combine_chunks()
        pending = table.slice(split)
    if pending is not None and len(pending):
        yield pending.combine_chunks()


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
