"""The Delta table layer: operations, and the guarantees listed in pipelines/lakehouse/__init__.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import (
    ConcurrentWriteError,
    Lakehouse,
    PartialCommitError,
    SchemaMismatchError,
    TableNotFoundError,
    WriteFailedError,
    connector_available,
)

TABLE = "silver/plays"
SCHEMA = T.StructType(
    [
        T.StructField("user_id", T.StringType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("day", T.DateType()),
        T.StructField("track_id", T.StringType()),
        T.StructField("ms_played", T.LongType()),
        T.StructField("tracks", T.ArrayType(T.IntegerType())),
    ]
)
D1, D2, D3, D4 = (dt.date(2024, 3, d) for d in (1, 2, 3, 4))


def ts(day: dt.date, micros: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, 23, 59, 59, micros)


def plays(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, SCHEMA)


def base_rows() -> list[tuple]:
    return [
        ("u1", ts(D1, 1), D1, "t1", 1000, [1, 2]),
        ("u2", ts(D2, 2), D2, "t2", None, []),
        ("ü3", ts(D3, 999_999), D3, "t3", 5, None),
        ("u4", ts(D4), D4, "t4", 7, [4]),
    ]


def assert_rows(actual: DataFrame, expected: DataFrame) -> None:
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def files_on_disk(root: Path, table: str) -> set[str]:
    """Data files in the table's folder. The connector writes a 0-row file for each task that had no
    rows and references none of them (a vacuum deletes them): those, named the connector's way
    (`-c000.snappy.parquet`), are left out. delta-rs never writes an empty file."""
    import pyarrow.parquet as pq

    def has_rows(path: Path) -> bool:
        if not path.name.endswith("-c000.snappy.parquet"):
            return True
        try:
            return pq.read_metadata(path).num_rows > 0
        except Exception:
            return True  # a truncated file (a killed task's) is left-over data all the same

    return {str(p.relative_to(root / table)) for p in (root / table).rglob("*.parquet") if has_rows(p)}


def files_in_log(lakehouse: Lakehouse, table: str, version: int | None = None) -> set[str]:
    prefix = f"{lakehouse.root}/{table}/"
    uris = lakehouse.file_uris(table, version)
    return {Path(uri.removeprefix("file://")).as_posix().removeprefix(prefix) for uri in uris}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "lakehouse"


@pytest.fixture(params=["delta-rs", "spark"])
def lakehouse(request: pytest.FixtureRequest, spark: SparkSession, root: Path) -> Lakehouse:
    if request.param == "spark" and not connector_available(spark):
        pytest.fail(
            "the Delta Spark connector is not on the test session's classpath: run "
            "`python -m downbeat.pipelines.connector` once (make test does) to resolve its jars"
        )
    return Lakehouse(spark, str(root), engine=request.param)


# ---- operations, on every available engine ----------------------------------------------------------


def test_overwrite_creates_a_table_that_reads_back_the_same_rows(spark, lakehouse):
    commit = lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])

    assert (commit.version, commit.operation) == (0, "overwrite")
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))
    assert lakehouse.partition_columns(TABLE) == ["day"]


def test_append_adds_rows_in_a_new_version(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:2]), TABLE)
    commit = lakehouse.write(plays(spark, base_rows()[2:]), TABLE, mode="append")

    assert commit.version == 1
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))


def test_row_count_comes_from_the_log_and_matches_the_data(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:2]), TABLE)
    lakehouse.write(plays(spark, base_rows()[2:]), TABLE, mode="append")

    assert lakehouse.rows(TABLE) == lakehouse.read(TABLE).count() == len(base_rows())


def test_overwrite_partitions_replaces_only_the_date_range(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    new = [
        ("n2", ts(D2), D2, "x2", 1, [9]),
        ("n3a", ts(D3), D3, "x3", 2, None),
        ("n3b", ts(D3), D3, "x4", 3, []),
    ]

    lakehouse.overwrite_partitions(plays(spark, new), TABLE, column="day", start=D2, end=D3)

    expected = [base_rows()[0], *new, base_rows()[3]]
    assert_rows(lakehouse.read(TABLE), plays(spark, expected))


def test_merge_replaces_rows_with_equal_keys_and_inserts_the_rest(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    changes = [("u2", ts(D2), D2, "t2", 4242, [7]), ("u9", ts(D1), D1, "t9", 1, None)]

    lakehouse.merge(plays(spark, changes), TABLE, keys=["user_id", "track_id"])

    rows = base_rows()
    expected = [rows[0], changes[0], rows[2], rows[3], changes[1]]
    assert_rows(lakehouse.read(TABLE), plays(spark, expected))


def test_append_with_an_extra_column_fails_naming_it(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)
    extra = plays(spark, base_rows()).withColumn("station_id", F.lit("s1"))

    with pytest.raises(SchemaMismatchError, match="column 'station_id' is not in the table"):
        lakehouse.write(extra, TABLE, mode="append")

    assert lakehouse.version(TABLE) == 0
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))


def test_nested_columns_are_stored_nullable_and_rewrites_of_non_null_arrays_fit(spark, lakehouse):
    df = spark.range(3).select(F.array(F.col("id").cast("int")).alias("ids"))  # elements not null
    assert df.schema["ids"].dataType == T.ArrayType(T.IntegerType(), False)

    lakehouse.write(df, "gold/ids")
    commit = lakehouse.write(df, "gold/ids")  # an overwrite of the same frame fits the stored schema

    assert commit.version == 1
    assert lakehouse.schema("gold/ids")["ids"].dataType == T.ArrayType(T.IntegerType(), True)


# ---- merge details ---------------------------------------------------------------------


def test_merge_rewrites_only_the_files_that_hold_a_matching_key(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    before = files_in_log(lakehouse, TABLE)

    commit = lakehouse.merge(plays(spark, [("u2", ts(D2), D2, "t2", 1, None)]), TABLE, keys=["user_id"])

    after = files_in_log(lakehouse, TABLE)
    assert commit.files_removed == 1
    assert len(before - after) == 1 and next(iter(before - after)).startswith("day=2024-03-02/")
    assert commit.rows_written == 1


def test_merge_into_a_missing_table_creates_it(spark, lakehouse):
    lakehouse.merge(plays(spark, base_rows()), TABLE, keys=["user_id"])

    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))


def test_merge_rejects_duplicate_keys_in_the_data(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)
    dupes = plays(spark, [base_rows()[0], base_rows()[0]])

    with pytest.raises(InputError, match="2 rows with user_id='u1'"):
        lakehouse.merge(dupes, TABLE, keys=["user_id"])
    assert lakehouse.version(TABLE) == 0


def test_overwrite_partitions_rejects_rows_outside_the_range(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])

    with pytest.raises(InputError, match="day = 2024-03-04, outside the range"):
        lakehouse.overwrite_partitions(plays(spark, base_rows()[3:]), TABLE, column="day", start=D2, end=D3)
    assert lakehouse.version(TABLE) == 0


def test_overwrite_partitions_needs_a_partition_column(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)

    with pytest.raises(SchemaMismatchError, match="needs 'day' to be a partition column"):
        lakehouse.overwrite_partitions(plays(spark, base_rows()[1:2]), TABLE, column="day", start=D2, end=D2)


def test_read_at_a_version_returns_that_snapshot(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE, partition_by=["day"])
    lakehouse.write(plays(spark, base_rows()[1:]), TABLE, mode="append")
    lakehouse.write(plays(spark, base_rows()[3:]), TABLE)

    assert lakehouse.version(TABLE) == 2
    assert_rows(lakehouse.read(TABLE, version=0), plays(spark, base_rows()[:1]))
    assert_rows(lakehouse.read(TABLE, version=1), plays(spark, base_rows()))
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[3:]))


def test_history_lists_commits_newest_first_with_their_operation(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE, mode="append")
    lakehouse.prepare(
        plays(spark, base_rows()[1:2]), TABLE, operation="merge", merge_keys=["user_id"]
    ).commit()

    history = lakehouse.history(TABLE)

    assert [(h["version"], h["downbeat.operation"], h["downbeat.rows"]) for h in history] == [
        (2, "merge", "1"),
        (1, "append", "1"),
        (0, "overwrite", "4"),
    ]


def test_the_commit_log_numbers_each_commit_by_its_own_file_not_by_a_snapshot(tmp_path):
    """A commit that lands after the snapshot was read must not shift the versions listed below it
    (delta-rs's history() on a snapshot at version 1 lists three commits as 1, 0 and -1)."""
    import pyarrow as pa
    from deltalake import CommitProperties, DeltaTable, write_deltalake

    from downbeat.pipelines.lakehouse._core import commit_log

    uri = str(tmp_path / "t")
    for n in range(2):
        write_deltalake(
            uri,
            pa.table({"a": [n]}),
            mode="append",
            commit_properties=CommitProperties(custom_metadata={"n": str(n)}),
        )
    snapshot = DeltaTable(uri)
    write_deltalake(
        uri,
        pa.table({"a": [2]}),
        mode="append",
        commit_properties=CommitProperties(custom_metadata={"n": "2"}),
    )

    listed = [(version, info["n"]) for version, info in commit_log(uri, snapshot.version())]
    assert listed == [(1, "1"), (0, "0")]
    assert [(v, i["n"]) for v, i in commit_log(uri, 2, limit=2)] == [(2, "2"), (1, "1")]
    # a value holding a character Python's splitlines() breaks at (U+0085, U+2028) stays one line
    odd = pa.table({"a": [3], "s": ["x\x85\u2028y"]})
    write_deltalake(
        uri,
        odd,
        mode="append",
        schema_mode="merge",
        commit_properties=CommitProperties(custom_metadata={"n": "3"}),
    )
    assert [(v, i["n"]) for v, i in commit_log(uri, 3, limit=1)] == [(3, "3")]


def test_merge_outside_a_transaction_is_the_engines_own_merge(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])

    commit = lakehouse.merge(plays(spark, [("u2", ts(D2), D2, "t2", 1, None)]), TABLE, keys=["user_id"])

    entry = lakehouse.history(TABLE, 1)[0]
    # The connector's MERGE command, or the delta-rs engine's copy-on-write write.
    assert entry["operation"] == ("MERGE" if lakehouse.engine == "spark" else "WRITE")
    assert (entry["downbeat.operation"], entry["version"], commit.version) == ("merge", 1, 1)
    assert (commit.rows_written, commit.files_removed) == (1, 1)


