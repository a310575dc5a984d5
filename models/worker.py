"""One training process: the function TorchDistributor runs on every rank (or the driver runs once).

It streams its own shard of gold/training_sequences (models/loader.py), trains under DDP when
there are several ranks (gloo on CPU, NCCL on GPU), reduces metrics across ranks, and only rank 0
writes checkpoints and talks to MLflow. Rank 0 hands the final model back as bytes, so the caller
gets it wherever the rank ran (on a Spark executor, its disk is not the driver's).
"""

from __future__ import annotations

import datetime
import io
import logging
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from downbeat.models import checkpoint
from downbeat.models.data import TableSnapshot
from downbeat.models.loader import TrainingStream
from downbeat.models.serving import checkpoint_payload
from downbeat.models.settings import OptimSettings, RunSettings
from downbeat.models.train import FitHooks, FitState, Ranks, fit, seed_everything, selection_metric
from downbeat.models.validation import ValidationSet
from downbeat.models.zoo import ModelSettings, build_model, learns_by_gradient

log = logging.getLogger("downbeat.worker")


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a rank needs, picklable (TorchDistributor ships it to each process)."""

    model_name: str
    n_tracks: int
    n_stations: int
    positive_feedback: tuple[int, ...]
    model: ModelSettings
    train: RunSettings
    optim: OptimSettings
    training_files: tuple[str, ...]  # gold/training_sequences' data files (URLs)
    validation_pairs: TableSnapshot
    validation_next: TableSnapshot
    steps_per_epoch: int
    checkpoint_dir: str
    device: str  # cpu | cuda
    resume: str | None = None
    tracking_uri: str | None = None
    run_id: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    # popularity's validation figures on the same rows (popularity_floor), printed beside each epoch's
    floor: dict[str, float] = field(default_factory=dict)
    # Where rank 0 also writes its result: TorchDistributor's local mode returns the output of
    # whichever rank wrote it last, not necessarily rank 0's (every rank writes the same file).
    result_path: str | None = None


def train_worker(spec: WorkerSpec) -> dict[str, Any]:
    """Train on this rank; rank 0 returns the history and where it saved the best model."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = spec.device == "cuda"
    deterministic = _deterministic(cuda)
    if world > 1:
        wait = datetime.timedelta(seconds=spec.train.collective_timeout_s)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=wait)
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    ranks = Ranks(rank, world)
    try:
        seed_everything(spec.train.seed)
        model = build_model(
            spec.model_name, spec.n_tracks, spec.n_stations, spec.model, spec.positive_feedback
        ).to(device)
        trainable: torch.nn.Module = model
        if world > 1:
            trainable = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[local_rank] if cuda else None
            )
        stream = _stream(spec, rank, world, cuda)
        validation = ValidationSet.of(spec.validation_pairs, spec.validation_next, spec.n_tracks)
        floor = _log_start(spec, model, validation, world, device) if rank == 0 else math.nan
        state: FitState = fit(
            model,
            stream.epoch,
            lambda m: validation.score(m, device=device, ranks=ranks, batch_size=spec.train.eval_batch_size),
            spec.train,
            spec.optim,
            device=device,
            ranks=ranks,
            trainable=trainable,
            resume=checkpoint.read(spec.resume, map_location=device) if spec.resume else None,
            hooks=FitHooks(
                checkpoint_dir=Path(spec.checkpoint_dir),
                payload=lambda: checkpoint_payload(model, spec.config) | {"run_id": spec.run_id},
                on_epoch=_mlflow_logger(spec) if rank == 0 else None,
                loader_rate=lambda: stream.rows_per_second,
                floor=floor,
            ),
        )
        result = _rank_0_result(spec, model, state, validation) if rank == 0 else {"rank": rank}
        if world > 1:
            settle_collectives()
        return result
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if world > 1:
            dist.destroy_process_group()


def _log_start(spec: WorkerSpec, model: Any, validation: ValidationSet, world: int, device: Any) -> float:
    """Rank 0's first lines: what it trains on, then the floor (popularity_floor), returned; logged
    to MLflow as `val_popularity_<figure>` at step 0 unless the run resumes (it was, at its start)."""
    log.info(
        "rank 0 of %d on %s: %d steps per epoch, %d validation pairs, %d validation users",
        *(world, device, spec.steps_per_epoch, len(validation), validation.users),
    )
    selected = selection_metric(model, spec.train)
    floor = spec.floor.get(selected, math.nan)
    if math.isnan(floor):
        return floor
    log.info("validation floor: popularity's %s is %.4f on the same rows (counting alone)", selected, floor)
    logger = _mlflow_logger(spec)
    if logger is not None and spec.resume is None:
        logger({"epoch": 0.0, f"val_popularity_{selected}": floor})
    return floor


def _deterministic(cuda: bool) -> tuple[bool, bool]:
    """Turn on torch's deterministic algorithms; returns the settings to restore.

    Same seed and tables, same weights: without this, CPU training on MovieLens-100K drifted apart
    in the 7th digit of the loss by the 4th epoch and ended on other test figures. On CUDA an op
    without a deterministic kernel warns instead of failing (cuBLAS also needs its workspace set).
    """
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=cuda)
    return before


def _stream(spec: WorkerSpec, rank: int, world: int, cuda: bool) -> TrainingStream:
    """This rank's share of gold/training_sequences, batch by batch."""
    return TrainingStream.of_run(
        spec.training_files,
        spec.train,
        steps=spec.steps_per_epoch,
        max_length=spec.model.max_length,
        rank=rank,
        world=world,
        pin_memory=cuda,
    )


