"""The session factory: the settings every downbeat job relies on."""

from __future__ import annotations

from pathlib import Path

import pytest

from downbeat.jobs.config import PROJECT_ROOT, load_config
from downbeat.pipelines.connector import cached_dir, cached_jars, jar_cache, pinned_package
from downbeat.pipelines.errors import ConfigError
from downbeat.pipelines.lakehouse import (
    CONNECTOR_PROBLEM,
    DeltaSettings,
    Lakehouse,
    LakehouseSettings,
    object_store_defaults,
)
from downbeat.pipelines.spark import (
    DELTA_EXTENSION,
    SparkSettings,
    object_store_conf,
    session_conf,
)

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


def test_connector_comes_from_the_set_up_cache_without_network():
    pinned = pinned_package()
    assert cached_jars(pinned), (
        f"run `python -m downbeat.pipelines.connector` first: no {pinned} in {jar_cache()}"
    )

    conf = session_conf(SETTINGS, DeltaSettings(engine="spark", packages=None, jars_dir=None))
    explicit = session_conf(SETTINGS, DeltaSettings(engine="spark", packages=pinned, jars_dir=None))

    jars = conf["spark.jars"].split(",")
    assert any(Path(j).name == f"io.delta_delta-spark_2.13-{pinned.rsplit(':', 1)[1]}.jar" for j in jars)
    assert all(Path(j).is_file() and Path(j).parent == cached_dir(pinned) for j in jars)
    assert explicit["spark.jars"] == conf["spark.jars"]
    assert conf["spark.sql.extensions"] == DELTA_EXTENSION and "spark.jars.packages" not in conf


def test_an_empty_cache_means_no_connector_for_auto_and_an_error_for_spark(monkeypatch, tmp_path):
    monkeypatch.setenv("DOWNBEAT_JARS_CACHE", str(tmp_path))

    auto = session_conf(SETTINGS, DeltaSettings(engine="auto", packages=None, jars_dir=None))
    with pytest.raises(ConfigError, match=rf"'delta.engine' is 'spark' but .* is not resolved in {tmp_path}"):
        session_conf(SETTINGS, DeltaSettings(engine="spark", packages=None, jars_dir=None))

    assert "spark.jars" not in auto and "spark.sql.extensions" not in auto
    assert "is not resolved in" in auto[CONNECTOR_PROBLEM]


def test_coordinates_that_do_not_resolve_name_what_was_tried(monkeypatch, tmp_path):
    monkeypatch.setenv("DOWNBEAT_JARS_CACHE", str(tmp_path))
    wrong = "io.delta:delta-spark_2.13:0.0.404"

    with pytest.raises(ConfigError, match=r"could not resolve io\.delta:delta-spark_2\.13:0\.0\.404 .*"):
        session_conf(SETTINGS, DeltaSettings(engine="spark", packages=wrong, jars_dir=None))
    auto = session_conf(SETTINGS, DeltaSettings(engine="auto", packages=wrong, jars_dir=None))

    assert "spark.jars" not in auto and "could not resolve" in auto[CONNECTOR_PROBLEM]
    assert not any(tmp_path.glob("io.delta*"))  # nothing half-resolved is left to be mistaken for jars


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


# ---- object storage ------------------------------------------------------------------------------


def test_s3_roots_go_through_s3a_configured_from_the_aws_environment():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "eu-west-1"}

    conf = object_store_conf(env)

    assert conf == {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": "http://127.0.0.1:9000",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
    }
    # AWS itself: no endpoint, so S3A's own (virtual-host style, TLS)
    assert object_store_conf({}) == {"spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem"}
    assert (
        object_store_conf({"AWS_ENDPOINT_URL_S3": "https://minio:9000"})[
            "spark.hadoop.fs.s3a.connection.ssl.enabled"
        ]
        == "true"
    )


