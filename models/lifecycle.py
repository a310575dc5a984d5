"""One training run from start to registry: train (one process or N ranks), evaluate on the test
tables, log everything to MLflow, register the model, and move `champion` on validation figures.

Plain data in (table snapshots and settings), a TrainResult out; how N ranks are launched is the
caller's (jobs/train.py hands in Spark's TorchDistributor), so this module never imports pyspark.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from downbeat.models.contract import Tables
from downbeat.models.data import SequenceFacts, TableSnapshot, read_frame
from downbeat.models.settings import OptimSettings, RunSettings
from downbeat.models.tracking import MlflowSettings, RegistrySettings, kept_logging, metric_name
from downbeat.models.worker import WorkerSpec, count_worker, popularity_floor
from downbeat.models.zoo import ModelSettings, learns_by_gradient, objective_of, own_settings

log = logging.getLogger("downbeat.train")
SEQUENCES, TRACKS, STATIONS = Tables.SEQUENCES, Tables.TRACKS, Tables.STATIONS
TRAINING = Tables.TRAINING_SEQUENCES
EVAL_PAIRS, EVAL_NEXT = Tables.EVAL_PAIRS, Tables.EVAL_NEXT
VALIDATION_PAIRS, VALIDATION_NEXT = Tables.VALIDATION_PAIRS, Tables.VALIDATION_NEXT
INPUT_TABLES = (
    SEQUENCES,
    TRAINING,
    EVAL_PAIRS,
    EVAL_NEXT,
    VALIDATION_PAIRS,
    VALIDATION_NEXT,
    TRACKS,
    STATIONS,
)
# Sources without stations have none; a tiny log can have no validation pairs (no early stopping
# then); leave-one-out has one target per user, so no pairs at all.
MAY_BE_EMPTY = (STATIONS, VALIDATION_PAIRS, VALIDATION_NEXT, EVAL_PAIRS)

Launcher = Callable[[WorkerSpec, int], dict[str, Any]]
CHILD_TAG = "downbeat.child"  # an experiment child's name under its parent run
FINAL_MODEL = "model.pt"  # {checkpoint_dir}/{run_id}/model.pt: the registered weights
TEST_BOOTSTRAP = 1000  # resamples of users behind the test figures' 95% intervals (for the record)
# The test figures a version's description gives, with their intervals.
DESCRIBED = ("paired_accuracy", "auc", "hr@10_pos", "hr@10_neg", "ndcg@10_pos", "map@10", "coverage")
SELECTED_TAG = "downbeat.selected_on"  # the validation figure a run stopped on and kept its epoch by


@dataclass(frozen=True)
class TrainRequest:
    """What one run needs: the input snapshots, the settings, and where the run comes from."""

    model_name: str
    tables: dict[str, TableSnapshot]
    facts: SequenceFacts  # of tables[Tables.SEQUENCES]
    model: ModelSettings
    train: RunSettings
    optim: OptimSettings
    mlflow: MlflowSettings
    config: dict[str, Any]  # the resolved configuration, logged and stored in checkpoints
    config_yaml: str
    processes: int
    device: str  # cpu | cuda
    code_root: Path
    resume: Path | None = None
    resume_run: str | None = None
    # An experiment's child run: its parent's run id and its name there. A child logs its model but
    # neither registers it nor touches the aliases (an experiment never moves the champion).
    parent_run: str | None = None
    child_name: str | None = None
    registry: RegistrySettings = field(default_factory=RegistrySettings)  # how the champion gate decides


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]  # test metrics, reported only
    validation: float  # the registered model's validation figure (what chose its epoch)
    validation_se: float
    champion_moved: bool
    champion_reason: str
    tables: dict[str, int] = field(default_factory=dict)  # the input tables' versions trained on
    selected_on: str = "paired_accuracy"  # which validation figure `validation` is


def steps_per_epoch(train_rows: int, batch_size: int, world: int) -> int:
    return max(1, math.ceil(train_rows / (batch_size * world)))


def effective_settings(request: TrainRequest, steps: int) -> TrainRequest:
    """The settings a run trains with: warm-up at most one epoch (`steps` a rank's steps per epoch:
    a short epoch must not leave a run in warm-up for epochs); the baseline draws random negatives
    only (the paper's baseline: p_hard 0)."""
    optim = dataclasses.replace(request.optim, warmup_steps=min(request.optim.warmup_steps, steps))
    model = request.model
    if request.model_name == "baseline":
        model = dataclasses.replace(model, hybrid=dataclasses.replace(model.hybrid, p_hard=0.0))
    return dataclasses.replace(request, model=model, optim=optim)


def train_and_register(request: TrainRequest, launch: Launcher) -> TrainResult:
    """Train, evaluate, log, register; `launch(spec, world)` runs the worker on `world` ranks."""
    import mlflow

    from downbeat.models.plots import plot_learning_curves

    started = time.perf_counter()
    versions = {t: s.version for t, s in request.tables.items()}
    steps = steps_per_epoch(request.facts.train_rows, request.train.batch_size, request.processes)
    request = effective_settings(request, steps)
    with _started_run(request) as active:
        run_id = active.info.run_id
        if request.resume_run is None:
            n_tracks, n_stations = request.tables[TRACKS].rows, request.tables[STATIONS].rows
            _log_inputs(request, n_tracks, n_stations, steps)
        model_path, model, outcome = _train(request, launch, run_id, steps)
        selected_on, validation, validation_se = _log_validation(model, outcome)
        # Test figures: computed once, for the record; nothing below chooses by them.
        metrics = _log_test_figures(model, request.tables, request.train.eval_batch_size)
        with tempfile.TemporaryDirectory() as tmp:
            curves = Path(tmp) / "learning_curves.png"
            mlflow.log_artifact(str(plot_learning_curves(outcome["history"], curves, selected_on)))
        child = request.parent_run is not None
        info = log_scoring_model(
            model_path,
            model,
            request.tables[TRACKS],
            request.tables[STATIONS].rows,
            registered_model_name=None if child else request.mlflow.registered_model,
        )
        if child:
            version, moved, reason = "", False, "experiment child"
        else:
            version = str(info.registered_model_version)
            moved, reason = _register_and_choose(request, version, model, outcome, metrics)
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
    return TrainResult(
        run_id, version, metrics, validation, validation_se, moved, reason, versions, selected_on
    )


@contextlib.contextmanager
def _started_run(request: TrainRequest) -> Iterator[Any]:
    """The run's MLflow context: a new run (an experiment's child under its parent), or the run
    a resumed checkpoint belongs to. A run that an exception or a signal ends is FAILED, checked
    after mlflow's own end of it: under load a SIGTERM during an epoch left one RUNNING."""
    active = _new_run(request)
    try:
        with active:
            yield active
    except BaseException:
        _ensure_ended(active.info.run_id)
        raise


def _ensure_ended(run_id: str) -> None:
    """End the run as FAILED if it is still RUNNING (mlflow's end_run did not get through)."""
    from mlflow.tracking import MlflowClient

    for attempt in range(3):
        try:
            client = MlflowClient()
            if client.get_run(run_id).info.status != "RUNNING":
                return
            client.set_terminated(run_id, status="FAILED")
            log.warning("MLflow run %s was still RUNNING after it failed: ended as FAILED", run_id)
            return
        except Exception as exc:  # the store was busy: try again
            if attempt == 2:
                log.warning("MLflow run %s may be left RUNNING: %s", run_id, str(exc).strip()[:200])
            else:
                time.sleep(1.0)


def _new_run(request: TrainRequest) -> Any:
    import mlflow

    from downbeat.models.tracking import experiment_id

    settings = request.mlflow
    experiment = experiment_id(settings.tracking_uri, settings.experiment, settings.artifact_root)
    child = request.parent_run is not None
    tags = (
        {"mlflow.parentRunId": str(request.parent_run), CHILD_TAG: str(request.child_name)} if child else None
    )
    return mlflow.start_run(
        run_id=request.resume_run,
        experiment_id=None if request.resume_run else experiment,
        run_name=None if request.resume_run else (request.child_name if child else request.model_name),
        tags=None if request.resume_run else tags,
    )


def checkpoint_folder(train: RunSettings, run_id: str) -> Path:
    """Where run `run_id` writes its epoch-NNN.pt checkpoints and its final model.pt."""
    return Path(train.checkpoint_dir).resolve() / run_id


def _train(
    request: TrainRequest, launch: Launcher, run_id: str, steps: int
) -> tuple[Path, Any, dict[str, Any]]:
    """The worker on `request.processes` ranks (a counting model in one pass here): the final
    model's file, the model loaded from it, and the worker's outcome (best epoch, history, ...)."""
    from downbeat.models.serving import load_model
    from downbeat.models.tracking import absolute_tracking_uri

    tables, world = request.tables, request.processes
    checkpoint_dir = checkpoint_folder(request.train, run_id)
    spec = WorkerSpec(
        model_name=request.model_name,
        n_tracks=tables[TRACKS].rows,
        n_stations=tables[STATIONS].rows,
        positive_feedback=request.facts.positive_feedback,
        model=request.model,
        train=request.train,
        optim=request.optim,
        training_files=tables[TRAINING].files,
        validation_pairs=tables[VALIDATION_PAIRS],
        validation_next=tables[VALIDATION_NEXT],
        steps_per_epoch=steps,
        checkpoint_dir=str(checkpoint_dir),
        device=request.device,
        resume=str(request.resume.resolve()) if request.resume else None,  # ranks may run elsewhere
        tracking_uri=absolute_tracking_uri(request.mlflow.tracking_uri),
        run_id=run_id,
        config=request.config,
    )
    log.info(
        "training %s: %d train rows, %d steps per epoch, %d process(es) on %s",
        request.model_name,
        request.facts.train_rows,
        steps,
        world,
        request.device,
    )
    # a counting model (popularity) is fit in one pass here; the others by gradient steps on `world`
    # ranks, beside popularity's figures on their validation rows (the floor their log prints)
    if learns_by_gradient(request.model_name):
        outcome = launch(dataclasses.replace(spec, floor=popularity_floor(spec)), world)
    else:
        outcome = count_worker(spec)
    model_path = checkpoint_dir / FINAL_MODEL  # rank 0's final model, wherever it ran
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(outcome["model"])
    return model_path, load_model(str(model_path)), outcome


def _log_validation(model: Any, outcome: dict[str, Any]) -> tuple[str, float, float]:
    """The run's validation figures and how it stopped, logged: (selected_on, figure, its SE)."""
    import mlflow

    from downbeat.models.network import feedback_cosines

    if model.learns_feedback_embeddings:
        mlflow.log_metrics({f"feedback_cos_{k}": v for k, v in feedback_cosines(model.network).items()})
    validation, validation_se = float(outcome["best"]), float(outcome["best_standard_error"])
    selected_on = str(outcome["selected_on"])
    figure = f"validation_{metric_name(selected_on)}"
    mlflow.log_metrics(
        {
            "best_epoch": float(outcome["best_epoch"]),
            "epochs_run": float(outcome["epochs"]),
            **({figure: validation} if validation == validation else {}),
            **({f"{figure}_se": validation_se} if validation_se == validation_se else {}),
            "validation_users": float(outcome["validation_users"]),
        }
    )
    mlflow.set_tags({"downbeat.stopped_early": str(outcome["stopped_early"]), SELECTED_TAG: selected_on})
    return selected_on, validation, validation_se


def _log_test_figures(model: Any, tables: dict[str, TableSnapshot], eval_batch_size: int) -> dict[str, float]:
    """The test tables' figures with their intervals (test_metrics.json; the point figures also as
    metrics: more metric keys would push a resumed run past mlflow 3.6's 100-key batch in its
    duplicate-metric handling)."""
    import mlflow

    from downbeat.models.evaluation import evaluate
    from downbeat.models.serving import score_frame

    result = evaluate(
        lambda frame: score_frame(model, frame, batch_size=eval_batch_size),
        read_frame(tables[EVAL_PAIRS]),
        read_frame(tables[EVAL_NEXT]),
        tables[TRACKS].rows,
        chunk=eval_batch_size,
        bootstrap=TEST_BOOTSTRAP,
    )
    mlflow.log_metrics(
        {f"test_{metric_name(k)}": v for k, v in result.metrics.items() if v == v and not _interval(k)}
    )
    mlflow.log_dict({k: (None if v != v else v) for k, v in result.metrics.items()}, "test_metrics.json")
    return result.metrics


def _gate(
    request: TrainRequest, client: Any, version: str, model: Any, selected_on: str, validation_table: str
) -> Any:
    """The champion gate's decision on the new version (it moves the alias when it passes), or,
    with registry.auto_promote off, a decision that leaves it to `downbeat promote`."""
    import mlflow

    from downbeat.models.serving import score_frame
    from downbeat.models.tracking import ChampionDecision, decide_champion
    from downbeat.models.validation import ValidationSet

    name, tables, batch = request.mlflow.registered_model, request.tables, request.train.eval_batch_size
    if not request.registry.auto_promote:  # the gate's scoring is promote's work then
        return ChampionDecision(
            False,
            f"registry.auto_promote is off: version {version} is candidate; "
            f"`downbeat promote --version {version} --alias champion` applies the gate and moves it",
        )
    validation_set = ValidationSet.of(tables[VALIDATION_PAIRS], tables[VALIDATION_NEXT], tables[TRACKS].rows)

    def score_champion(uri: str) -> dict[str, Any]:
        champion = mlflow.pyfunc.load_model(uri)  # scored on exactly the candidate's rows
        return validation_set.per_user(champion.predict, chunk=batch)

    mine = validation_set.per_user(lambda frame: score_frame(model, frame, batch_size=batch), chunk=batch)
    return decide_champion(
        client, name, version, validation_table, request.registry, selected_on, mine, score_champion
    )


def _register_and_choose(
    request: TrainRequest,
    version: str,
    model: Any,
    outcome: dict[str, Any],
    metrics: dict[str, float],
) -> tuple[bool, str]:
    """The new version takes `candidate`, and `champion` when the gate lets it (the current
    champion re-scored on the same validation rows); its description says which figure decided."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from downbeat.models.tracking import CANDIDATE

    tables, name = request.tables, request.mlflow.registered_model
    client = MlflowClient(request.mlflow.tracking_uri)
    client.set_registered_model_alias(name, CANDIDATE, version)
    validation_table = " and ".join(
        f"{tables[t].uri}@{tables[t].version}" for t in (VALIDATION_PAIRS, VALIDATION_NEXT)
    )
    selected_on = str(outcome["selected_on"])
    decision = _gate(request, client, version, model, selected_on, validation_table)
    tags = {"downbeat.champion": str(decision.moved), "downbeat.champion_reason": decision.reason}
    mlflow.set_tags({**tags, "downbeat.model_version": version})
    log.info("champion: %s", decision.reason)
    figure, figure_se = float(outcome["best"]), float(outcome["best_standard_error"])
    describe_version(
        client,
        name,
        version,
        model_name=request.model_name,
        settings=own_settings(request.model_name, request.model),
        tables=request.tables,
        validation=(selected_on, figure, figure_se, validation_table),
        test=metrics,
        decision=(decision.moved, decision.reason),
    )
    return decision.moved, decision.reason


def _log_inputs(request: TrainRequest, n_tracks: int, n_stations: int, steps: int) -> None:
    """Parameters, tags, the resolved config and the input tables of a new run."""
    import mlflow

    from downbeat.models.plots import plot_tier_shares, tier_shares_by_position
    from downbeat.models.redaction import redact_text
    from downbeat.models.tracking import flatten, git_commit

    params = dict(flatten(request.config))
    params.pop("source_files", None)
    params.update(
        {
            "model": request.model_name,
            "processes": str(request.processes),
            "device": request.device,
            "steps_per_epoch": str(steps),
            "train_rows": str(request.facts.train_rows),
            "n_tracks": str(n_tracks),
            "n_stations": str(n_stations),
            "positive_feedback": ",".join(map(str, request.facts.positive_feedback)),
            "effective.p_hard": str(request.model.hybrid.p_hard),
            "effective.warmup_steps": str(request.optim.warmup_steps),
        }
    )
    params.update({f"table.{t}": f"{s.uri}@{s.version}" for t, s in request.tables.items()})
    mlflow.log_params({k: redact_text(v) for k, v in params.items()})
    commit = git_commit(request.code_root)
    mlflow.set_tags(
        {
            "mlflow.source.git.commit": commit,
            "downbeat.git_commit": commit,
            "downbeat.model": request.model_name,
        }
    )
    mlflow.log_text(request.config_yaml, "config.yaml")
    mlflow.log_dict(
        {
            t: {"uri": redact_text(s.uri), "version": s.version, "rows": s.rows}
            for t, s in request.tables.items()
        },
        "tables.json",
    )
    facts = request.facts
    with tempfile.TemporaryDirectory() as tmp:
        shares = tier_shares_by_position(facts.tier_where, facts.tier)
        mlflow.log_artifact(str(plot_tier_shares(shares, Path(tmp) / "hard_negative_tiers_by_position.png")))


def _interval(key: str) -> bool:
    return key.endswith(("_ci_low", "_ci_high"))


def log_scoring_model(
    model_path: Path,
    model: Any,
    tracks: TableSnapshot,
    n_stations: int,
    *,
    registered_model_name: str | None,
) -> Any:
    """Log the weights at `model_path` as the run's pyfunc `model` (registering it when a name is
    given): the model's own code travels with it (`code_paths`: downbeat/models), it pins
    public packages only, and its metadata names the catalog it scores (gold/tracks' version, size
    and fingerprint), which evaluate and recommend check before they score."""
    import mlflow

    from downbeat.models.serving import (
        PIP_REQUIREMENTS,
        DownbeatPyfunc,
        carried_code,
        input_example,
        signature,
        tracks_fingerprint,
    )

    # registering opens the registry's store, whose first open in a process migrates it (kept_logging)
    with tempfile.TemporaryDirectory() as code, kept_logging():
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=DownbeatPyfunc(),
            artifacts={"checkpoint": str(model_path)},
            code_paths=carried_code(Path(code)),
            signature=signature(),
            input_example=input_example(tracks.rows),
            pip_requirements=PIP_REQUIREMENTS,
            metadata={
                "n_tracks": tracks.rows,
                "n_stations": n_stations,
                "model": model.name,
                "max_length": model.network.settings.max_length,
                "catalog": tracks_fingerprint(tracks),
                "tracks_version": tracks.version,
            },
            registered_model_name=registered_model_name,
        )


def _validation_line(selected_on: str, accuracy: float, se: float, validation_table: str) -> str:
    if accuracy != accuracy:
        return f"Validation {selected_on}: none ({validation_table} has no rows for it)"
    # a share (paired accuracy, NDCG): its interval stays within [0, 1]
    low, high = max(0.0, accuracy - 1.96 * se), min(1.0, accuracy + 1.96 * se)
    return (
        f"Validation {selected_on} (chose the epoch): {accuracy:.4f} "
        f"[{low:.4f}, {high:.4f}] (95%, ±1.96 standard errors across users, within [0, 1]) "
        f"on {validation_table}"
    )


def _test_line(test: dict[str, float], tables: dict[str, TableSnapshot]) -> str:
    figures = []
    for key in DESCRIBED:
        value = test.get(key, float("nan"))
        if value != value:
            continue
        low, high = test.get(f"{key}_ci_low", float("nan")), test.get(f"{key}_ci_high", float("nan"))
        interval = f" [{low:.4f}, {high:.4f}]" if low == low and high == high else ""
        figures.append(f"{key} {value:.4f}{interval}")
    pairs, next_ = tables.get(EVAL_PAIRS), tables.get(EVAL_NEXT)
    where = " and ".join(f"{s.table}@{s.version}" for s in (pairs, next_) if s is not None)
    return (
        f"Test (reported only, never chooses; 95% intervals from {TEST_BOOTSTRAP} resamples of users) "
        f"on {where}: " + "; ".join(figures)
    )


def describe_version(
    client: Any,
    name: str,
    version: str,
    *,
    model_name: str,
    settings: Any,
    tables: dict[str, TableSnapshot],
    validation: tuple[str, float, float, str],
    test: dict[str, float],
    decision: tuple[bool, str],
) -> None:
    """What a consumer of the registry reads of a version: a description (the model, its objective,
    the table versions it trained and was scored on, validation and test figures with 95%
    intervals) and tags for the champion decision."""
    selected_on, accuracy, se, validation_table = validation
    own = {} if settings is None else dataclasses.asdict(settings)
    knobs = ", ".join(f"{k}={v}" for k, v in own.items())
    lines = [
        f"downbeat {model_name}; objective: {objective_of(model_name)}" + (f" ({knobs})" if knobs else ""),
        "",
        "Trained on: " + ", ".join(f"{t}@{s.version}" for t, s in sorted(tables.items())),
    ]
    lines.append(_validation_line(selected_on, accuracy, se, validation_table))
    lines.append(_test_line(test, tables))
    moved, reason = decision
    lines += ["", f"Champion decision: {reason}"]
    client.update_model_version(name, version, description="\n".join(lines))
    tags = {
        "downbeat.model": model_name,
        "downbeat.champion": str(moved),
        "downbeat.champion_reason": reason,
        "downbeat.validation_table": validation_table,
        SELECTED_TAG: selected_on,
    }
    if accuracy == accuracy:
        tags[f"downbeat.validation_{metric_name(selected_on)}"] = f"{accuracy:.6f}"
        tags[f"downbeat.validation_{metric_name(selected_on)}_se"] = f"{se:.6f}"
    for key, text in tags.items():
        client.set_model_version_tag(name, version, key, text)
