"""`downbeat train --model {baseline,hybrid,sasrec} [--processes N] [--resume CHECKPOINT]`.

Reads the current snapshots of the gold tables, trains (N > 1: N DDP processes through Spark's
TorchDistributor), evaluates on gold/eval_pairs and gold/eval_next, logs everything to one MLflow
run, registers the model (alias `candidate`; `champion` when it is at least as good) and prints
the run id as the last line of standard output.
Also runnable as `spark-submit jobs/train.py --model hybrid`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.common import config_from, job_main
from jobs.config import PROJECT_ROOT, Config, to_yaml
from models.settings import MODEL_NAMES
from pipelines.errors import InputError
from pipelines.lakehouse import Lakehouse

log = logging.getLogger("downbeat.train")
INPUT_TABLES = ("gold/sequences", "gold/eval_pairs", "gold/eval_next", "gold/tracks", "gold/stations")
MAY_BE_EMPTY = ("gold/stations",)  # sources without stations have none


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_version: str
    metrics: dict[str, float]
    champion_moved: bool
    champion_reason: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, choices=MODEL_NAMES, help="architecture to train")
    parser.add_argument(
        "--processes", type=int, default=None, metavar="N", help="DDP processes (default: train.processes)"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="CHECKPOINT",
        help="continue from a checkpoint file (or the newest in a run's checkpoint folder), in the same run",
    )


def command(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    result = run(cfg, args.model, processes=args.processes, resume=args.resume)
    print(f"test metrics: {json.dumps({k: round(v, 4) for k, v in result.metrics.items()})}")
    print(f"registered {cfg.mlflow.registered_model} version {result.model_version} (alias candidate)")
    print(f"champion: {result.champion_reason}")
    print(result.run_id)
    return 0


def snapshots(lakehouse: Lakehouse) -> dict[str, Any]:
    """The current snapshot of every input table; missing or empty ones are bad input (exit 2)."""
    from models.data import TableSnapshot

    out = {}
    for table in INPUT_TABLES:
        if not lakehouse.exists(table):
            raise InputError(
                f"table {table} does not exist under {lakehouse.root}: run `downbeat build` first"
            )
        version, files, rows = lakehouse.snapshot(table)
        if rows is None:
            raise InputError(f"table {table} version {version} has data files without row counts in its log")
        if rows == 0 and table not in MAY_BE_EMPTY:
            raise InputError(f"table {table} version {version} is empty: nothing to train or evaluate on")
        out[table] = TableSnapshot(table, lakehouse.uri(table), version, tuple(files), rows)
    return out


def device_of(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise InputError("config key 'train.device' is 'cuda' but torch sees no CUDA device")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def run(
    cfg: Config, model_name: str, *, processes: int | None = None, resume: str | None = None
) -> TrainResult:
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from models.data import read_table, sequence_facts
    from models.evaluation import evaluate, pair_predictions
    from models.metrics import paired_accuracy
    from models.plots import plot_learning_curves, plot_tier_shares, tier_shares_by_position
    from models.serving import DownbeatPyfunc, input_example, load_model, score_frame, signature
    from models.tracking import (
        CANDIDATE,
        PIP_REQUIREMENTS,
        decide_champion,
        experiment_id,
        flatten,
        git_commit,
        metric_name,
    )
    from models.train import latest_checkpoint
    from models.worker import WorkerSpec

    started = time.perf_counter()
    world = processes if processes is not None else cfg.train.processes
    if world < 1:
        raise InputError(f"--processes must be at least 1, got {world}")
    device = device_of(cfg.train.device)
    if device == "cuda" and world > torch.cuda.device_count():
        raise InputError(f"--processes {world} needs {world} GPUs; torch sees {torch.cuda.device_count()}")
    resume_path: Path | None = None
    resume_run: str | None = None
    if resume is not None:
        try:
            resume_path = latest_checkpoint(Path(resume))
        except FileNotFoundError as exc:
            raise InputError(f"--resume {resume}: {exc}") from None
        saved = torch.load(resume_path, map_location="cpu", weights_only=False)
        if saved.get("model_name") != model_name:
            raise InputError(
                f"--resume {resume_path} holds a {saved.get('model_name')} model, not {model_name}"
            )
        resume_run = saved.get("run_id")

    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    tables = snapshots(lakehouse)
    sequences = tables["gold/sequences"]
    facts = sequence_facts(sequences)
    train_rows, positive_feedback = facts.train_rows, facts.positive_feedback
    if train_rows == 0:
        raise InputError(
            f"table gold/sequences version {sequences.version} has no train rows "
            "(users with a positive before the cut-off): nothing to train on"
        )
    n_tracks, n_stations = tables["gold/tracks"].rows, tables["gold/stations"].rows
    if n_tracks < 2:
        raise InputError(
            f"table gold/tracks version {tables['gold/tracks'].version} has {n_tracks} track(s): need 2"
        )
    steps = max(1, math.ceil(train_rows / (cfg.train.batch_size * world)))
    train_cfg = cfg.train
    if model_name == "baseline":  # the paper's baseline: positives only, random negatives
        train_cfg = dataclasses.replace(train_cfg, p_hard=0.0)

    experiment = experiment_id(cfg.mlflow.tracking_uri, cfg.mlflow.experiment, cfg.mlflow.artifact_root)
    client = MlflowClient(cfg.mlflow.tracking_uri)
    with mlflow.start_run(
        run_id=resume_run,
        experiment_id=None if resume_run else experiment,
        run_name=None if resume_run else model_name,
    ) as active:
        run_id = active.info.run_id
        if resume_run is None:
            params = dict(flatten(dataclasses.asdict(cfg)))
            params.pop("source_files", None)
            params.update(
                {
                    "model": model_name,
                    "processes": str(world),
                    "device": device,
                    "steps_per_epoch": str(steps),
                    "train_rows": str(train_rows),
                    "n_tracks": str(n_tracks),
                    "n_stations": str(n_stations),
                    "positive_feedback": ",".join(map(str, positive_feedback)),
                    "effective.p_hard": str(train_cfg.p_hard),
                }
            )
            params.update({f"table.{t}": f"{s.uri}@{s.version}" for t, s in tables.items()})
            mlflow.log_params(params)
            commit = git_commit(PROJECT_ROOT)
            mlflow.set_tags(
                {
                    "mlflow.source.git.commit": commit,
                    "downbeat.git_commit": commit,
                    "downbeat.model": model_name,
                }
            )
            mlflow.log_text(to_yaml(cfg), "config.yaml")
            mlflow.log_dict(
                {t: {"uri": s.uri, "version": s.version, "rows": s.rows} for t, s in tables.items()},
                "tables.json",
            )
            with tempfile.TemporaryDirectory() as tmp:
                shares = tier_shares_by_position(facts.tier_where, facts.tier)
                mlflow.log_artifact(
                    str(plot_tier_shares(shares, Path(tmp) / "hard_negative_tiers_by_position.png"))
                )
        checkpoint_dir = Path(cfg.train.checkpoint_dir).resolve() / run_id
        spec = WorkerSpec(
            model_name=model_name,
            n_tracks=n_tracks,
            n_stations=n_stations,
            positive_feedback=positive_feedback,
            model=cfg.model,
            train=train_cfg,
            sequence_files=sequences.files,
            steps_per_epoch=steps,
            checkpoint_dir=str(checkpoint_dir),
            device=device,
            resume=str(resume_path) if resume_path else None,
            tracking_uri=cfg.mlflow.tracking_uri,
            run_id=run_id,
            config=json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
        )
        log.info(
            "training %s: %d train rows, %d steps per epoch, %d process(es) on %s",
            model_name,
            train_rows,
            steps,
            world,
            device,
        )
        outcome = _launch(spec, world, device == "cuda", cfg)
        model = load_model(outcome["model_path"])
        mlflow.log_metrics(
            {"best_epoch": float(outcome["best_epoch"]), "epochs_run": float(outcome["epochs"])}
        )
        mlflow.set_tag("downbeat.stopped_early", str(outcome["stopped_early"]))

        pairs = read_table(tables["gold/eval_pairs"]).to_pandas()
        next_rows = read_table(tables["gold/eval_next"]).to_pandas()
        result = evaluate(
            lambda frame: score_frame(model, frame, batch_size=cfg.train.eval_batch_size),
            pairs,
            next_rows,
            n_tracks,
            chunk=cfg.train.eval_batch_size,
        )
        test = {f"test_{metric_name(k)}": v for k, v in result.metrics.items() if v == v}
        mlflow.log_metrics(test)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(
                str(plot_learning_curves(outcome["history"], Path(tmp) / "learning_curves.png"))
            )
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=DownbeatPyfunc(),
            artifacts={"checkpoint": outcome["model_path"]},
            signature=signature(),
            input_example=input_example(n_tracks),
            pip_requirements=PIP_REQUIREMENTS,
            metadata={"n_tracks": n_tracks, "n_stations": n_stations, "model": model_name},
            registered_model_name=cfg.mlflow.registered_model,
        )
        version = str(info.registered_model_version)
        name = cfg.mlflow.registered_model
        client.set_registered_model_alias(name, CANDIDATE, version)
        eval_table = f"{tables['gold/eval_pairs'].uri}@{tables['gold/eval_pairs'].version}"

        def score_champion(uri: str) -> float:
            champion = mlflow.pyfunc.load_model(uri)  # only its pairs are needed: no catalog ranking
            scored = pair_predictions(champion.predict, pairs, next_rows, chunk=cfg.train.eval_batch_size)
            return paired_accuracy(scored["up_score"].to_numpy(), scored["down_score"].to_numpy())

        decision = decide_champion(
            client, name, version, eval_table, result.metrics["paired_accuracy"], score_champion
        )
        mlflow.set_tags(
            {
                "downbeat.champion": str(decision.moved),
                "downbeat.champion_reason": decision.reason,
                "downbeat.model_version": version,
            }
        )
        log.info("champion: %s", decision.reason)
        mlflow.log_metric("wall_seconds", time.perf_counter() - started)
    return TrainResult(run_id, version, result.metrics, decision.moved, decision.reason)


def _launch(spec: Any, world: int, cuda: bool, cfg: Config) -> dict[str, Any]:
    """Run the worker in this process (one process) or on N ranks through TorchDistributor."""
    from models.worker import train_worker

    if world == 1:
        return train_worker(spec)
    from pyspark.ml.torch.distributor import TorchDistributor

    from pipelines.spark import spark_session

    spark_session(cfg.spark, cfg.delta)
    output = TorchDistributor(num_processes=world, local_mode=True, use_gpu=cuda).run(train_worker, spec)
    if not isinstance(output, dict) or "model_path" not in output:
        raise RuntimeError(f"TorchDistributor returned {type(output).__name__}, not rank 0's result")
    return output


def main(argv: list[str] | None = None) -> int:
    return job_main("train", __doc__.splitlines()[0] if __doc__ else None, command, add_arguments, argv)


if __name__ == "__main__":
    sys.exit(main())