def test_file_uris_are_the_current_snapshots_files_as_file_urls(spark, lakehouse, root):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    lakehouse.overwrite_partitions(plays(spark, base_rows()[1:2]), TABLE, column="day", start=D2, end=D3)

    uris = lakehouse.file_uris(TABLE)

    assert all(u.startswith("file:///") and Path(u.removeprefix("file://")).is_file() for u in uris)
    assert len(uris) == 3  # days 1, 2 (rewritten) and 4; day 3 was replaced by nothing
    assert len(lakehouse.file_uris(TABLE, version=0)) == 4


def test_empty_frame_creates_an_empty_table_with_the_schema(spark, lakehouse):
    lakehouse.write(plays(spark, []), TABLE, partition_by=["day"])

    assert lakehouse.read(TABLE).count() == 0
    assert [f.name for f in lakehouse.read(TABLE).schema.fields] == SCHEMA.fieldNames()


def test_partition_values_survive_special_characters_and_nulls(spark, lakehouse):
    schema = T.StructType([T.StructField("station_id", T.StringType()), T.StructField("n", T.LongType())])
    rows = [("rock/pop & more", 1), (None, 2), ("ジャズ", 3), ("rock/pop & more", 4)]

    lakehouse.write(spark.createDataFrame(rows, schema), "gold/stations", partition_by=["station_id"])

    assert_rows(lakehouse.read("gold/stations"), spark.createDataFrame(rows, schema))


