"""MLflow: runs, logged models, the registry and its `candidate` / `champion` aliases."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger("downbeat.tracking")
CANDIDATE, CHAMPION = "candidate", "champion"
# The champion gate reads validation figures only: test data never chooses a model.


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
    with kept_logging():
        found = mlflow.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
        return str(mlflow.create_experiment(name, artifact_location=location))


@contextlib.contextmanager
def kept_logging() -> Iterator[None]:
    """Around the first use of an MLflow store: opening a fresh sqlite store migrates its schema
    with alembic, whose logging setup (`logging.config.fileConfig`) replaces the root logger's
    handlers with one bound to the sys.stderr of that moment (a stream that may be closed later)
    and raises the root to WARNING (hiding our progress lines); it may also disable loggers that
    exist already, and turns its own up to INFO. All of it is put back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
        for name, logger in logging.root.manager.loggerDict.items():
            if name.startswith("downbeat") and isinstance(logger, logging.Logger):
                logger.disabled = False
        logging.getLogger("downbeat").setLevel(logging.INFO)
        logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass(frozen=True)
class ChampionDecision:
    moved: bool
    reason: str


ValidationFigure = Literal["val_paired_accuracy", "val_ndcg@10_pos"]


@dataclass(frozen=True)
class RegistrySettings:
    """How the champion gate decides (config section `registry`).

    champion_metric: the validation figure a candidate must equal or beat the champion on (`auto`:
    the figure the candidate's run selected on). guard_metrics: figures on which the candidate may
    not fall below the champion by more than the paired 95% interval of the difference: a model
    that orders pairs better but ranks the catalog worse (what `recommend` serves) does not take over.
    """

    champion_metric: Literal["auto", "val_paired_accuracy", "val_ndcg@10_pos"] = "auto"
    guard_metrics: tuple[ValidationFigure, ...] = ("val_ndcg@10_pos",)
    auto_promote: bool = True  # off: train leaves `champion` alone; `downbeat promote` moves it

    def primary(self, selected_on: str) -> str:
        """The validation figure (models/validation.py name) that decides."""
        return selected_on if self.champion_metric == "auto" else self.champion_metric.removeprefix("val_")

    def guards(self) -> tuple[str, ...]:
        return tuple(g.removeprefix("val_") for g in self.guard_metrics)


PerUser = Mapping[str, tuple[np.ndarray, np.ndarray]]  # figure -> (users, each user's value)


@dataclass(frozen=True)
class PairedDifference:
    """Candidate minus champion over the users both have a value for, with a 95% interval
    (±1.96 standard errors of the per-user differences)."""

    candidate: float
    champion: float
    diff: float
    low: float
    high: float
    users: int

    def __str__(self) -> str:
        return (
            f"{self.candidate:.4f} vs {self.champion:.4f} (difference {self.diff:+.4f}, 95% "
            f"[{self.low:+.4f}, {self.high:+.4f}] over {self.users} users)"
        )


def paired_difference(
    mine: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray]
) -> PairedDifference | None:
    """The paired difference of one figure on the same validation rows; None without common users."""
    users, a_index, b_index = np.intersect1d(mine[0], theirs[0], return_indices=True)
    if not len(users):
        return None
    a, b = mine[1][a_index].astype(np.float64), theirs[1][b_index].astype(np.float64)
    d = a - b
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    mean = float(d.mean())
    return PairedDifference(
        float(a.mean()), float(b.mean()), mean, mean - 1.96 * se, mean + 1.96 * se, len(d)
    )


def _current_champion(client: Any, name: str) -> Any:
    """The version the `champion` alias names, or None when no version holds it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _guards(
    gate: RegistrySettings, primary: str, candidate: PerUser, theirs: PerUser
) -> tuple[str, list[str]]:
    """The first guard figure whose paired interval lies wholly below the champion's ("guard NAME
    difference", or "" when none), and those that held. Figures either side lacks are passed over."""
    held: list[str] = []
    for guard in gate.guards():
        if guard == primary or guard not in candidate or guard not in theirs:
            continue
        difference = paired_difference(candidate[guard], theirs[guard])
        if difference is None:
            continue
        if difference.high < 0:
            return f"guard {guard} {difference}", held
        held.append(f"guard {guard} {difference} held")
    return "", held


def decide_champion(
    client: Any,
    name: str,
    version: str,
    validation: str,
    gate: RegistrySettings,
    selected_on: str,
    candidate: PerUser,
    score_champion: Callable[[str], PerUser],
) -> ChampionDecision:
    """Move `champion` to `version` when, with the current champion re-scored on the same
    validation rows (`validation`: the tables' uri@version, for the record): the candidate's primary
    figure is at least the champion's, and no guard figure is below the champion's by more than its
    paired 95% interval. Sets the alias when it moves; the reason names what decided. Test tables
    play no part."""
    current = _current_champion(client, name)
    if current is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        return ChampionDecision(True, f"no champion yet: version {version} becomes champion")
    if str(current.version) == str(version):
        return ChampionDecision(True, f"version {version} is already champion")
    stays = f"champion stays version {current.version}"
    try:
        theirs = score_champion(f"models:/{name}/{current.version}")
    except Exception as exc:  # a champion that cannot be scored here is kept, and the run says why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ChampionDecision(
            False,
            f"champion version {current.version} could not be scored on {validation} ({first}): "
            "it stays champion",
        )
    primary = gate.primary(selected_on)
    where = f"on {validation}, champion re-scored on the same rows"
    decided = (
        paired_difference(candidate[primary], theirs[primary])
        if primary in candidate and primary in theirs
        else None
    )
    if decided is None:
        return ChampionDecision(False, f"no validation {primary} to compare {where}: {stays}")
    if decided.candidate < decided.champion:
        return ChampionDecision(
            False, f"validation {primary} {decided} {where}: below the champion's; {stays}"
        )
    fallen, held = _guards(gate, primary, candidate, theirs)
    if fallen:
        return ChampionDecision(
            False,
            f"validation {primary} {decided} is at least the champion's, but {fallen} "
            f"falls below it by more than its interval {where}: {stays}",
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    guards = "; " + "; ".join(held) if held else ""
    return ChampionDecision(
        True,
        f"validation {primary} {decided} is at least the champion's{guards} ({where}): "
        f"version {version} becomes champion",
    )
