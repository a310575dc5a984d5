"""The one place a SparkSession is built: UTC, Arrow on, few shuffle partitions locally, quiet logs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import SparkSession

from pipelines.errors import ConfigError
from pipelines.lakehouse import DeltaSettings

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


@dataclass(frozen=True)
class SparkSettings:
    """How the session is built. Under spark-submit, its --master and driver memory win."""

    master: str | None
    app_name: str
    driver_memory: str
    shuffle_partitions: int
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"]
    conf: dict[str, str]


def spark_session(settings: SparkSettings, delta: DeltaSettings) -> SparkSession:
    """Build (or join, under spark-submit) the session with downbeat's settings applied."""
    conf = session_conf(settings, delta)
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if under_spark_submit:
        # spark-submit already chose the master and started the driver JVM: its flags win.
        conf.pop("spark.driver.memory", None)
    elif (settings.master or "").startswith("local"):
        # Local Python workers must run the driver's interpreter (the venv), not python3 from PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master and not under_spark_submit:
        builder = builder.master(settings.master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # A session that already existed (spark-submit, notebooks) keeps its static settings, but the
    # SQL settings downbeat's results depend on are applied either way.
    for key in (
        "spark.sql.session.timeZone",
        "spark.sql.shuffle.partitions",
        "spark.sql.execution.arrow.pyspark.enabled",
        "spark.sql.parquet.outputTimestampType",
    ):
        spark.conf.set(key, conf[key])
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark


def session_conf(settings: SparkSettings, delta: DeltaSettings) -> dict[str, str]:
    """Every Spark setting downbeat applies; `spark.conf` entries from config win over these."""
    java_opts = f"-Duser.timezone=UTC -Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}"
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # Delta stores timestamps as microseconds; Spark's INT96 default is unreadable to delta-rs.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.driver.memory": settings.driver_memory,
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.ui.showConsoleProgress": "false",
    }
    conf.update(delta_connector_conf(delta))
    for key, value in settings.conf.items():
        if key.endswith("extraJavaOptions") and key in conf:
            value = f"{conf[key]} {value}"
        conf[key] = value
    return conf


def delta_connector_conf(delta: DeltaSettings) -> dict[str, str]:
    """Settings that put the Delta Spark connector on the classpath, when config provides it."""
    conf: dict[str, str] = {}
    if delta.jars_dir:
        jars = sorted(Path(delta.jars_dir).glob("*.jar"))
        if not jars:
            raise ConfigError(f"config key 'delta.jars_dir': no .jar files in {delta.jars_dir}")
        conf["spark.jars"] = ",".join(str(j) for j in jars)
    if delta.packages:
        conf["spark.jars.packages"] = delta.packages
    if delta.jars_dir or delta.packages:
        # Only when config brings the connector: naming classes that are absent makes Spark print a
        # stack trace at start-up, before resolve_engine() can say what is missing in one line.
        conf["spark.sql.extensions"] = DELTA_EXTENSION
        conf["spark.sql.catalog.spark_catalog"] = DELTA_CATALOG
    return conf
