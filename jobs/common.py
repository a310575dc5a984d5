"""What every entry point shares: global flags, config loading, Spark, exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from downbeat.jobs.config import Config, load_config, yaml_problem
from downbeat.models.redaction import RedactingFilter, redact
from downbeat.pipelines.errors import ConflictError, InputError, first_line

if TYPE_CHECKING:
    from downbeat.models.data import TableSnapshot
    from downbeat.pipelines.lakehouse import Lakehouse

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other bad input: exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """--conf and --set, accepted before the command and after it.

    argparse copies a sub-command's values over the main parser's, so the copies after the command
    keep their own names and config_from() combines both.
    """
    suffix = "_after" if after_command else ""
    default: Any = argparse.SUPPRESS if after_command else None
    parser.add_argument(
        "--conf",
        dest=f"conf{suffix}",
        metavar="FILE",
        default=default,
        help="config file (default: conf/local.yaml)",
    )
    parser.add_argument(
        "--set",
        dest=f"overrides{suffix}",
        metavar="KEY=VALUE",
        action="append",
        default=argparse.SUPPRESS if after_command else [],
        help="override one config key, e.g. --set spark.shuffle_partitions=8 (repeatable)",
    )


def config_from(args: argparse.Namespace, architecture: str | None = None) -> Config:
    """The config named by the global options, wherever on the command line they were given
    (with `architecture`'s defaults, conf/models/<architecture>.yaml, for a command that trains it)."""
    conf = getattr(args, "conf_after", None) or args.conf
    overrides = [*args.overrides, *getattr(args, "overrides_after", [])]
    return load_config(conf, overrides, architecture=architecture)


def guarded(fn: Callable[[], int | None], prog: str = "downbeat") -> int:
    """Run a command; map bad input and write conflicts (rerun the job) to exit 2 with one line,
    anything else to exit 1."""
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    received: list[int] = []
    _QUIET.received = received
    for handler in logging.getLogger().handlers:  # py4j logs an interrupted call's traceback on the
        for quiet in (_QUIET, _REDACT):  # root logger (the interruption has a line of its own); no
            if quiet not in handler.filters:  # URI's userinfo in a log line; each filter once
                handler.addFilter(quiet)
    try:
        with _signals_interrupt(received):
            return fn() or EXIT_OK
    except (InputError, ConflictError) as exc:
        if received:
            return _interrupted(prog, received)
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return _interrupted(prog, received)
    except Exception as exc:
        if received:  # Spark's JVM took the terminal's Ctrl-C too: what failed is the interruption
            return _interrupted(prog, received)
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: failed: {first}", file=sys.stderr)
        return EXIT_FAILED


class _QuietInterruption(logging.Filter):
    """Drops the tracebacks an interruption makes py4j log (a KeyboardInterrupt, or the network
    error it turns into: "Answer from Java side is empty"); the interruption has a line of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.received: list[int] = []  # the signals the running command has taken

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info:
            return True
        if self.received:
            return False
        exc = record.exc_info[1]
        while exc is not None:
            if isinstance(exc, KeyboardInterrupt):
                return False
            exc = exc.__context__
        return True


_QUIET = _QuietInterruption()
_REDACT = RedactingFilter()


@contextlib.contextmanager
def _signals_interrupt(received: list[int]) -> Iterator[None]:
    """SIGINT and SIGTERM end the command as an interruption (the signal noted in `received`):
    the open transaction aborts before its commit, the MLflow run ends, tables stay at their last
    committed version. Only the main thread can take signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    before = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def _quiet_jvm() -> None:
    """The driver's JVM logs its own shutdown (interrupted threads, stack traces) after the
    interruption's line when it outlives Python by a moment: its logging goes off first. A JVM
    that is gone already (a terminal's Ctrl-C reached it too) refuses the call; nothing to do."""
    pyspark = sys.modules.get("pyspark")
    context = getattr(pyspark, "SparkContext", None)
    if context is not None and context._active_spark_context is not None:
        with contextlib.suppress(Exception):
            context._active_spark_context.setLogLevel("OFF")


def _interrupted(prog: str, received: list[int]) -> int:
    """One line and 128 + the signal (130 for Ctrl-C, 143 for a scheduler's SIGTERM)."""
    signum = received[0] if received else signal.SIGINT
    name = signal.Signals(signum).name
    _quiet_jvm()
    print(f"{prog}: interrupted ({name}): every table is at its last committed version", file=sys.stderr)
    return 128 + signum


def job_main(
    prog: str,
    description: str | None,
    command: Callable[[argparse.Namespace], int],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> int:
    """The `spark-submit jobs/<name>.py` entry point: global options, the job's own, exit codes."""
    parser = Parser(prog=prog, description=description)
    add_global_options(parser)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    return guarded(lambda: command(args))


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print, as the last line, a JSON run summary for a scheduler (tables written, counts, seconds)",
    )


def table_versions(lakehouse: Lakehouse, versions: dict[str, int]) -> dict[str, dict[str, Any]]:
    """{table: {version, rows}} of the versions a job committed, rows from those versions' logs."""
    return {t: {"version": v, "rows": lakehouse.snapshot(t, v)[2]} for t, v in versions.items()}


def print_summary(job: str, started: float, **fields: Any) -> None:
    """A job's run summary: one JSON object on the last line (job, the fields, wall seconds);
    an undefined figure (NaN) is null, so that any JSON parser reads it."""
    summary = {"job": job, **fields, "seconds": round(time.monotonic() - started, 3)}
    print(json.dumps(redact(_defined(summary)), sort_keys=True, default=str, allow_nan=False), flush=True)


def _defined(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _defined(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_defined(v) for v in value]
    return value


def snapshots(
    lakehouse: Lakehouse, tables: tuple[str, ...], may_be_empty: tuple[str, ...] = ()
) -> dict[str, TableSnapshot]:
    """The current snapshot of each table from its Delta log; a missing table, or an empty one not
    in `may_be_empty`, is bad input (exit 2) naming the table and its version."""

    out = {}
    for table in tables:
        if not lakehouse.exists(table):
            raise InputError(
                f"table {table} does not exist under {lakehouse.root}: run `downbeat build` first"
            )
        out[table] = table_snapshot(lakehouse, table)
        if out[table].rows == 0 and table not in may_be_empty:
            raise InputError(
                f"table {table} version {out[table].version} is empty: nothing to train or evaluate on"
            )
    check_one_build(lakehouse, out)
    return out


def table_snapshot(lakehouse: Lakehouse, table: str, version: int | None = None) -> TableSnapshot:
    """One version of `table` (the current one by default) as a TableSnapshot; bad input (exit 2)
    when an earlier version asked for cannot be read (vacuumed) or the log lacks row counts."""
    from downbeat.models.data import TableSnapshot

    try:
        at, files, rows = lakehouse.snapshot(table, version)
    except Exception as exc:
        if version is None:  # the current version unreadable is no bad input: the job fails
            raise
        raise InputError(f"table {table} version {version} cannot be read ({first_line(exc)})") from None
    if rows is None:
        raise InputError(f"table {table} version {at} has data files without row counts in its log")
    return TableSnapshot(table, lakehouse.uri(table), at, tuple(files), rows)


def check_one_build(lakehouse: Lakehouse, tables: dict[str, TableSnapshot]) -> None:
    """Bad input (exit 2) when the gold snapshots come from different builds (each build commits
    its gold tables as one batch; a build stopped between two of those commits leaves a mix)."""
    builds: dict[str, tuple[str, int]] = {}
    for table, snapshot in tables.items():
        batch = (
            writer_commit(lakehouse, snapshot).get("downbeat.batch") if table.startswith("gold/") else None
        )
        if batch is not None:
            builds.setdefault(str(batch), (table, snapshot.version))
    if len(builds) > 1:
        (one, (t1, v1)), (other, (t2, v2)) = list(builds.items())[:2]
        raise InputError(
            f"tables {t1} version {v1} (build {one}) and {t2} version {v2} (build {other}) come from "
            "different builds: run `downbeat build`"
        )


def writer_commit(lakehouse: Lakehouse, snapshot: TableSnapshot) -> dict[str, Any]:
    """The commit record of the downbeat write that made the snapshot's data: the newest at or
    before its version carrying `downbeat.operation` (maintenance commits such as OPTIMIZE carry
    none, and rewrite no data); empty when the log no longer has one."""
    return next(
        (
            e
            for e in lakehouse.history(snapshot.table)
            if e.get("version", -1) <= snapshot.version and "downbeat.operation" in e
        ),
        {},
    )


def read_yaml_mapping(path: str, what: str) -> dict[str, Any]:
    """A YAML file holding a mapping (an experiment spec, the claims file); bad input is one line
    naming `what` and the file."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} {path} not found")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{what} {path} is not YAML{yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{what} {path} must be a mapping")
    return raw