def test_file_stats_bound_the_data(spark, lakehouse):
    import pyarrow as pa
    from deltalake import DeltaTable

    lakehouse.write(plays(spark, base_rows()).coalesce(1), TABLE)

    actions = pa.table(DeltaTable(lakehouse.uri(TABLE)).get_add_actions(flatten=True)).to_pylist()
    assert len(actions) == 1
    stats = actions[0]
    assert stats["num_records"] == 4
    assert stats["min.user_id"] == "u1" and stats["max.user_id"] == "ü3"
    assert stats["min.ms_played"] == 5 and stats["max.ms_played"] == 1000
    assert stats["null_count.ms_played"] == 1
    lo, hi = stats["min.ts"], stats["max.ts"]
    assert lo.replace(tzinfo=None) <= ts(D1, 1) and hi.replace(tzinfo=None) >= ts(D4)
    assert stats["min.day"] == D1 and stats["max.day"] == D4


@pytest.mark.parametrize(
    "name",
    ["plays", "platinum/plays", "gold/Plays", "gold/a/b", "gold/", "../gold/plays", "gold/plays; drop"],
)
def test_table_names_must_be_layer_slash_name(lakehouse, name):
    with pytest.raises(InputError, match="must be layer/name"):
        lakehouse.uri(name)


def test_reading_a_missing_table_names_it(lakehouse):
    with pytest.raises(TableNotFoundError, match="table gold/nothing does not exist"):
        lakehouse.read("gold/nothing")


def test_reading_a_version_that_does_not_exist_names_it(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)

    with pytest.raises(InputError, match="has no version 5"):
        lakehouse.read(TABLE, version=5)