def _rank_0_result(
    spec: WorkerSpec, model: Any, state: FitState, validation: ValidationSet
) -> dict[str, Any]:
    """The trained model's bytes and the run's figures; also written to `spec.result_path` (whole,
    or not at all) when a launcher reads it from there."""
    model.to("cpu")
    final = io.BytesIO()
    torch.save(checkpoint_payload(model, spec.config) | {"run_id": spec.run_id}, final)
    result: dict[str, Any] = {
        "rank": 0,
        "model": final.getvalue(),
        "history": state.history,
        "best": state.best if math.isfinite(state.best) else float("nan"),  # no validation data
        "best_standard_error": state.best_standard_error,
        "selected_on": state.selected_on,
        "best_epoch": state.best_epoch,
        "epochs": state.epoch,
        "stopped_early": state.stopped_early,
        "validation_pairs": len(validation),
        "validation_users": validation.users,
    }
    if spec.result_path:
        partial = f"{spec.result_path}.partial"
        with open(partial, "wb") as handle:
            pickle.dump(result, handle)
        os.replace(partial, spec.result_path)
    return result


def count_worker(spec: WorkerSpec) -> dict[str, Any]:
    """Fit a counting model (popularity) in one pass over the training table, in this process, and
    return what train_worker's rank 0 returns: one 'epoch' whose validation figures chose it."""
    if learns_by_gradient(spec.model_name):
        raise ValueError(f"model {spec.model_name} is not fit by counting")
    started = time.perf_counter()
    model, rows = _popularity(spec)
    seconds = time.perf_counter() - started
    validation = ValidationSet.of(spec.validation_pairs, spec.validation_next, spec.n_tracks)
    score = validation.score(model, device=torch.device("cpu"), batch_size=spec.train.eval_batch_size)
    selected = selection_metric(model, spec.train)
    row = {
        "epoch": 0.0,
        "train_loss": float("nan"),  # no loss: counting minimises nothing
        **{f"val_{name}": figure.value for name, figure in score.figures.items()},
        **{f"val_{name}_se": figure.standard_error for name, figure in score.figures.items()},
        "train_seconds": seconds,
        "train_sequences_per_s": rows / seconds if seconds > 0 else 0.0,
    }
    logger = _mlflow_logger(spec)
    if logger is not None:
        logger(row)
    final = io.BytesIO()
    torch.save(checkpoint_payload(model, spec.config) | {"run_id": spec.run_id}, final)
    log.info("popularity: counted the positives of %d training rows", rows)
    return {
        "rank": 0,
        "model": final.getvalue(),
        "history": [row],
        "best": score[selected].value,
        "best_standard_error": score[selected].standard_error,
        "selected_on": selected,
        "best_epoch": 0,
        "epochs": 1,
        "stopped_early": False,
        "validation_pairs": len(validation),
        "validation_users": validation.users,
    }


def popularity_floor(spec: WorkerSpec) -> dict[str, float]:
    """Popularity's validation figures on the run's own tables: the level a model reaches by counting
    alone (NaN where the validation rows give no such figure). A run whose figure sits there for
    epochs is on a plateau, not learning slowly (gBCE scored every track alike at this level for 20
    epochs on the ML-1M part). Computed once by the launching process, where popularity itself is
    fit, so ranks do not wait for it."""
    model, _ = _popularity(spec)
    validation = ValidationSet.of(spec.validation_pairs, spec.validation_next, spec.n_tracks)
    score = validation.score(model, device=torch.device("cpu"), batch_size=spec.train.eval_batch_size)
    return {name: figure.value for name, figure in score.figures.items()}


def _popularity(spec: WorkerSpec) -> tuple[Any, int]:
    """Popularity counted in one pass over the training table (its track ids and target flags), and
    the rows it read."""
    from downbeat.models.contract import TARGET_MASK, TRACK_IDS
    from downbeat.models.data import parquet_dataset
    from downbeat.models.loader import decode_binary
    from downbeat.models.popularity import Popularity

    model = build_model("popularity", spec.n_tracks, spec.n_stations, spec.model, spec.positive_feedback)
    if not isinstance(model, Popularity):
        raise TypeError(f"the model zoo's popularity is a {type(model).__name__}")
    rows = 0
    for batch in parquet_dataset(spec.training_files).to_batches(columns=[TRACK_IDS, TARGET_MASK]):
        model.count(
            decode_binary(TRACK_IDS, batch.column(0)),
            decode_binary(TARGET_MASK, batch.column(1)),
        )
        rows += batch.num_rows
    return model, rows


def settle_collectives() -> None:
    """Wait until the process group's worker thread holds no tensor of Python's.

    gloo's worker thread frees each finished all-reduce itself, and freeing a tensor that Python
    made needs the GIL. Once training returns, garbage collection frees the DDP wrapper and with it
    the process group, whose destructor joins that thread while holding the GIL: if the thread was
    still freeing the last all-reduce, both waited for ever (a rank that never exits; py-spy showed
    ~ProcessGroupGloo joining while the worker thread waited for the GIL). A barrier waits for every
    earlier collective; the worker thread frees each before it takes the next, so a second barrier
    returns only once the first one's collectives are freed, and a barrier's tensors are not Python's.
    """
    dist.barrier()
    dist.barrier()


def _mlflow_logger(spec: WorkerSpec) -> Any:
    if not spec.tracking_uri or not spec.run_id:
        return None
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from downbeat.models.tracking import metric_name

    client = MlflowClient(spec.tracking_uri)
    run_id = spec.run_id

    def log_epoch(row: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        step = int(row["epoch"])
        metrics = [
            Metric(metric_name(k), float(v), now, step) for k, v in row.items() if k != "epoch" and v == v
        ]  # v == v: not NaN
        client.log_batch(run_id, metrics=metrics)

    return log_epoch
