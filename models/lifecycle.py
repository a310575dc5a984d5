"""One training run from start to registry: train (one process or N ranks), evaluate on the test
tables, log everything to MLflow, register the model, and move `champion` on validation figures.

Plain data in (table snapshots and settings), a TrainResult out; how N ranks are launched is the
caller's (jobs/train.py hands in Spark's TorchDistributor), so this module never imports pyspark.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.data import SequenceFacts, TableSnapshot, read_frame
from models.settings import ModelSettings, TrainSettings
from models.tracking import MlflowSettings
from models.worker import WorkerSpec

log = logging.getLogger("downbeat.train")
SEQUENCES, TRACKS, STATIONS = "gold/sequences", "gold/tracks", "gold/stations"
TRAINING = "gold/training_sequences"
EVAL_PAIRS, EVAL_NEXT = "gold/eval_pairs", "gold/eval_next"
VALIDATION_PAIRS, VALIDATION_NEXT = "gold/validation_pairs", "gold/validation_next"
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
# Sources without stations have none; a tiny log can have no validation pairs (no early stopping then).
MAY_BE_EMPTY = (STATIONS, VALIDATION_PAIRS, VALIDATION_NEXT)

Launcher = Callable[[WorkerSpec, int], dict[str, Any]]
CHILD_TAG = "downbeat.child"  # an experiment child's name under its parent run
FINAL_MODEL = "model.pt"  # {checkpoint_dir}/{run_id}/model.pt: the registered weights


@dataclass(frozen=True)
class TrainRequest:
    """What one run needs: the input snapshots, the settings, and where the run comes from."""

    model_name: str
    tables: dict[str, TableSnapshot]
    facts: SequenceFacts  # of tables["gold/sequences"]
    model: ModelSettings
    train: TrainSettings
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


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]  # test metrics, reported only
    validation: float  # the registered model's validation paired accuracy (what chose it)
    validation_se: float
    champion_moved: bool
    champion_reason: str
    tables: dict[str, int] = field(default_factory=dict)  # the input tables' versions trained on


def steps_per_epoch(train_rows: int, batch_size: int, world: int) -> int:
    return max(1, math.ceil(train_rows / (batch_size * world)))


def train_and_register(request: TrainRequest, launch: Launcher) -> TrainResult:
    """Train, evaluate, log, register; `launch(spec, world)` runs the worker on `world` ranks."""
    import mlflow
    from mlflow.tracking import MlflowClient

    versions = {t: s.version for t, s in request.tables.items()}

    from models.evaluation import evaluate
    from models.network import feedback_cosines
    from models.plots import plot_learning_curves
    from models.serving import DownbeatPyfunc, input_example, load_model, score_frame, signature
    from models.tracking import (
        CANDIDATE,
        PIP_REQUIREMENTS,
        absolute_tracking_uri,
        decide_champion,
        experiment_id,
        metric_name,
    )
    from models.validation import ValidationSet

    started = time.perf_counter()
    tables, settings = request.tables, request.mlflow
    n_tracks, n_stations = tables[TRACKS].rows, tables[STATIONS].rows
    world = request.processes
    steps = steps_per_epoch(request.facts.train_rows, request.train.batch_size, world)
    train_cfg = request.train
    if request.model_name == "baseline":  # the paper's baseline: positives only, random negatives
        train_cfg = dataclasses.replace(train_cfg, p_hard=0.0)

    experiment = experiment_id(settings.tracking_uri, settings.experiment, settings.artifact_root)
    client = MlflowClient(settings.tracking_uri)
    child = request.parent_run is not None
    tags = (
        {"mlflow.parentRunId": str(request.parent_run), CHILD_TAG: str(request.child_name)} if child else None
    )
    with mlflow.start_run(
        run_id=request.resume_run,
        experiment_id=None if request.resume_run else experiment,
        run_name=None if request.resume_run else (request.child_name if child else request.model_name),
        tags=None if request.resume_run else tags,
    ) as active:
        run_id = active.info.run_id
        if request.resume_run is None:
            _log_inputs(request, n_tracks, n_stations, steps, train_cfg)
        checkpoint_dir = Path(request.train.checkpoint_dir).resolve() / run_id
        spec = WorkerSpec(
            model_name=request.model_name,
            n_tracks=n_tracks,
            n_stations=n_stations,
            positive_feedback=request.facts.positive_feedback,
            model=request.model,
            train=train_cfg,
            training_files=tables[TRAINING].files,
            validation_pairs=tables[VALIDATION_PAIRS],
            validation_next=tables[VALIDATION_NEXT],
            steps_per_epoch=steps,
            checkpoint_dir=str(checkpoint_dir),
            device=request.device,
            resume=str(request.resume.resolve()) if request.resume else None,  # ranks may run elsewhere
            tracking_uri=absolute_tracking_uri(settings.tracking_uri),
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
        outcome = launch(spec, world)
        model_path = checkpoint_dir / FINAL_MODEL  # rank 0's final model, wherever it ran
        model_path.parent.mkdir(parents=True, exist_ok=True)
        model_path.write_bytes(outcome["model"])
        model = load_model(str(model_path))
        if model.learns_feedback_embeddings:
            mlflow.log_metrics({f"feedback_cos_{k}": v for k, v in feedback_cosines(model.network).items()})
        validation, validation_se = float(outcome["best"]), float(outcome["best_standard_error"])
        mlflow.log_metrics(
            {
                "best_epoch": float(outcome["best_epoch"]),
                "epochs_run": float(outcome["epochs"]),
                **({"validation_paired_accuracy": validation} if validation == validation else {}),
                **(
                    {"validation_paired_accuracy_se": validation_se} if validation_se == validation_se else {}
                ),
                "validation_users": float(outcome["validation_users"]),
            }
        )
        mlflow.set_tag("downbeat.stopped_early", str(outcome["stopped_early"]))

        # Test figures: computed once, for the record; nothing below chooses by them.
        result = evaluate(
            lambda frame: score_frame(model, frame, batch_size=train_cfg.eval_batch_size),
            read_frame(tables[EVAL_PAIRS]),
            read_frame(tables[EVAL_NEXT]),
            n_tracks,
            chunk=train_cfg.eval_batch_size,
        )
        mlflow.log_metrics({f"test_{metric_name(k)}": v for k, v in result.metrics.items() if v == v})
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(
                str(plot_learning_curves(outcome["history"], Path(tmp) / "learning_curves.png"))
            )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DownbeatPyfunc(),
            artifacts={"checkpoint": str(model_path)},
            signature=signature(),
            input_example=input_example(n_tracks),
            pip_requirements=PIP_REQUIREMENTS,
            metadata={"n_tracks": n_tracks, "n_stations": n_stations, "model": request.model_name},
            registered_model_name=None if child else settings.registered_model,
        )
        if child:
            mlflow.log_metric("wall_seconds", time.perf_counter() - started)
            return TrainResult(
                run_id, "", result.metrics, validation, validation_se, False, "experiment child", versions
            )
        version = str(info.registered_model_version)
        name = settings.registered_model
        client.set_registered_model_alias(name, CANDIDATE, version)
        validation_table = f"{tables[VALIDATION_PAIRS].uri}@{tables[VALIDATION_PAIRS].version}"

        def score_champion(uri: str) -> float:
            champion = mlflow.pyfunc.load_model(uri)  # the same validation scoring as training's
            validation_set = ValidationSet.of(tables[VALIDATION_PAIRS], tables[VALIDATION_NEXT])
            return validation_set.score_with(champion.predict, chunk=train_cfg.eval_batch_size).accuracy

        decision = decide_champion(client, name, version, validation_table, validation, score_champion)
        mlflow.set_tags(
            {
                "downbeat.champion": str(decision.moved),
                "downbeat.champion_reason": decision.reason,
                "downbeat.model_version": version,
            }
        )
        log.info("champion: %s", decision.reason)
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
    return TrainResult(
        run_id, version, result.metrics, validation, validation_se, decision.moved, decision.reason, versions
    )


def _log_inputs(
    request: TrainRequest, n_tracks: int, n_stations: int, steps: int, train_cfg: TrainSettings
) -> None:
    """Parameters, tags, the resolved config and the input tables of a new run."""
    import mlflow

    from models.plots import plot_tier_shares, tier_shares_by_position
    from models.tracking import flatten, git_commit

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
            "effective.p_hard": str(train_cfg.p_hard),
        }
    )
    params.update({f"table.{t}": f"{s.uri}@{s.version}" for t, s in request.tables.items()})
    mlflow.log_params(params)
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
        {t: {"uri": s.uri, "version": s.version, "rows": s.rows} for t, s in request.tables.items()},
        "tables.json",
    )
    facts = request.facts
    with tempfile.TemporaryDirectory() as tmp:
        shares = tier_shares_by_position(facts.tier_where, facts.tier)
        mlflow.log_artifact(str(plot_tier_shares(shares, Path(tmp) / "hard_negative_tiers_by_position.png")))
