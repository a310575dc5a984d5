"""gold/training_sequences from gold/sequences: the pipeline's vectorised layout against a row-by-row
reference, on Spark."""

from __future__ import annotations

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from downbeat.models.contract import TRAINING_ARRAYS
from downbeat.pipelines import schemas as S
from downbeat.pipelines.sequences import left_padded, training_sequences
from tests.models.tables import sequence_rows, training_rows


@pytest.mark.parametrize("width", [8, 32])  # shorter than some rows (keep the most recent); longer than all
def test_each_train_row_is_its_arrays_last_items_left_padded_in_fixed_width_binary(spark, width):
    table = sequence_rows(30, validation_every=4)
    day = F.to_timestamp(F.lit("2024-05-01 00:00:00"))
    frame = (
        spark.createDataFrame(table.to_pandas(), schema=_schema())
        .withColumn(S.FIRST_TS, day)
        .withColumn(S.LAST_TS, day)
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "4")  # sliced batches in mapInArrow
    out = training_sequences(frame, width=width, partitions=3)
    assert out.schema == S.TRAINING_SEQUENCES
    assert out.rdd.getNumPartitions() == 3
    got = {r[S.USER_ID]: r.asDict() for r in out.collect()}
    expected = {r[S.USER_ID]: r for r in training_rows(table, width).to_pylist()}
    assert got.keys() == expected.keys()  # train rows only
    for user, row in expected.items():
        assert got[user][S.LENGTH] == row[S.LENGTH]
        for column in TRAINING_ARRAYS:
            assert bytes(got[user][column]) == row[column], (user, column)


def test_left_padding_handles_a_sliced_list_array_and_empty_rows():
    column = pa.array([[9, 9], [1, 2, 3], [], [4, 5, 6, 7, 8]], pa.list_(pa.int32())).slice(1)
    assert left_padded(column, 3).tolist() == [[1, 2, 3], [0, 0, 0], [6, 7, 8]]
    assert left_padded(column, 4, "i1").dtype.itemsize == 1


def _schema():
    from pyspark.sql import types as T

    ints = T.ArrayType(T.IntegerType(), containsNull=False)
    return T.StructType(
        [
            T.StructField(S.USER_ID, T.StringType(), False),
            T.StructField(S.SPLIT, T.StringType(), False),
            T.StructField(S.LENGTH, T.IntegerType(), False),
            *(T.StructField(c, ints, False) for c in TRAINING_ARRAYS),
        ]
    )
