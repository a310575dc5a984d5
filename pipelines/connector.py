"""The Delta Spark connector's jars: resolved from Maven Central once, then used from a local cache.

`make test` (and the docker image) run `python -m downbeat.pipelines.connector` at set-up: Spark's own
resolver (Ivy, the same one `--packages` uses) fetches the connector that pairs with the installed
`delta-spark` pip package, with its dependencies, into `jar_cache()`. Every later session puts
those files on `spark.jars` and needs no network.

- `delta.jars_dir: DIR`: the jars in DIR, nothing resolved.
- `delta.packages: null` (default): the installed delta-spark's coordinates, from the cache only.
  Absent there, the connector is absent (`delta.engine: auto` then writes with delta-rs).
- `delta.packages: COORDS`: resolved into the cache on first use (network), from it afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from downbeat.pipelines.errors import ConfigError

SCALA = "2.13"
MARKER = "RESOLVED"
CACHE_ENV = "DOWNBEAT_JARS_CACHE"


@dataclass(frozen=True)
class Connector:
    """Where the connector's jars are, or why there are none."""

    jars: tuple[Path, ...]
    source: str  # what was used or tried, for logs and errors
    problem: str | None = None  # set when no jars could be had

    @property
    def available(self) -> bool:
        return bool(self.jars)


def pinned_package() -> str:
    """Maven coordinates of the connector that pairs with the installed delta-spark pip package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("delta-spark")
    except PackageNotFoundError:
        raise ConfigError(
            "the delta-spark package is not installed: reinstall downbeat (make test does) or set "
            "delta.packages to Maven coordinates"
        ) from None
    return f"io.delta:delta-spark_{SCALA}:{release}"


def jar_cache() -> Path:
    """The folder resolved connectors live in: $DOWNBEAT_JARS_CACHE, else inside the environment."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path(sys.prefix) / "share" / "downbeat" / "jars"


def cached_dir(packages: str, cache: Path | None = None) -> Path:
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in packages)[:80]
    digest = hashlib.sha1(packages.encode()).hexdigest()[:8]
    return (cache or jar_cache()) / f"{slug}-{digest}"


def cached_jars(packages: str, cache: Path | None = None) -> tuple[Path, ...]:
    """The jars a completed resolution of `packages` left in the cache (empty when there is none)."""
    folder = cached_dir(packages, cache)
    if not (folder / MARKER).is_file():
        return ()
    return tuple(sorted(folder.glob("*.jar")))


def locate(packages: str | None, jars_dir: str | None, *, allow_network: bool = True) -> Connector:
    """The connector's jars for this config (see the module's docstring); never raises for absence."""
    if jars_dir:
        jars = tuple(sorted(Path(jars_dir).glob("*.jar")))
        if not jars:
            raise ConfigError(f"config key 'delta.jars_dir': no .jar files in {jars_dir}")
        return Connector(jars, f"delta.jars_dir {jars_dir}")
    if packages is None:
        pinned = pinned_package()
        jars = cached_jars(pinned)
        where = cached_dir(pinned)
        if jars:
            return Connector(jars, f"{pinned} from {where}")
        return Connector(
            (),
            f"{pinned} in {where}",
            f"{pinned} is not resolved in {where} (run `python -m downbeat.pipelines.connector` once, with "
            "access to Maven Central; `make test` does)",
        )
    jars = cached_jars(packages)
    if jars:
        return Connector(jars, f"{packages} from {cached_dir(packages)}")
    if not allow_network:
        return Connector((), packages, f"{packages} is not resolved in {cached_dir(packages)}")
    try:
        return Connector(resolve(packages), f"{packages} from {cached_dir(packages)}")
    except ConfigError as exc:
        return Connector((), packages, str(exc))


