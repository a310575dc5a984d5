"""`downbeat recommend --model-uri URI [--top-k K] [--users TABLE_OR_ALL] [--json]`.

Ranks the whole catalog for every user with plays (or every user of a lakehouse table with a
user_id column) with a registered model, and writes the top K per user to gold/recommendations.
The history a model reads is the user's last plays in silver/plays (up to the model's length); the
tracks the user ever rated down are never recommended, nor, where `eval.exclude_seen` says so, the
tracks the user already played (films are rated once; music is replayed, so by default played
tracks may be recommended again).
Old versions' rows do not pile up: a run keeps, of its registered model's other versions, those that
hold an alias (champion, candidate) and the newest, or with `--keep-versions N` the N newest
(this run's among them); other registered models' rows are left as they are.
The model's files are shipped to the executors once and loaded once per Python worker
(mapInPandas). A run replaces its model version's rows (for its users) and keeps the rest; a rerun
on the same inputs writes nothing. Also runnable as `spark-submit jobs/recommend.py --model-uri URI`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from downbeat.jobs.common import add_json_option, config_from, job_main, print_summary, snapshots
from downbeat.jobs.config import Config
from downbeat.models.contract import Tables
from downbeat.models.registry import (
    aliased_versions,
    check_catalog,
    download_model,
    load_metadata,
    registered_version,
)
from downbeat.pipelines import schemas as S
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.lakehouse._core import TABLE_NAME
from downbeat.pipelines.recommend import (
    RANKED,
    rank_partition,
    recommendation_rows,
    replacing,
    user_histories,
)
from downbeat.pipelines.spark import spark_session
from downbeat.pipelines.split import seen_excluded

if TYPE_CHECKING:
    from downbeat.models.data import TableSnapshot

log = logging.getLogger("downbeat.recommend")
TABLE = Tables.RECOMMENDATIONS
PLAYS, TRACKS, STATIONS = Tables.PLAYS, Tables.TRACKS, Tables.STATIONS
RUN_TAG = "downbeat.recommend"  # the commit's inputs: a rerun with the same ones writes nothing
ALL = "ALL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-uri",
        required=True,
        metavar="URI",
        help="a registered model: models:/NAME@ALIAS or models:/NAME/VERSION",
    )
    parser.add_argument("--top-k", type=int, default=20, metavar="K", help="tracks per user (default 20)")
    parser.add_argument(
        "--users",
        default=ALL,
        metavar="TABLE_OR_ALL",
        help="ALL (every user with plays; the default) or a lakehouse table (layer/name) with user_id",
    )
    parser.add_argument(
        "--keep-versions",
        type=int,
        metavar="N",
        help="keep the rows of the model's N newest versions (this run's among them); default: the "
        "versions holding an alias, and the newest",
    )
    add_json_option(parser)


@dataclass(frozen=True)
class Recommended:
    """What a run did: gold/recommendations' `version` after it, whether it wrote (a rerun on the
    same inputs does not), and for a write the users served, the model's rows and the users the
    model cannot serve. `inputs`: the run's inputs, as its commit records them."""

    inputs: dict[str, Any]
    version: int
    written: bool
    served_users: int | None = None
    model_rows: int | None = None
    unserved_users: int | None = None
    dropped_versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Request:
    model_uri: str
    name: str
    version: str
    run_id: str
    tables: dict[str, TableSnapshot]
    users: str
    users_version: int | None
    top_k: int
    inputs: dict[str, Any]
    before: int | None
    keep_versions: int | None
    tracking_uri: str


