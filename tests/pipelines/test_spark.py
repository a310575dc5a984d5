"""The session factory: the settings every downbeat job relies on."""

from __future__ import annotations

import pytest

from pipelines.errors import ConfigError
from pipelines.lakehouse import DeltaSettings
from pipelines.spark import DELTA_EXTENSION, SparkSettings, session_conf

SETTINGS = SparkSettings(
    master="local[2]", app_name="t", driver_memory="1g", shuffle_partitions=3, log_level="WARN", conf={}
)
DELTA_RS = DeltaSettings(engine="delta-rs", packages=None, jars_dir=None)


def test_running_session_is_utc_with_arrow_and_few_partitions(spark):
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.sql.shuffle.partitions") == "2"
    assert conf.get("spark.sql.parquet.outputTimestampType") == "TIMESTAMP_MICROS"
    assert spark.sparkContext.master == "local[2]"


def test_timestamps_are_read_and_shown_in_utc(spark):
    row = (
        spark.sql("SELECT CAST('2024-03-31 01:30:00+02:00' AS TIMESTAMP) AS ts")
        .selectExpr("date_format(ts, 'yyyy-MM-dd HH:mm') AS t")
        .first()
    )
    assert row is not None and row.t == "2024-03-30 23:30"


def test_config_entries_win_and_java_options_are_merged():
    settings = SparkSettings(
        **{
            **SETTINGS.__dict__,
            "conf": {"spark.sql.shuffle.partitions": "7", "spark.driver.extraJavaOptions": "-Dx=1"},
        }
    )

    conf = session_conf(settings, DELTA_RS)

    assert conf["spark.sql.shuffle.partitions"] == "7"
    assert conf["spark.driver.extraJavaOptions"].startswith("-Duser.timezone=UTC ")
    assert conf["spark.driver.extraJavaOptions"].endswith(" -Dx=1")


def test_delta_rs_engine_adds_no_connector_settings():
    conf = session_conf(SETTINGS, DELTA_RS)

    assert "spark.sql.extensions" not in conf and "spark.jars.packages" not in conf


def test_connector_from_maven_coordinates():
    conf = session_conf(
        SETTINGS, DeltaSettings(engine="spark", packages="io.delta:delta-spark_2.13:4.0.0", jars_dir=None)
    )

    assert conf["spark.jars.packages"] == "io.delta:delta-spark_2.13:4.0.0"
    assert conf["spark.sql.extensions"] == DELTA_EXTENSION


def test_connector_from_a_local_jar_folder(tmp_path):
    (tmp_path / "delta-spark_2.13-4.0.0.jar").write_bytes(b"")
    (tmp_path / "delta-storage-4.0.0.jar").write_bytes(b"")

    conf = session_conf(SETTINGS, DeltaSettings(engine="auto", packages=None, jars_dir=str(tmp_path)))

    assert conf["spark.jars"].split(",") == [
        str(tmp_path / "delta-spark_2.13-4.0.0.jar"),
        str(tmp_path / "delta-storage-4.0.0.jar"),
    ]
    assert conf["spark.sql.extensions"] == DELTA_EXTENSION


def test_jar_folder_without_jars_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=f"'delta.jars_dir': no .jar files in {tmp_path}"):
        session_conf(SETTINGS, DeltaSettings(engine="auto", packages=None, jars_dir=str(tmp_path)))