# ---- guarantee: a failed write leaves the previous version ------------------------------------------


def failing(spark: SparkSession, fail_at: str) -> DataFrame:
    """Rows whose task raises when it reaches `fail_at`, after other rows have gone to the writer."""
    rows = [(f"u{i:02d}", ts(D1), D1, f"t{i}", i, [i]) for i in range(20)]
    df = spark.createDataFrame(rows, SCHEMA).repartition(2, "user_id")
    return df.withColumn(
        "user_id",
        F.when(F.col("user_id") == fail_at, F.raise_error(F.lit("injected failure"))).otherwise(
            F.col("user_id")
        ),
    )


@pytest.fixture
def small_batches(spark: SparkSession):
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = spark.conf.get(key)
    spark.conf.set(key, "2")  # the writer opens files and takes rows before the failing row
    yield
    spark.conf.set(key, previous)


def test_failed_write_leaves_the_previous_version_and_no_new_rows_or_files(
    spark, lakehouse, root, small_batches
):
    lakehouse.write(plays(spark, base_rows()), TABLE)
    before = files_on_disk(root, TABLE)

    with pytest.raises(WriteFailedError, match=r"table is unchanged \(version 0\).*injected failure"):
        lakehouse.write(failing(spark, fail_at="u17"), TABLE, mode="append")

    assert lakehouse.version(TABLE) == 0
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))
    assert files_in_log(lakehouse, TABLE) == before
    assert_failed_files_gone(lakehouse, root, before)


def assert_failed_files_gone(lakehouse: Lakehouse, root: Path, before: set[str]) -> None:
    """delta-rs deletes a failed write's files at once. The connector's tasks leave theirs behind,
    referenced by no version (so no reader sees them), and a vacuum deletes them."""
    if lakehouse.engine == "spark":
        assert files_on_disk(root, TABLE) > before
        if lakehouse.exists(TABLE):
            lakehouse.vacuum(TABLE, retention_hours=0)
    assert files_on_disk(root, TABLE) == before


def test_failed_first_write_creates_no_table(spark, lakehouse, root, small_batches):
    with pytest.raises(WriteFailedError, match=r"new table.*injected failure"):
        lakehouse.write(failing(spark, fail_at="u17"), TABLE)

    assert not lakehouse.exists(TABLE)
    if lakehouse.engine == "delta-rs":
        assert not (root / TABLE).exists() or files_on_disk(root, TABLE) == set()


# ---- guarantee: concurrent writers --------------------------------------------------------------------


def test_second_of_two_concurrent_writers_fails_and_commits_nothing(spark, lakehouse, root):
    lakehouse.write(plays(spark, base_rows()), TABLE, partition_by=["day"])
    first = lakehouse.prepare(plays(spark, base_rows()[:1]), TABLE, operation="overwrite")
    second = lakehouse.prepare(
        plays(spark, base_rows()[1:2]), TABLE, operation="merge", merge_keys=["user_id"]
    )

    first.commit()
    with pytest.raises(ConcurrentWriteError, match="another writer committed after version 0"):
        second.commit()

    assert lakehouse.version(TABLE) == 1
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[:1]))
    # On disk: the live files and those version 0 still references, none from the failed writer.
    assert files_on_disk(root, TABLE) == files_in_log(lakehouse, TABLE) | files_in_log(
        lakehouse, TABLE, version=0
    )


def test_a_write_computed_from_an_older_version_is_refused_before_any_file_is_written(spark, lakehouse, root):
    """read, modify, overwrite: a commit between the read and the write would be lost without it."""
    with pytest.raises(ConcurrentWriteError, match="computed from version 0, but the table is at no table"):
        lakehouse.prepare(plays(spark, base_rows()[:1]), TABLE, operation="overwrite", read_version=0)
    assert not lakehouse.exists(TABLE)
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE)  # version 0
    read = lakehouse.read(TABLE, 0)
    lakehouse.write(plays(spark, base_rows()[1:2]), TABLE, mode="append")  # version 1, meanwhile
    for stale in (0, None):
        with (
            pytest.raises(ConcurrentWriteError, match="the table is at version 1: another writer"),
            lakehouse.transaction() as tx,
        ):
            tx.stage(read, TABLE, read_version=stale)
    assert lakehouse.version(TABLE) == 1
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[:2]))
    assert files_on_disk(root, TABLE) == files_in_log(lakehouse, TABLE)
    with lakehouse.transaction() as tx:  # computed from the version it lands on: it commits
        tx.stage(lakehouse.read(TABLE, 1), TABLE, read_version=1)
    assert lakehouse.version(TABLE) == 2
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[:2]))


