"""The training loop: AdamW with linear warm-up, clipping, bf16 autocast on GPU, early stopping on
the model's validation figure (models/validation.py: NDCG@10 for next-item models, paired accuracy
for pair models), a checkpoint every epoch, resume. Knows nothing of Spark or Petastorm: it takes
a function from epoch number to an iterable of Batches."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from downbeat.models import checkpoint
from downbeat.models.network import Batch, Recommender
from downbeat.models.settings import OptimSettings, RunSettings

if TYPE_CHECKING:
    from downbeat.models.validation import Score

log = logging.getLogger("downbeat.train")


@dataclass
class FitState:
    """Where training stands; stored in every checkpoint."""

    epoch: int = 0  # epochs completed
    step: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    best_standard_error: float = math.nan  # of the best epoch's validation figure
    selected_on: str = "paired_accuracy"  # the validation figure `best` is (models/validation.py)
    stale: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    def all_sum(self, values: list[float]) -> list[float]:
        """Sum values over ranks (a no-op in one process)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return [float(x) for x in t.cpu()]


PAIRED_ACCURACY, NDCG = "paired_accuracy", "ndcg@10_pos"  # the validation figures (models/validation.py)
SELECT_ON = {"paired_accuracy": PAIRED_ACCURACY, "ndcg@10": NDCG}  # train.select_on -> figure


def selection_metric(model: Recommender[Any], train: RunSettings) -> str:
    """The validation figure a run stops on and keeps its best epoch by: `train.select_on`, or with
    `auto` the model's own task's (next-item models: NDCG@10 of the next positive; pair models:
    paired accuracy)."""
    return model.selection_metric if train.select_on == "auto" else SELECT_ON[train.select_on]


def parameter_groups(
    model: nn.Module, weight_decay: float, decay_embeddings: bool = False
) -> list[dict[str, Any]]:
    """AdamW's groups: weight decay on weight matrices only. Embeddings (whose rare rows would shrink
    toward 0 between their updates), LayerNorm gains and biases are never decayed (kang205's SASRec
    decays no embedding; gSASRec and PNFRec use plain Adam), unless `decay_embeddings`."""
    decayed: list[nn.Parameter] = []
    kept: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if id(parameter) in seen or not parameter.requires_grad:
                continue
            seen.add(id(parameter))
            embedding = isinstance(module, nn.Embedding) and not decay_embeddings
            plain = embedding or isinstance(module, nn.LayerNorm) or parameter.ndim < 2 or "bias" in name
            (kept if plain else decayed).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": kept, "weight_decay": 0.0}]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of one rank's epoch: resuming at epoch e draws what an uninterrupted run draws there."""
    return (seed * 1_000_003 + epoch * 7_919 + rank * 104_729) % 2**63


@dataclass(frozen=True)
class FitHooks:
    """What a run does around fit()'s epochs, each optional.

    checkpoint_dir: rank 0 writes epoch-NNN.pt there after every epoch. payload: extra entries for
    each checkpoint (what a loader needs to rebuild the model). on_epoch: rank 0 hands it each
    epoch's figures (MLflow logging). loader_rate: the training stream's rows/s over the epoch just
    read (summed over ranks, logged as `loader_rows_per_s`; `data_wait_share` is the share of the
    epoch the steps waited for batches). floor: popularity's figure on the same validation rows,
    printed beside each epoch's (models/worker.py; NaN: none).
    """

    checkpoint_dir: Path | None = None
    payload: Callable[[], dict[str, Any]] | None = None
    on_epoch: Callable[[dict[str, float]], None] | None = None
    loader_rate: Callable[[], float] | None = None
    floor: float = math.nan


def fit(
    model: Recommender,
    batches: Callable[[int], Iterable[Batch]],
    validate: Callable[[Recommender], Score],
    settings: RunSettings,
    optim: OptimSettings,
    *,
    device: torch.device,
    ranks: Ranks = Ranks(),
    trainable: nn.Module | None = None,
    resume: dict[str, Any] | None = None,
    hooks: FitHooks = FitHooks(),
) -> FitState:
    """Train `model` until `max_epochs` or early stopping; on return it holds the best epoch's weights.

    validate: the model's validation figures (models/validation.py); the run selects on
    `selection_metric(model, settings)` (NaN when there is no validation data for it: then the
    latest epoch counts as the best and nothing stops early). Every figure is logged each epoch.

    trainable: what forward() is called on (the DDP wrapper in distributed runs; default `model`).
    resume: a checkpoint `hooks.checkpoint_dir` held (models/checkpoint.py).
    """
    net = trainable if trainable is not None else model
    optimizer, scheduler = _optimiser(model, optim)
    state, best_weights = _start_state(resume, model, optimizer, scheduler, settings)

    for epoch in range(state.epoch, settings.max_epochs):
        if state.stopped_early:
            break
        started = time.perf_counter()
        seed = epoch_seed(settings.seed, epoch, ranks.rank)
        torch.manual_seed(seed)
        generator = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)
        net.train()
        sums = _train_epoch(
            net, model, batches(epoch), (optimizer, scheduler), optim.clip_norm, state, generator, device
        )
        train_seconds = time.perf_counter() - started
        score = validate(model)
        selected = score[state.selected_on]
        best_weights = _update_best(state, selected, model, best_weights, epoch)
        state.epoch = epoch + 1
        row = _epoch_row(epoch, sums, train_seconds, score, float(scheduler.get_last_lr()[0]), ranks)
        if hooks.loader_rate is not None:  # summed over ranks, as the epoch's sums are
            row["loader_rows_per_s"] = ranks.all_sum([hooks.loader_rate()])[0]
        state.history.append(row)
        state.stopped_early = state.stale >= settings.patience
        if ranks.rank == 0:
            floor = "" if math.isnan(hooks.floor) else f" (popularity {hooks.floor:.4f})"
            log.info(
                "epoch %d: loss %.4f, validation %s %.4f%s, %.0f sequences/s",
                *(epoch, row["train_loss"], state.selected_on, selected.value, floor),
                row["train_sequences_per_s"],
            )
            if hooks.checkpoint_dir is not None:
                _save(hooks, epoch, model, (optimizer, scheduler), state, best_weights)
            if hooks.on_epoch is not None:
                hooks.on_epoch(row)
    model.load_state_dict(best_weights)
    return state


