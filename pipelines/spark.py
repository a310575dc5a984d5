"""The one place a SparkSession is built: UTC, Arrow on, few shuffle partitions locally, quiet logs."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pyspark.sql import SparkSession

from downbeat.pipelines.connector import LOG_STORE_CLASS, locate, log_store_jar
from downbeat.pipelines.errors import ConfigError
from downbeat.pipelines.lakehouse import CONNECTOR_PROBLEM, CONNECTOR_SOURCE, S3A_CLASS, DeltaSettings
from downbeat.pipelines.lakehouse._core import jvm_loads

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
    # Maven coordinates of more jars for every session (org.apache.hadoop:hadoop-aws:<Spark's
    # Hadoop> for s3:// roots), resolved once into the connector's cache like delta.packages
    packages: str | None = None


def spark_session(settings: SparkSettings, delta: DeltaSettings) -> SparkSession:
    """Build (or join, under spark-submit) the session with downbeat's settings applied."""
    under_spark_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    # Under spark-submit the JVM is already up: its --packages or --jars decide the connector, and
    # the session's Delta extension is set when (and only when) they put its classes there.
    conf = session_conf(
        settings,
        delta,
        connector=not under_spark_submit,
        submitted_connector=under_spark_submit and delta.engine != "delta-rs" and _driver_has_delta(),
    )
    if under_spark_submit:
        # spark-submit already chose the master and started the driver JVM: its flags win, and so
        # do the cluster's own object-store settings (--conf, spark-defaults.conf) over the ones
        # downbeat derives from the AWS environment.
        conf.pop("spark.driver.memory", None)
        submitted = _submitted_keys()
        for key in object_store_conf(os.environ):
            if key in submitted and key not in settings.conf:
                conf.pop(key, None)
    elif (settings.master or "").startswith("local"):
        # Local Python workers must run the driver's interpreter (the venv), not python3 from PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master and not under_spark_submit:
        builder = builder.master(settings.master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    # SparkContext puts its own Ctrl-C handler in (it cancels the jobs through the JVM, from inside
    # the signal, while the main thread may be in a call to that JVM); the caller's stays instead.
    main_thread = threading.current_thread() is threading.main_thread()
    on_interrupt = signal.getsignal(signal.SIGINT) if main_thread else None
    spark = builder.getOrCreate()
    if on_interrupt is not None:
        signal.signal(signal.SIGINT, on_interrupt)
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
    _check_log_store(spark, delta)
    return spark


def _check_log_store(spark: SparkSession, delta: DeltaSettings) -> None:
    """A session that existed before (spark-submit's, or an earlier one in this process) keeps the
    log store it started with: refuse to write with the default one when conditional-put is asked."""
    if delta.engine == "delta-rs" or delta.s3_log_store != "conditional-put":
        return
    if not jvm_loads(spark.sparkContext._jvm, DELTA_EXTENSION):  # auto without the connector: delta-rs
        return
    chosen = spark.sparkContext.getConf().get("spark.delta.logStore.s3.impl", "Delta's default")
    if chosen != LOG_STORE_CLASS:
        raise ConfigError(
            f"config key 'delta.s3_log_store' is conditional-put, but this Spark session's log store "
            f"for s3:// is {chosen}: under spark-submit pass --jars with the jar `python -m "
            "downbeat.pipelines.connector --packages org.apache.hadoop:hadoop-aws:3.4.1 --log-store` "
            f"prints and --conf spark.delta.logStore.s3.impl={LOG_STORE_CLASS} (and .s3a.impl)"
        )


def session_conf(
    settings: SparkSettings,
    delta: DeltaSettings,
    *,
    connector: bool = True,
    submitted_connector: bool = False,
) -> dict[str, str]:
    """Every Spark setting downbeat applies; `spark.conf` entries from config win over these.

    `connector`: put the connector's jars on the classpath (downbeat starts the JVM);
    `submitted_connector`: spark-submit's --packages or --jars already did, so only the session's
    Delta extension and catalog are set.
    """
    java_opts = f"-Duser.timezone=UTC -Dlog4j2.configurationFile={LOG4J_CONFIG.as_uri()}"
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # Delta stores timestamps as microseconds; Spark's INT96 default is unreadable to delta-rs.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Input Parquet in nanoseconds (pandas' and Arrow's default) is read as its int64 count,
        # which sources.events turns into a time; without this Spark refuses such a file outright.
        "spark.sql.legacy.parquet.nanosAsLong": "true",
        "spark.driver.memory": settings.driver_memory,
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.ui.showConsoleProgress": "false",
    }
    if connector:
        conf.update(delta_connector_conf(delta))
        more = extra_jars(settings.packages)
        if more:
            conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars", ""), more]))
        if delta.s3_log_store == "conditional-put" and CONNECTOR_SOURCE in conf:
            conf.update(conditional_put_conf(conf["spark.jars"]))
    elif submitted_connector:
        # Its SQL extension and catalog are still session settings (the connector's writes,
        # VACUUM and MERGE INTO need them).
        conf.update(
            {"spark.sql.extensions": DELTA_EXTENSION, "spark.sql.catalog.spark_catalog": DELTA_CATALOG}
        )
    conf.update(object_store_conf(os.environ))
    if CONNECTOR_SOURCE in conf:
        # The connector rebuilds a table's state with this many tasks (default 50): at most the
        # shuffle partitions, so that small local sessions do not run 50 tasks per snapshot.
        conf["spark.databricks.delta.snapshotPartitions"] = str(min(50, settings.shuffle_partitions))
    for key, value in settings.conf.items():
        if key.endswith("extraJavaOptions") and key in conf:
            value = f"{conf[key]} {value}"
        conf[key] = value
    return conf