def test_two_merges_of_new_keys_do_not_both_commit(spark, lakehouse):
    """Neither merge rewrites a file (no key matches), yet the second must not commit its rows too."""
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE)
    new = [("u9", ts(D1), D1, "t9", 9, None)]
    first = lakehouse.prepare(plays(spark, new), TABLE, operation="merge", merge_keys=["user_id"])
    second = lakehouse.prepare(plays(spark, new), TABLE, operation="merge", merge_keys=["user_id"])

    first.commit()
    with pytest.raises(ConcurrentWriteError):
        second.commit()

    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[:1] + new))


def test_an_overwrite_fails_when_rows_were_appended_since_it_started(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE)
    overwrite = lakehouse.prepare(plays(spark, base_rows()[1:2]), TABLE, operation="overwrite")

    lakehouse.write(plays(spark, base_rows()[2:3]), TABLE, mode="append")
    with pytest.raises(ConcurrentWriteError):
        overwrite.commit()

    assert_rows(lakehouse.read(TABLE), plays(spark, [base_rows()[0], base_rows()[2]]))


def test_concurrent_blind_appends_both_land(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:1]), TABLE)
    first = lakehouse.prepare(plays(spark, base_rows()[1:2]), TABLE, operation="append")
    second = lakehouse.prepare(plays(spark, base_rows()[2:]), TABLE, operation="append")

    assert (first.commit().version, second.commit().version) == (1, 2)
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()))


def test_two_writers_creating_the_same_table_one_fails(spark, lakehouse):
    first = lakehouse.prepare(plays(spark, base_rows()[:1]), TABLE, operation="overwrite")
    second = lakehouse.prepare(plays(spark, base_rows()[1:]), TABLE, operation="overwrite")

    first.commit()
    with pytest.raises(ConcurrentWriteError):
        second.commit()
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[:1]))


# ---- guarantee: schema checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda df: df.withColumn("ms_played", F.col("ms_played").cast("string")),
            "column 'ms_played' is string in the data but bigint in the table",
        ),
        (lambda df: df.drop("track_id"), "column 'track_id' of the table is missing from the data"),
        (lambda df: df.withColumn("skip", F.lit(True)), "column 'skip' is not in the table"),
    ],
)
def test_append_with_a_different_schema_fails_naming_the_column(spark, lakehouse, change, message):
    lakehouse.write(plays(spark, base_rows()), TABLE)

    with pytest.raises(SchemaMismatchError, match=message):
        lakehouse.write(change(plays(spark, base_rows())), TABLE, mode="append")
    assert lakehouse.version(TABLE) == 0


def test_schema_evolution_adds_the_column_and_old_rows_read_null(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:2]), TABLE)
    newer = plays(spark, base_rows()[2:]).withColumn("station_id", F.lit("s1"))

    lakehouse.write(newer, TABLE, mode="append", schema_evolution=True)

    expected = (
        plays(spark, base_rows()[:2]).withColumn("station_id", F.lit(None).cast("string")).unionByName(newer)
    )
    assert_rows(lakehouse.read(TABLE), expected)


def test_merge_with_schema_evolution_keeps_unmatched_rows_with_null(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)
    change = plays(spark, base_rows()[:1]).withColumn("station_id", F.lit("s1"))

    lakehouse.merge(change, TABLE, keys=["user_id"], schema_evolution=True)

    rest = plays(spark, base_rows()[1:]).withColumn("station_id", F.lit(None).cast("string"))
    assert_rows(lakehouse.read(TABLE), change.unionByName(rest))


def test_overwrite_with_schema_evolution_replaces_the_schema(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()), TABLE)
    narrow = plays(spark, base_rows()).select("user_id", F.col("ms_played").cast("string").alias("ms_played"))

    with pytest.raises(SchemaMismatchError):
        lakehouse.write(narrow, TABLE)
    lakehouse.write(narrow, TABLE, schema_evolution=True)

    assert_rows(lakehouse.read(TABLE), narrow)


# ---- guarantee: plain Delta, readable by delta-rs in another process ----------------------------------


READER = textwrap.dedent(
    """
    import json, sys
    import pyarrow as pa, pyarrow.parquet as pq
    from deltalake import DeltaTable

    table = DeltaTable(sys.argv[1])
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    rows = []
    for action in actions:
        data = pq.read_table(table.table_uri.rstrip("/") + "/" + action["path"]).to_pylist()
        for row in data:
            row["day"] = str(action["partition.day"])
            rows.append([row["user_id"], row["day"], row["ms_played"]])
    history = [[h["version"], h["operation"], h.get("downbeat.operation")] for h in table.history()]
    print(json.dumps({"version": table.version(), "history": history, "rows": sorted(rows, key=str)}))
    """
)