def _epoch_row(
    epoch: int,
    sums: tuple[float, float, float, float],
    train_seconds: float,
    score: Score,
    learning_rate: float,
    ranks: Ranks,
) -> dict[str, float]:
    """The epoch's logged figures: `sums` (loss sum, loss count, rows, seconds waited for data) are
    this rank's, summed over ranks here; every validation figure with its standard error."""
    loss_sum, loss_count, rows, waited = ranks.all_sum(
        [sums[0], sums[1], sums[2], sums[3] / train_seconds if train_seconds > 0 else 0.0]
    )
    return {
        "epoch": float(epoch),
        "train_loss": loss_sum / max(loss_count, 1.0),
        **{f"val_{name}": figure.value for name, figure in score.figures.items()},
        **{f"val_{name}_se": figure.standard_error for name, figure in score.figures.items()},
        "learning_rate": learning_rate,
        "train_seconds": train_seconds,
        "train_sequences_per_s": rows / train_seconds if train_seconds > 0 else 0.0,
        "data_wait_share": waited / ranks.world,  # of the epoch's training time, mean over ranks
    }


def _start_state(
    resume: dict[str, Any] | None,
    model: Recommender,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    settings: RunSettings,
) -> tuple[FitState, dict[str, Any]]:
    """A fresh FitState and the initial weights as the best so far; or, from a checkpoint, the
    model, optimiser and schedule as it left them, with its FitState and best weights."""
    if resume is None:
        return FitState(selected_on=selection_metric(model, settings)), copy.deepcopy(model.state_dict())
    model.load_state_dict(resume["state_dict"])
    optimizer.load_state_dict(resume["optimizer"])
    scheduler.load_state_dict(resume["scheduler"])
    state = FitState(**resume["fit_state"])
    log.info(
        "resuming after epoch %d (step %d, best %.4f at epoch %d)",
        *(state.epoch, state.step, state.best, state.best_epoch),
    )
    return state, resume["best_state_dict"]


def _optimiser(model: nn.Module, settings: OptimSettings) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over `parameter_groups`, and linear warm-up over `warmup_steps` then constant."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, settings.weight_decay, settings.decay_embeddings),
        lr=settings.learning_rate,
        betas=(0.9, settings.adam_beta2),
    )
    warmup = max(settings.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    return optimizer, scheduler


def _train_epoch(
    net: nn.Module,
    model: nn.Module,
    batches: Iterable[Batch],
    optimiser: tuple[torch.optim.Optimizer, Any],
    clip_norm: float,
    state: FitState,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[float, float, float, float]:
    """One pass over `batches`, a step each: (loss sum, steps, rows, seconds spent waiting for
    batches) on this rank."""
    optimizer, scheduler = optimiser
    loss_sum, steps, rows, waited = 0.0, 0, 0, 0.0
    stream = iter(batches)
    try:
        while True:
            asked = time.perf_counter()
            batch = next(stream, None)
            waited += time.perf_counter() - asked
            if batch is None:
                break
            batch = batch.to(device)
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, _ = net(batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
            scheduler.step()
            state.step += 1
            loss_sum += float(loss.detach())
            steps += 1
            rows += batch.rows
    finally:
        close = getattr(stream, "close", None)  # a failed step stops the loader's thread now
        if close is not None:
            close()
    return loss_sum, float(steps), float(rows), waited


def _update_best(
    state: FitState, selected: Any, model: nn.Module, best_weights: dict[str, Any], epoch: int
) -> dict[str, Any]:
    """The best epoch's weights after `epoch`: this epoch's when its selected figure is better (or
    there is no validation data, NaN: the latest epoch counts as the best and nothing stops early)."""
    if math.isnan(selected.value) or selected.value > state.best:
        state.best = selected.value if not math.isnan(selected.value) else state.best
        state.best_standard_error = selected.standard_error
        state.best_epoch = epoch
        state.stale = 0
        return copy.deepcopy(model.state_dict())
    state.stale += 1
    return best_weights


def _save(
    hooks: FitHooks,
    epoch: int,
    model: nn.Module,
    optimiser: tuple[torch.optim.Optimizer, Any],
    state: FitState,
    best_weights: dict[str, Any],
) -> Path:
    """epoch-NNN.pt in `hooks.checkpoint_dir`: all a resumed run needs, with `hooks.payload`'s entries."""
    assert hooks.checkpoint_dir is not None
    optimizer, scheduler = optimiser
    payload = hooks.payload
    content = dict(payload() if payload is not None else {})
    content.update(
        state_dict=model.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        fit_state=state.__dict__ | {"history": list(state.history)},
        best_state_dict=best_weights,
    )
    return checkpoint.write(checkpoint.epoch_path(hooks.checkpoint_dir, epoch), content)