def run(
    cfg: Config, model_uri: str, *, top_k: int = 20, users: str = ALL, keep_versions: int | None = None
) -> Recommended:
    """Rank the catalog with the registered model `model_uri` for every user with plays (or the
    users of table `users`) and commit the top `top_k` per user to gold/recommendations."""
    if top_k < 1:
        raise InputError(f"--top-k must be at least 1, got {top_k}")
    if keep_versions is not None and keep_versions < 1:
        raise InputError(f"--keep-versions must be at least 1 (this run's version), got {keep_versions}")
    if users != ALL and not TABLE_NAME.match(users):
        raise InputError(f"--users {users}: name a lakehouse table (layer/name, e.g. gold/users) or ALL")
    name, version, run_id = registered_version(model_uri, cfg.mlflow.tracking_uri)
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    tables = snapshots(lakehouse, (PLAYS, TRACKS, STATIONS), may_be_empty=(STATIONS,))
    users_version = None if users == ALL else _users_version(lakehouse, users)
    inputs = {
        "model_name": name,
        "model_version": version,
        "history_version": tables[PLAYS].version,
        "tracks_version": tables[TRACKS].version,
        "stations_version": tables[STATIONS].version,
        "top_k": top_k,
        "users": users if users_version is None else f"{users}@{users_version}",
        # which seen tracks are left out (another rule gives other rows)
        "exclude_seen": [cfg.eval.exclude_seen, *cfg.eval.seen_once_sources],
        "keep_versions": keep_versions,
    }
    before = lakehouse.version(TABLE) if lakehouse.exists(TABLE) else None
    if before is not None and _last_run(lakehouse) == inputs:
        log.info("%s version %d already holds this run's rows: nothing to write", TABLE, before)
        return Recommended(inputs, before, written=False)
    request = _Request(
        *(model_uri, name, version, run_id, tables, users, users_version, top_k, inputs, before),
        keep_versions=keep_versions,
        tracking_uri=cfg.mlflow.tracking_uri,
    )
    return _write(cfg, request)


def _write(cfg: Config, request: _Request) -> Recommended:
    """Download the model, rank on the executors, and commit the rows in one transaction."""
    name, version, tables = request.name, request.version, request.tables
    with tempfile.TemporaryDirectory(prefix="downbeat-recommend-") as tmp:
        shipped = Path(tmp) / f"downbeat-model-{version}-{uuid.uuid4().hex[:8]}"
        local = download_model(f"models:/{name}/{version}", shipped)
        metadata = load_metadata(request.model_uri, local)
        check_catalog(request.model_uri, metadata, tables[TRACKS], cfg.lakehouse.root)
        spark = spark_session(cfg.spark, cfg.delta)
        lakehouse = Lakehouse.from_settings(spark, cfg.lakehouse, cfg.delta)
        read = {t: lakehouse.read(t, tables[t].version) for t in (PLAYS, TRACKS, STATIONS)}
        users = (
            None if request.users_version is None else lakehouse.read(request.users, request.users_version)
        )
        width = max(1, int(metadata.get("max_length") or cfg.training_width) - 1)
        histories = user_histories(
            read[PLAYS], read[TRACKS], read[STATIONS], width=width, users=users, seen=seen_excluded(cfg.eval)
        ).persist(StorageLevel.MEMORY_AND_DISK)
        ranked = None
        try:
            n_users = _users_with_history(histories, request, width)
            ranked = _ranked(spark, histories, local, shipped, request.top_k, cfg.train.eval_batch_size)
            step = time.monotonic()
            unserved = ranked.where(~ranked[S.SERVED]).count()
            log.info(
                "ranked %d tracks for %d users with %s version %s: %.0f users/s (%d cannot be served)",
                *(tables[TRACKS].rows, n_users, name, version, n_users / max(time.monotonic() - step, 1e-9)),
                unserved,
            )
            rows = recommendation_rows(
                ranked,
                read[TRACKS],
                model_name=name,
                model_version=version,
                run_id=request.run_id,
                history_version=tables[PLAYS].version,
            )
            dropped: tuple[str, ...] = ()
            if request.before is not None:
                current = lakehouse.read(TABLE, request.before)
                keep, dropped = _kept_versions(current, request)
                rows = replacing(
                    current, rows, model_name=name, model_version=version, users=users, keep_versions=keep
                )
            with lakehouse.transaction() as tx:
                # computed from version `before` (or no table): a commit since is a conflict, exit 2
                tag = {RUN_TAG: json.dumps(request.inputs, sort_keys=True)}
                tx.stage(rows, TABLE, tags=tag, read_version=request.before)
        finally:
            histories.unpersist()
            if ranked is not None:
                ranked.unpersist()
    committed = tx.commits[TABLE].version
    table = lakehouse.read(TABLE, committed)
    new_rows = table.where((table[S.MODEL_NAME] == name) & (table[S.MODEL_VERSION] == version)).count()
    return Recommended(request.inputs, committed, True, n_users - unserved, new_rows, unserved, dropped)