def test_every_table_is_readable_by_deltalake_in_another_process(spark, lakehouse):
    lakehouse.write(plays(spark, base_rows()[:2]), TABLE, partition_by=["day"])
    lakehouse.write(plays(spark, base_rows()[2:3]), TABLE, mode="append")
    lakehouse.overwrite_partitions(
        plays(spark, [("n", ts(D4), D4, "x", 8, None)]), TABLE, column="day", start=D4, end=D4
    )
    lakehouse.merge(plays(spark, [("u1", ts(D1), D1, "t1", 99, None)]), TABLE, keys=["user_id"])

    out = subprocess.run(
        [sys.executable, "-c", READER, lakehouse.uri(TABLE)], capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout)

    assert seen["version"] == 3
    if lakehouse.engine == "spark":  # downbeat's keys are in the commit's tags or userMetadata there
        assert [h[:2] for h in seen["history"]] == [[3, "MERGE"], [2, "WRITE"], [1, "WRITE"], [0, "WRITE"]]
    else:
        assert seen["history"] == [
            [3, "WRITE", "merge"],
            [2, "WRITE", "replace_range"],
            [1, "WRITE", "append"],
            [0, "CREATE TABLE", "overwrite"],
        ]
    assert seen["rows"] == sorted(
        [
            ["n", "2024-03-04", 8],
            ["u1", "2024-03-01", 99],
            ["u2", "2024-03-02", None],
            ["ü3", "2024-03-03", 5],
        ],
        key=str,
    )


# ---- property: whatever is written reads back ----------------------------------------------------------

KEYED = T.StructType(
    [
        T.StructField("station", T.StringType()),
        T.StructField("n", T.IntegerType()),
        T.StructField("s", T.StringType()),
    ]
)


@settings(max_examples=8, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["a", "b/ c", "ü", None]), st.none() | st.integers(-3, 3), st.text(max_size=4)
        ),
        max_size=30,
    ),
    partitioned=st.booleans(),
)
@pytest.mark.parametrize("engine", ["delta-rs", "spark"])
def test_any_frame_written_reads_back_row_for_row(spark, tmp_path_factory, engine, rows, partitioned):
    lakehouse = Lakehouse(spark, str(tmp_path_factory.mktemp("prop")), engine=engine)
    df = spark.createDataFrame(rows, KEYED).repartition(3)

    commit = lakehouse.write(df, "gold/prop", partition_by=["station"] if partitioned else [])

    assert commit.rows_written == len(rows)
    assert_rows(lakehouse.read("gold/prop"), spark.createDataFrame(rows, KEYED))


# ---- transactions: several tables staged, then committed -----------------------------------------------

T1, T2, T3 = "gold/first", "gold/second", "gold/third"


def three_tables(spark: SparkSession, lakehouse: Lakehouse) -> None:
    for table in (T1, T2, T3):
        lakehouse.write(plays(spark, base_rows()[:1]), table)


def test_a_transaction_commits_every_staged_table_with_one_batch_id(spark, lakehouse):
    three_tables(spark, lakehouse)

    with lakehouse.transaction() as tx:
        tx.stage(plays(spark, base_rows()), T1, tags={"downbeat.sequences_unit": "session"})
        tx.stage(plays(spark, base_rows()[1:2]), T2, operation="append")
        merged = plays(spark, base_rows()[2:3])
        tx.stage(merged, T3, operation="merge", merge_keys=["user_id"], tags={"downbeat.made_by": "t"})
        # staged: written, not visible
        assert [lakehouse.version(t) for t in (T1, T2, T3)] == [0, 0, 0]
        assert_rows(lakehouse.read(T1), plays(spark, base_rows()[:1]))

    assert {t: c.version for t, c in tx.commits.items()} == {T1: 1, T2: 1, T3: 1}
    assert_rows(lakehouse.read(T1), plays(spark, base_rows()))
    assert_rows(lakehouse.read(T2), plays(spark, base_rows()[:2]))
    assert_rows(lakehouse.read(T3), plays(spark, [base_rows()[0], base_rows()[2]]))
    assert {lakehouse.history(t, 1)[0]["downbeat.batch"] for t in (T1, T2, T3)} == {tx.id}
    # a write's own tags ride in its commit record, and only in its own
    assert lakehouse.history(T1, 1)[0]["downbeat.sequences_unit"] == "session"
    assert lakehouse.history(T3, 1)[0]["downbeat.made_by"] == "t"
    assert "downbeat.sequences_unit" not in lakehouse.history(T2, 1)[0]
    with pytest.raises(ValueError, match="not a downbeat"):
        lakehouse.prepare(plays(spark, base_rows()), T1, operation="overwrite", tags={"owner": "x"})
    with pytest.raises(ValueError, match="the table layer's own"):  # e.g. what finds a lost commit again
        lakehouse.prepare(plays(spark, base_rows()), T1, operation="overwrite", tags={"downbeat.txn": "x"})


