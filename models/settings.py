"""Settings every model shares: the network's sizes (config section `model`), the optimiser
(`optim`) and the run (`train`). Each architecture's own knobs live beside it, in its own file
(`HybridSettings` in hybrid.py, `SASRecSettings` in sasrec.py, ...), as a subsection of `model`
named after it (`model.hybrid.p_hard`); models/zoo.py gathers them into `ModelSettings`.

Every field has the default conf/base.yaml gives it (a test holds them equal): a checkpoint keeps
the network's sizes and the model's own settings, so one saved before a field existed still loads,
and model tests and benchmarks build settings without the config loader, which requires every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

ModelName = Literal[
    "baseline",
    "hybrid",
    "sasrec",
    "gsasrec",
    "gru4rec",
    "caser",
    "bert4rec",
    "pnfrec",
    "pooled",
    "popularity",
]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)  # the names, in that order


@dataclass(frozen=True)
class NetworkSettings:
    """Network sizes, shared by every architecture; small enough to train on a laptop CPU."""

    dim: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.1
    max_length: int = 200
    # Each encoder layer's feed-forward: width as a multiple of dim (4: the transformer's and
    # BERT4Rec's; 1: kang205's SASRec and gSASRec's reference code) and the activation between its
    # two linear maps (gSASRec-pytorch's block has none: dense, dropout, dense).
    feedforward: int = 4
    activation: Literal["gelu", "relu", "none"] = "gelu"
    # The summed input embeddings times sqrt(dim) before positions are added (kang205's SASRec); an
    # option to choose on validation figures.
    scale_embeddings: bool = False
    # Scores against the input track embeddings (tied: kang205's SASRec, BERT4Rec) or against an
    # output table of their own (separate: gSASRec's ML-1M setting, reuse_item_embeddings=False).
    output_embeddings: Literal["tied", "separate"] = "tied"
    # The standard deviation every embedding table starts at: 0.02 (BERT's) or 1.0 (torch's
    # nn.Embedding default, gSASRec's reference code).
    init_std: float = 0.02


@dataclass(frozen=True)
class SoftmaxSettings:
    """The next-item softmax of sasrec, gru4rec, caser, bert4rec, pnfrec (and the hybrid's catalog
    term): over `sampled_negatives`
    uniform tracks (one set for the batch), or over the whole catalog (`softmax: full`)."""

    softmax: Literal["sampled", "full"] = "sampled"
    sampled_negatives: int = 1000


@dataclass(frozen=True)
class OptimSettings:
    """AdamW with linear warm-up over `warmup_steps`, then constant; decay on weight matrices only."""

    learning_rate: float = 0.001
    weight_decay: float = 0.01
    warmup_steps: int = 50
    clip_norm: float = 1.0
    # Adam's second-moment decay: torch's 0.999 by default; kang205's SASRec and RecTools use 0.98,
    # which follows the gradients' scale down within an epoch once an early loss drop has passed.
    adam_beta2: float = 0.999
    # Weight decay on the embedding tables too (their rare rows shrink between updates): a choice to
    # make on validation figures, as the demo does.
    decay_embeddings: bool = False


@dataclass(frozen=True)
class RunSettings:
    """The training run (config section `train`): seed, batches, epochs and stopping, where it runs."""

    seed: int = 7
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 20
    # The validation figure that stops a run and picks its best epoch: auto = the model's own task's
    # (next-item models NDCG@10 of the next positive, pair models paired accuracy).
    select_on: Literal["auto", "paired_accuracy", "ndcg@10"] = "auto"
    eval_batch_size: int = 256
    checkpoint_dir: str = "checkpoints"
    processes: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    shuffle_buffer: int = 4096
    loader: Literal["petastorm", "arrow"] = "petastorm"  # reads gold/training_sequences (models/loader.py)
    prefetch: int = 4  # batches read ahead of the step, in a background thread
    launch: Literal["local", "cluster"] = "local"  # N ranks on this machine, or Spark tasks on executors
    # How long a rank waits on the others (a gradient all-reduce, a validation sum) before it fails:
    # a rank that died or hangs ends the run with an error instead of holding the rest for torch's 30 min.
    collective_timeout_s: int = 600


# The keys of the flat `train` section before the settings were split, and where each lives now:
# old configs and specs get a line naming the new key; old checkpoints are read through it.
MOVED_KEYS: dict[str, tuple[str, ...]] = {
    "train.learning_rate": ("optim.learning_rate",),
    "train.weight_decay": ("optim.weight_decay",),
    "train.warmup_steps": ("optim.warmup_steps",),
    "train.clip_norm": ("optim.clip_norm",),
    "train.adam_beta2": ("optim.adam_beta2",),
    "train.p_task": ("model.hybrid.p_task", "model.bert4rec.p_task"),
    "train.p_hard": ("model.hybrid.p_hard",),
    "train.negative_mode": ("model.hybrid.negative_mode",),
    "train.k": ("model.hybrid.k",),
    "train.sampled_negatives": tuple(
        f"model.{m}.sampled_negatives" for m in ("sasrec", "gsasrec", "gru4rec", "bert4rec", "pnfrec")
    ),
    "train.softmax": tuple(f"model.{m}.softmax" for m in ("sasrec", "gru4rec", "bert4rec", "pnfrec")),
    "train.alpha": ("model.sasrec.alpha",),
    "train.beta": ("model.sasrec.beta",),
    "train.temperature": ("model.sasrec.temperature",),
    "train.info_nce_negatives": ("model.sasrec.info_nce_negatives",),
    "train.gbce_t": ("model.gsasrec.gbce_t",),
    "train.not_to_recommend": ("model.gsasrec.not_to_recommend",),
    "train.pnfrec_alpha": ("model.pnfrec.alpha",),
    "train.pnfrec_beta": ("model.pnfrec.beta",),
}


def moved_key_message(key: str) -> str | None:
    """'... moved to ...' for a key of the old flat layout, else None."""
    new = MOVED_KEYS.get(key)
    if new is None:
        return None
    return f"config key '{key}' moved to " + " / ".join(f"'{k}'" for k in new)
