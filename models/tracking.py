"""MLflow: runs, logged models, the registry and its `candidate` / `champion` aliases."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("downbeat.tracking")
CANDIDATE, CHAMPION = "candidate", "champion"
# The champion gate reads validation figures only: test data never chooses a model.
EVAL_TABLE_PARAM = "table.gold/validation_pairs"
PAIRED_ACCURACY = "validation_paired_accuracy"


@dataclass(frozen=True)
class MlflowSettings:
    """Where runs are tracked and models registered (config section `mlflow`)."""

    tracking_uri: str
    experiment: str
    artifact_root: str
    registered_model: str


def metric_name(name: str) -> str:
    """MLflow metric names cannot hold '@': hr@10_pos -> hr_at_10_pos."""
    return name.replace("@", "_at_")


def flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", str(value)


def git_commit(root: Path) -> str:
    """HEAD of the code's repository, with '-dirty' when tracked files differ; 'unknown' outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def absolute_tracking_uri(uri: str) -> str:
    """The same store named from anywhere: a relative sqlite file or folder resolved against the cwd
    (a rank on a Spark executor runs in another folder)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    if "://" not in uri and ":" not in uri:
        return Path(uri).resolve().as_uri()
    return uri


def experiment_id(tracking_uri: str, name: str, artifact_root: str) -> str:
    """The experiment's id, creating it (with its artifact location) when absent."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
        return str(mlflow.create_experiment(name, artifact_location=location))
    finally:
        restore_logging()


def restore_logging() -> None:
    """MLflow's sqlite store migrates its schema with alembic, whose logging setup raises the root
    logger to WARNING (hiding our progress lines), may disable loggers that exist already, and
    turns its own up to INFO: undo all three."""
    for logger_name, logger in logging.root.manager.loggerDict.items():
        if logger_name.startswith("downbeat") and isinstance(logger, logging.Logger):
            logger.disabled = False
    logging.getLogger("downbeat").setLevel(logging.INFO)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ChampionDecision:
    moved: bool
    reason: str


def decide_champion(
    client: Any,
    name: str,
    version: str,
    eval_table: str,
    accuracy: float,
    score_champion: Callable[[str], float],
) -> ChampionDecision:
    """Move `champion` to `version` when its validation paired accuracy on `eval_table`
    (gold/validation_pairs uri@version) is at least the current champion's on the same table
    version; re-scores the champion when its run was validated on another table version. Sets the
    alias when it moves. Test tables play no part."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        return ChampionDecision(True, f"no champion yet: version {version} becomes champion")
    if str(current.version) == str(version):
        return ChampionDecision(True, f"version {version} is already champion")
    run = client.get_run(current.run_id)
    theirs = run.data.metrics.get(PAIRED_ACCURACY)
    if run.data.params.get(EVAL_TABLE_PARAM) != eval_table or theirs is None:
        try:
            theirs = score_champion(f"models:/{name}/{current.version}")
        except Exception as exc:  # a champion that cannot be scored here is kept, and the run says why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return ChampionDecision(
                False,
                f"champion version {current.version} could not be scored on {eval_table} ({first}): "
                "it stays champion",
            )
        how = f"re-scored on {eval_table}"
    else:
        how = f"on {eval_table}"
    if accuracy != accuracy:  # NaN: no validation pairs, nothing to compare on
        return ChampionDecision(
            False, f"no validation figure on {eval_table}: champion stays version {current.version}"
        )
    if accuracy >= theirs or theirs != theirs:
        client.set_registered_model_alias(name, CHAMPION, version)
        return ChampionDecision(
            True,
            f"validation paired accuracy {accuracy:.4f} >= champion version {current.version}'s "
            f"{theirs:.4f} ({how}): version {version} becomes champion",
        )
    return ChampionDecision(
        False,
        f"validation paired accuracy {accuracy:.4f} < champion version {current.version}'s "
        f"{theirs:.4f} ({how}): champion stays version {current.version}",
    )