def test_an_error_while_staging_aborts_every_staged_write(spark, lakehouse, root):
    three_tables(spark, lakehouse)
    before = {t: files_on_disk(root, t) for t in (T1, T2, T3)}

    with pytest.raises(RuntimeError, match="the job failed"), lakehouse.transaction() as tx:
        tx.stage(plays(spark, base_rows()), T1)
        tx.stage(plays(spark, base_rows()), T2)
        raise RuntimeError("the job failed before staging gold/third")

    for t in (T1, T2, T3):
        assert lakehouse.version(t) == 0
        assert_rows(lakehouse.read(t), plays(spark, base_rows()[:1]))
        assert files_on_disk(root, t) == before[t] == files_in_log(lakehouse, t)


def test_a_failure_in_the_commit_phase_leaves_earlier_tables_committed_and_later_ones_unchanged(
    spark, lakehouse, root
):
    """Fault injection: another writer commits to the second table between staging and commit."""
    three_tables(spark, lakehouse)
    before_third = files_on_disk(root, T3)

    with pytest.raises(PartialCommitError) as failure, lakehouse.transaction() as tx:
        tx.stage(plays(spark, base_rows()), T1)
        tx.stage(plays(spark, base_rows()), T2)
        tx.stage(plays(spark, base_rows()), T3)
        Lakehouse(spark, lakehouse.root, lakehouse.engine).write(plays(spark, base_rows()[3:]), T2)

    message = str(failure.value)
    assert f"committed {T1} v1, then {T2} failed (" in message
    assert f"{T2}, {T3} kept their previous versions" in message
    assert isinstance(failure.value.__cause__, ConcurrentWriteError)
    assert lakehouse.version(T1) == 1 and lakehouse.history(T1, 1)[0]["downbeat.batch"] == tx.id
    assert_rows(lakehouse.read(T1), plays(spark, base_rows()))
    assert lakehouse.version(T2) == 1 and "downbeat.batch" not in lakehouse.history(T2, 1)[0]
    assert_rows(lakehouse.read(T2), plays(spark, base_rows()[3:]))  # the other writer's rows only
    assert lakehouse.version(T3) == 0
    assert_rows(lakehouse.read(T3), plays(spark, base_rows()[:1]))
    # The failed and the never-committed writes' files are gone; version 0's are kept for time travel.
    assert files_on_disk(root, T3) == before_third
    assert files_on_disk(root, T2) == files_in_log(lakehouse, T2) | files_in_log(lakehouse, T2, version=0)


def test_a_table_staged_twice_in_one_transaction_is_refused(spark, lakehouse):
    with pytest.raises(InputError, match=f"{T1} is staged twice"), lakehouse.transaction() as tx:
        tx.stage(plays(spark, base_rows()), T1)
        tx.stage(plays(spark, base_rows()), T1)

    assert not lakehouse.exists(T1)


def test_a_staged_write_may_ask_for_uncompressed_files_and_an_unknown_codec_is_refused(spark, lakehouse):
    with lakehouse.transaction() as tx:
        tx.stage(plays(spark, base_rows()), T1, compression="uncompressed")
        tx.stage(plays(spark, base_rows()), T2)
    codecs = {}
    for table in (T1, T2):
        found = set()
        for url in lakehouse.file_uris(table):
            meta = pq.ParquetFile(url.removeprefix("file://")).metadata
            found |= {
                meta.row_group(g).column(c).compression
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
            }
        codecs[table] = found
    assert codecs == {T1: {"UNCOMPRESSED"}, T2: {"SNAPPY"}}
    assert_rows(lakehouse.read(T1), plays(spark, base_rows()))
    with (
        pytest.raises(
            InputError, match=f"write to {T3}: compression 'lz4' is not one of snappy, uncompressed"
        ),
        lakehouse.transaction() as tx,
    ):
        tx.stage(plays(spark, base_rows()), T3, compression="lz4")
    assert not lakehouse.exists(T3)