def _kept_versions(current: DataFrame, request: _Request) -> tuple[set[str], tuple[str, ...]]:
    """(the versions of the run's model whose rows stay, the versions whose rows go)."""
    name, mine = request.name, request.version
    versions = current.where(current[S.MODEL_NAME] == name).select(S.MODEL_VERSION).distinct()
    present = {str(r[0]) for r in versions.collect()}
    others = sorted(present - {mine}, key=lambda v: (len(v), v), reverse=True)  # newest first
    if request.keep_versions is not None:
        keep = {mine, *others[: request.keep_versions - 1]}
    else:
        # the newest version's rows (most often this run's) and those of every version with an alias
        newest = max(present | {mine}, key=lambda v: (len(v), v))
        keep = {mine, newest, *aliased_versions(name, request.tracking_uri)}
    dropped = tuple(sorted(present - keep, key=lambda v: (len(v), v)))
    if dropped:
        log.info("dropping the rows of %s version(s) %s from %s", name, ", ".join(dropped), TABLE)
    return keep, dropped


def _users_with_history(histories: DataFrame, request: _Request, width: int) -> int:
    """How many users the run ranks for; bad input when there is none."""
    n_users = histories.count()
    plays = request.tables[PLAYS].version
    log.info("%d users' last %d plays from silver/plays version %d", n_users, width, plays)
    if n_users == 0:
        where = PLAYS if request.users_version is None else f"{request.users} version {request.users_version}"
        raise InputError(
            f"no user to recommend for: {where} has no user with plays in silver/plays version {plays}"
        )
    return n_users


def command(args: argparse.Namespace) -> int:
    started = time.monotonic()
    done = run(
        config_from(args),
        args.model_uri,
        top_k=args.top_k,
        users=args.users,
        keep_versions=args.keep_versions,
    )
    what = f"{done.inputs['model_name']} version {done.inputs['model_version']}"
    if done.written:
        print(
            f"recommend: {TABLE} version {done.version}: top {args.top_k} of {what} for "
            f"{done.served_users} users ({done.unserved_users} the model cannot serve), "
            f"from silver/plays version {done.inputs['history_version']}"
        )
    else:
        print(f"recommend: {TABLE} version {done.version} already holds {what}'s rows for these inputs")
    if args.json:
        print_summary(
            "recommend",
            started,
            written=done.written,
            tables={TABLE: {"version": done.version}},
            served_users=done.served_users,
            unserved_users=done.unserved_users,
            model_rows=done.model_rows,
            dropped_versions=list(done.dropped_versions),
            **done.inputs,
        )
    return 0


def _users_version(lakehouse: Lakehouse, users: str) -> int:
    """The version of the `--users` table to read (bad input unless it exists with a user_id)."""
    if not lakehouse.exists(users):
        raise InputError(f"--users {users}: no such table under {lakehouse.root}")
    version = lakehouse.version(users)
    if S.USER_ID not in lakehouse.schema(users).fieldNames():
        raise InputError(f"--users {users} version {version} has no {S.USER_ID} column")
    return version


def _ranked(
    spark: Any, histories: DataFrame, model: Path, archive: Path, top_k: int, batch_size: int
) -> DataFrame:
    """Each user's top tracks, ranked on the executors by the model in folder `model`, shipped to
    them as one zip, `archive`.zip (unpacked once per executor; addFile takes a folder on local
    masters only)."""
    packed = shutil.make_archive(str(archive), "zip", root_dir=model)
    spark.sparkContext.addArchive(packed)
    name = Path(packed).name
    return histories.mapInPandas(
        lambda frames: rank_partition(frames, shipped=name, top_k=top_k, batch_size=batch_size),
        RANKED,
    ).persist(StorageLevel.MEMORY_AND_DISK)


def _last_run(lakehouse: Lakehouse) -> dict[str, Any] | None:
    """The inputs of the run that made the table's current version (None after any other write)."""
    entries = lakehouse.history(TABLE, limit=1)  # with downbeat's commit keys, whichever engine wrote
    tag = entries[0].get(RUN_TAG) if entries else None
    try:
        return json.loads(tag) if isinstance(tag, str) else None
    except ValueError:
        return None


def main(argv: list[str] | None = None) -> int:
    return job_main("recommend", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