def resolve(packages: str, cache: Path | None = None, *, timeout_s: float = 600.0) -> tuple[Path, ...]:
    """Fetch `packages` and their dependencies with Spark's resolver into the cache; the jar paths.

    Runs in a child process: a JVM whose resolution fails exits before Python can ask it why, so
    the child's output is kept to name the cause.
    """
    cache = cache or jar_cache()
    folder = cached_dir(packages, cache)
    jars = cached_jars(packages, cache)
    if jars:
        return jars
    cache.mkdir(parents=True, exist_ok=True)
    ivy = cache / "ivy" / folder.name  # per coordinates: its resolution report is this one's
    staging = Path(tempfile.mkdtemp(prefix=".resolving-", dir=cache))
    script = (
        "import sys\n"
        "from pyspark.sql import SparkSession\n"
        "s = (SparkSession.builder.master('local[1]').appName('downbeat-resolve')"
        ".config('spark.jars.packages', sys.argv[1]).config('spark.jars.ivy', sys.argv[2])"
        ".config('spark.ui.enabled', 'false').getOrCreate())\n"
        "s.stop()\n"
    )
    try:
        try:
            done = subprocess.run(
                [sys.executable, "-c", script, packages, str(ivy)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"could not resolve {packages} from Maven Central within {timeout_s:.0f} s "
                f"(Spark's resolver, cache {ivy})"
            ) from None
        if done.returncode != 0:
            raise ConfigError(f"could not resolve {packages} (Spark's resolver, cache {ivy}): {_cause(done)}")
        names = _resolved_names(packages, ivy)
        missing = [n for n in names if not (ivy / "jars" / n).is_file()]
        if not names or missing:
            raise ConfigError(f"could not resolve {packages}: no jar {missing or names} under {ivy / 'jars'}")
        for name in names:
            shutil.copy2(ivy / "jars" / name, staging / name)
        (staging / MARKER).write_text(packages + "\n")
        if not cached_jars(packages, cache):
            shutil.rmtree(folder, ignore_errors=True)  # an unfinished folder of an interrupted run
        try:
            staging.rename(folder)  # the finished folder appears at once, or not at all
        except OSError:
            if not cached_jars(packages, cache):  # else a concurrent resolution finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cached_jars(packages, cache)


LOG_STORE_SOURCE = Path(__file__).resolve().parent / "lakehouse" / "ConditionalPutS3LogStore.java"
LOG_STORE_CLASS = "downbeat.delta.ConditionalPutS3LogStore"


def log_store_jar(classpath: Sequence[Path], cache: Path | None = None) -> Path:
    """The jar of the conditional-put S3 log store (`delta.s3_log_store: conditional-put`), compiled
    from its source against `classpath` (the connector's and hadoop-aws's jars) on first use, with
    the JDK's javac, into the jar cache; the same file afterwards."""
    import pyspark

    spark_jars = Path(pyspark.__file__).resolve().parent / "jars"
    source = LOG_STORE_SOURCE.read_bytes()
    digest = hashlib.sha1(source + "\n".join(sorted(p.name for p in classpath)).encode()).hexdigest()[:8]
    jar = (cache or jar_cache()) / f"downbeat-log-store-{digest}" / "downbeat-log-store.jar"
    if jar.is_file():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise ConfigError(
            "config key 'delta.s3_log_store': conditional-put compiles its log store once with a JDK's "
            "javac, and none is on PATH (install openjdk-17-jdk-headless)"
        )
    with tempfile.TemporaryDirectory(prefix="downbeat-log-store-") as tmp:
        jars = os.pathsep.join([*map(str, classpath), str(spark_jars / "*")])
        done = subprocess.run(
            [javac, "-nowarn", "-cp", jars, "-d", tmp, str(LOG_STORE_SOURCE)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise ConfigError(f"config key 'delta.s3_log_store': javac failed: {_cause(done)}")
        staged = Path(tmp) / "downbeat-log-store.jar"
        with zipfile.ZipFile(staged, "w") as archive:
            for compiled in sorted(Path(tmp).rglob("*.class")):
                archive.write(compiled, compiled.relative_to(tmp).as_posix())
        jar.parent.mkdir(parents=True, exist_ok=True)
        os.replace(shutil.copy2(staged, jar.with_suffix(".tmp")), jar)  # whole, or not at all
    return jar


def _resolved_names(packages: str, ivy: Path) -> list[str]:
    """The jar files Ivy's resolution report lists for this resolution (not every jar in the cache)."""
    reports = sorted((ivy / "cache").glob("*-default.xml"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return sorted(p.name for p in (ivy / "jars").glob("*.jar"))
    import xml.etree.ElementTree as ET

    names = []
    for module in ET.parse(reports[-1]).getroot().iter("module"):
        for revision in module.iter("revision"):
            if revision.get("evicted"):
                continue
            org, name, rev = module.get("organisation"), module.get("name"), revision.get("name")
            for artifact in revision.iter("artifact"):
                if artifact.get("type") == "jar" and artifact.get("ext", "jar") == "jar":
                    names.append(f"{org}_{name}-{rev}.jar")
    return sorted(set(names))


def _cause(done: subprocess.CompletedProcess[str]) -> str:
    """The line of the resolver's output that says why it failed."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    for marker in ("unresolved dependency", "not found", "UNRESOLVED", "Exception", "Error"):
        hits = [line for line in lines if marker in line and "::" not in line.strip(": ")]
        if hits:
            return hits[0][:300]
    return lines[-1][:300] if lines else f"exit code {done.returncode}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m downbeat.pipelines.connector",
        description="Resolve the Delta Spark connector's jars from Maven Central into downbeat's cache.",
    )
    parser.add_argument("--packages", help="Maven coordinates (default: the installed delta-spark's)")
    parser.add_argument(
        "--log-store",
        action="store_true",
        help="also compile the conditional-put S3 log store against the connector and --packages "
        "(hadoop-aws) and print its jar's path (delta.s3_log_store, docs/lakehouse.md)",
    )
    args = parser.parse_args(argv)
    try:
        packages = args.packages or pinned_package()
        jars = resolve(packages)
        print(f"{packages}: {len(jars)} jar(s) in {cached_dir(packages)}")
        if args.log_store:
            connector = resolve(pinned_package()) if args.packages else ()
            print(log_store_jar([*connector, *jars]))
    except ConfigError as exc:
        print(f"downbeat connector: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
