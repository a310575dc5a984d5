"""The executor-side writer's pure parts: partition runs, Delta stats text, folder names."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from downbeat.pipelines.lakehouse._files import Stats, dir_value, partition_text, runs, ts_text


def test_runs_split_a_sorted_batch_at_each_new_key_with_nulls_grouped():
    batch = pa.RecordBatch.from_pydict({"day": ["a", "a", "b", None, None], "n": [1, 2, 3, 4, 5]})

    got = [(key, piece.column("n").to_pylist()) for key, piece in runs(batch, ["day"])]

    assert got == [(("a",), [1, 2]), (("b",), [3]), ((None,), [4, 5])]


def test_runs_on_two_columns_split_when_either_changes():
    batch = pa.RecordBatch.from_pydict({"x": [1, 1, 1, 2], "y": ["p", "p", "q", "q"]})

    assert [key for key, _ in runs(batch, ["x", "y"])] == [(1, "p"), (1, "q"), (2, "q")]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 2)), min_size=1, max_size=40))
def test_runs_keep_every_row_in_order(rows):
    rows.sort(key=lambda r: (r[0] is None, r[0] or "", r[1]))
    batch = pa.RecordBatch.from_pydict({"s": [r[0] for r in rows], "i": [r[1] for r in rows]})

    pieces = list(runs(batch, ["s", "i"]))

    assert [k for k, p in pieces for _ in range(p.num_rows)] == rows
    assert len({k for k, _ in pieces}) == len(pieces)  # each key in one run once sorted


@pytest.mark.parametrize(
    ("value", "up", "text"),
    [
        (dt.datetime(2024, 1, 1, 0, 0, 0, 123456), False, "2024-01-01T00:00:00.123Z"),
        (dt.datetime(2024, 1, 1, 0, 0, 0, 123456), True, "2024-01-01T00:00:00.124Z"),
        (dt.datetime(2024, 1, 1, 0, 0, 0, 123000), True, "2024-01-01T00:00:00.123Z"),
        (dt.datetime(2024, 12, 31, 23, 59, 59, 999999), True, "2025-01-01T00:00:00.000Z"),
    ],
)
def test_timestamp_stats_round_outwards_to_milliseconds(value, up, text):
    assert ts_text(value.replace(tzinfo=dt.UTC), up=up) == text


def test_stats_keep_only_bounds_that_are_safe():
    schema = pa.schema([("f", pa.float64()), ("s", pa.string()), ("i", pa.int64())])
    stats = Stats(schema)
    stats.add(
        pa.record_batch(
            [pa.array([float("nan"), 1.0]), pa.array(["a" * 40, "b"]), pa.array([None, 3])], schema=schema
        )
    )

    got = json.loads(stats.to_json())

    assert got == {
        "numRecords": 2,
        "nullCount": {"f": 0, "s": 0, "i": 1},
        "minValues": {"s": "a" * 32, "i": 3},  # a prefix of the minimum is still a lower bound
        "maxValues": {"s": "b", "i": 3},
    }


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, None), (True, "true"), (dt.date(2024, 2, 29), "2024-02-29"), (7, "7"), ("ü", "ü")],
)
def test_partition_values_use_deltas_text_form(value, text):
    assert partition_text(value) == text


def test_folder_names_are_safe_for_any_value():
    assert dir_value("2024-01-01") == "2024-01-01"
    assert dir_value(None) == "__HIVE_DEFAULT_PARTITION__"
    unsafe = dir_value("rock/pop & more")
    assert unsafe.startswith("h") and unsafe.isalnum() and unsafe == dir_value("rock/pop & more")