def test_spark_packages_come_from_the_set_up_cache_with_the_connector(monkeypatch, tmp_path):
    monkeypatch.setenv("DOWNBEAT_JARS_CACHE", str(tmp_path))
    folder = cached_dir("org.example:extra:1.0", tmp_path)  # a finished resolution, as resolve() leaves it
    folder.mkdir(parents=True)
    (folder / "org.example_extra-1.0.jar").write_bytes(b"")
    (folder / "RESOLVED").write_text("org.example:extra:1.0\n")
    settings = SparkSettings(**{**SETTINGS.__dict__, "packages": "org.example:extra:1.0"})

    conf = session_conf(settings, DELTA_RS)

    assert conf["spark.jars"] == str(folder / "org.example_extra-1.0.jar")


def test_hadoop_aws_is_the_version_of_pyspark_s_own_hadoop():
    """S3A must match the Hadoop that pyspark carries, else its classes fail to link at run time."""
    import pyspark

    bundled = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    assert len(bundled) == 1
    hadoop = bundled[0].name.removeprefix("hadoop-client-api-").removesuffix(".jar")
    wanted = f"org.apache.hadoop:hadoop-aws:{hadoop}"
    assert load_config(PROJECT_ROOT / "conf" / "cluster.yaml").spark.packages == wanted
    assert f"HADOOP_AWS := {wanted}\n" in (PROJECT_ROOT / "Makefile").read_text()
    assert f"--packages {wanted} " in (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    dag = (PROJECT_ROOT / "deploy" / "airflow" / "downbeat_nightly.py").read_text()
    assert f"{pinned_package()},{wanted}" in dag  # the DAG's spark-submit --packages
    from tests.jobs.test_object_storage import HADOOP_AWS

    assert wanted == HADOOP_AWS


def test_s3_roots_commit_by_conditional_put_unless_the_environment_says_otherwise():
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000"}
    object_store_defaults("s3://bucket/lh", env)
    assert env["AWS_CONDITIONAL_PUT"] == "etag" and env["AWS_ALLOW_HTTP"] == "true"

    chosen = {"AWS_S3_LOCKING_PROVIDER": "dynamodb", "AWS_CONDITIONAL_PUT": "none"}
    object_store_defaults("s3://bucket/lh", chosen)
    assert chosen == {"AWS_S3_LOCKING_PROVIDER": "dynamodb", "AWS_CONDITIONAL_PUT": "none"}

    local: dict[str, str] = {}
    object_store_defaults("/data/lakehouse", local)
    assert local == {}


def test_an_s3_root_without_s3a_on_the_classpath_is_one_line_naming_the_key(spark):
    """The suite's session has no hadoop-aws: an s3:// root is refused before any read or write."""
    settings = LakehouseSettings(root="s3://bucket/lakehouse")

    with pytest.raises(ConfigError, match=r"config key 'lakehouse.root' is s3://bucket/lakehouse but .*S3A"):
        Lakehouse.from_settings(spark, settings, DELTA_RS)


def test_the_conditional_put_log_store_needs_hadoop_aws_on_spark_packages():
    spark_delta = DeltaSettings("spark", None, None, s3_log_store="conditional-put")

    with pytest.raises(ConfigError, match=r"'delta.s3_log_store': conditional-put .* set spark.packages"):
        session_conf(SETTINGS, spark_delta)
    assert "spark.delta.logStore.s3.impl" not in session_conf(SETTINGS, DeltaSettings("spark", None, None))


def test_a_session_started_with_the_default_log_store_is_refused_for_conditional_put(spark):
    """The suite's session exists already (as spark-submit's would): asking it for conditional-put
    commits must not write through Delta's default S3 log store instead."""
    from downbeat.pipelines.spark import _check_log_store

    with pytest.raises(
        ConfigError, match=r"log store for s3:// is Delta's default: under spark-submit pass --jars"
    ):
        _check_log_store(spark, DeltaSettings("spark", None, None, s3_log_store="conditional-put"))
    _check_log_store(spark, DeltaSettings("spark", None, None))
    _check_log_store(spark, DeltaSettings("delta-rs", None, None, s3_log_store="conditional-put"))