# ---- maintenance: compaction, vacuum, time travel inside the retention ----------------------------------


def test_optimize_compacts_small_files_into_one_and_keeps_the_rows(spark, lakehouse):
    for row in base_rows():
        lakehouse.write(plays(spark, [row, row]).coalesce(1), TABLE, mode="append")
    files_before = len(lakehouse.file_uris(TABLE))

    done = lakehouse.optimize(TABLE)

    assert files_before == 4 and len(lakehouse.file_uris(TABLE)) == 1
    assert (done.version_before, done.version_after, done.files_removed, done.files_added) == (3, 4, 4, 1)
    assert_rows(lakehouse.read(TABLE), plays(spark, [r for r in base_rows() for _ in range(2)]))
    assert_rows(lakehouse.read(TABLE, version=3), lakehouse.read(TABLE))


def test_vacuum_keeps_versions_inside_the_retention_and_deletes_files_older_than_it(spark, lakehouse, root):
    lakehouse.write(plays(spark, base_rows()[:2]), TABLE)
    lakehouse.write(plays(spark, base_rows()[2:]), TABLE)  # version 0's files are now only history

    kept = lakehouse.vacuum(TABLE, retention_hours=24)

    assert kept.files_removed == 0
    assert_rows(lakehouse.read(TABLE, version=0), plays(spark, base_rows()[:2]))  # time travel works

    gone = lakehouse.vacuum(TABLE, retention_hours=0)

    assert gone.files_removed == len(files_in_log(lakehouse, TABLE, version=0)) > 0
    assert files_on_disk(root, TABLE) == files_in_log(lakehouse, TABLE)
    assert_rows(lakehouse.read(TABLE), plays(spark, base_rows()[2:]))
    with pytest.raises(Exception, match=r"(?i)not (found|exist)|No such file"):
        lakehouse.read(TABLE, version=0).collect()


@pytest.mark.parametrize("hours", [-1, float("nan"), float("inf")])
def test_vacuum_refuses_a_negative_or_unbounded_retention(spark, lakehouse, hours):
    lakehouse.write(plays(spark, base_rows()), TABLE)

    with pytest.raises(InputError, match=f"0 hours or more, not {hours}"):
        lakehouse.vacuum(TABLE, retention_hours=hours)


def test_tables_lists_every_delta_table_under_the_root(spark, lakehouse, root):
    three_tables(spark, lakehouse)
    (root / "silver" / "not_a_table").mkdir(parents=True)

    assert lakehouse.tables() == [T1, T2, T3]


# ---- each engine reads the other's tables -----------------------------------------------------------------


@pytest.mark.parametrize(("writer", "reader"), [("delta-rs", "spark"), ("spark", "delta-rs")])
def test_each_engine_reads_and_extends_the_others_tables(spark, root, writer, reader):
    first, second = Lakehouse(spark, str(root), writer), Lakehouse(spark, str(root), reader)
    first.write(plays(spark, base_rows()[:2]), TABLE, partition_by=["day"])
    first.overwrite_partitions(plays(spark, base_rows()[1:3]), TABLE, column="day", start=D2, end=D3)

    assert_rows(second.read(TABLE), plays(spark, base_rows()[:3]))
    second.write(plays(spark, base_rows()[3:]), TABLE, mode="append")
    second.prepare(plays(spark, base_rows()[:1]), TABLE, operation="merge", merge_keys=["user_id"]).commit()

    assert_rows(first.read(TABLE), plays(spark, base_rows()))
    assert_rows(first.read(TABLE, version=1), plays(spark, base_rows()[:3]))


def test_delta_rs_reads_a_table_past_the_connectors_checkpoint(spark, root):
    connector, delta_rs = Lakehouse(spark, str(root), "spark"), Lakehouse(spark, str(root), "delta-rs")
    rows = [(f"u{i}", ts(D1), D1, f"t{i}", i, [i]) for i in range(11)]
    for row in rows:  # versions 0 .. 10: the connector writes a checkpoint at version 10
        connector.write(plays(spark, [row]).coalesce(1), TABLE, mode="append")

    assert (root / TABLE / "_delta_log" / "00000000000000000010.checkpoint.parquet").is_file()
    assert delta_rs.version(TABLE) == 10 and delta_rs.rows(TABLE) == 11
    assert_rows(delta_rs.read(TABLE), plays(spark, rows))
    delta_rs.write(plays(spark, rows[:1]), TABLE, mode="append")
    assert connector.read(TABLE).count() == 12