def conditional_put_conf(jars: str) -> dict[str, str]:
    """The conditional-put log store for s3:// (and s3a://) tables, its jar built against `jars`
    (the connector's and hadoop-aws's: `spark.packages` must name hadoop-aws) and added to them."""
    paths = [Path(j) for j in jars.split(",") if j]
    if not any(p.name.startswith("org.apache.hadoop_hadoop-aws") for p in paths):
        raise ConfigError(
            "config key 'delta.s3_log_store': conditional-put writes through S3A: set spark.packages "
            "to org.apache.hadoop:hadoop-aws:<Spark's Hadoop version> (docs/lakehouse.md)"
        )
    jar = log_store_jar(paths)
    return {
        "spark.jars": f"{jars},{jar}",
        "spark.delta.logStore.s3.impl": LOG_STORE_CLASS,
        "spark.delta.logStore.s3a.impl": LOG_STORE_CLASS,
    }


def object_store_conf(env: Mapping[str, str]) -> dict[str, str]:
    """Hadoop's settings for `s3://` roots, taken from the AWS environment that pyarrow, delta-rs
    and MLflow's boto3 read too (AWS_ENDPOINT_URL, AWS_REGION; credentials stay in the
    environment): one lakehouse URI for every reader. Needs hadoop-aws on the classpath
    (`spark.packages`); `spark.conf` entries win."""
    conf = {"spark.hadoop.fs.s3.impl": S3A_CLASS}  # s3:// through S3A, the URI pyarrow and delta-rs take
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:  # an S3-compatible store (MinIO, moto, Ceph): path-style URLs, TLS as the URL says
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https:")).lower()
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


def extra_jars(packages: str | None) -> str:
    """`spark.packages`' jars from the set-up cache (resolved there on first use), comma-separated."""
    if not packages:
        return ""
    found = locate(packages, None)
    if not found.available:
        raise ConfigError(f"config key 'spark.packages': {found.problem}")
    return ",".join(str(j) for j in found.jars)


def _driver_has_delta() -> bool:
    """Whether the running driver JVM (spark-submit's) can load the Delta extension's class."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()
    return jvm_loads(SparkContext._jvm, DELTA_EXTENSION)


def _submitted_keys() -> set[str]:
    """The settings spark-submit passed to the driver JVM (--conf, spark-defaults.conf)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()
    return {key for key, _ in SparkConf().getAll()}


def delta_connector_conf(delta: DeltaSettings) -> dict[str, str]:
    """Settings that put the Delta Spark connector on the classpath, when its jars can be had.

    `delta.engine: delta-rs` never looks for them. Without jars, `auto` goes on with delta-rs (the
    reason is kept for resolve_engine() to log once) and `spark` is a one-line config error.
    """
    if delta.engine == "delta-rs":
        return {}
    connector = locate(delta.packages, delta.jars_dir)
    if not connector.available:
        if delta.engine == "spark":
            raise ConfigError(f"config key 'delta.engine' is 'spark' but {connector.problem}")
        return {CONNECTOR_PROBLEM: connector.problem or f"no jars for {connector.source}"}
    return {
        "spark.jars": ",".join(str(j) for j in connector.jars),
        # Only with the jars: naming classes that are absent makes Spark print a stack trace at
        # start-up, before resolve_engine() can say what is missing in one line.
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        CONNECTOR_SOURCE: connector.source,
    }
