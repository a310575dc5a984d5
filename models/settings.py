"""Settings of the models and their training (config sections `model` and `train`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelName = Literal["baseline", "hybrid", "sasrec", "gsasrec", "gru4rec", "bert4rec", "pnfrec", "popularity"]
MODEL_NAMES: tuple[str, ...] = (
    "baseline",
    "hybrid",
    "sasrec",
    "gsasrec",
    "gru4rec",
    "bert4rec",
    "pnfrec",
    "popularity",
)
NegativeMode = Literal["stored", "hardest_of_k"]


@dataclass(frozen=True)
class ModelSettings:
    """Network sizes, shared by every architecture; small enough to train on a laptop CPU."""

    dim: int
    layers: int
    heads: int
    dropout: float
    max_length: int
    # The summed input embeddings times sqrt(dim) before positions are added (kang205's SASRec); an
    # option to choose on validation figures. A default so that older checkpoints still load.
    scale_embeddings: bool = False
    # Scores against the input track embeddings (tied: kang205's SASRec, BERT4Rec) or against an
    # output table of their own (separate: gSASRec's ML-1M setting, reuse_item_embeddings=False).
    output_embeddings: Literal["tied", "separate"] = "tied"
    # The standard deviation every embedding table starts at: 0.02 (BERT's) or 1.0 (torch's
    # nn.Embedding default, gSASRec's reference code).
    init_std: float = 0.02


@dataclass(frozen=True)
class TrainSettings:
    """The optimiser, the objective's knobs and the training loop.

    hybrid: a share `p_task` of target positions is masked; each masked position gets one negative,
    the stored hard negative with probability `p_hard`, else a random track; `negative_mode:
    hardest_of_k` instead scores `k` random tracks and keeps the highest-scoring one.
    sasrec: sampled softmax over `sampled_negatives` uniform tracks (weight `alpha`) plus InfoNCE
    against the skipped tracks before the next positive (weight `beta`, `temperature`).
    """

    seed: int
    batch_size: int
    max_epochs: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    clip_norm: float
    patience: int
    p_task: float
    p_hard: float
    negative_mode: NegativeMode
    k: int
    sampled_negatives: int
    alpha: float
    beta: float
    temperature: float
    eval_batch_size: int
    checkpoint_dir: str
    processes: int
    device: Literal["auto", "cpu", "cuda"]
    shuffle_buffer: int
    # Defaults only so that checkpoints saved before these keys existed still load.
    loader: Literal["petastorm", "arrow"] = "petastorm"  # reads gold/training_sequences (models/loader.py)
    prefetch: int = 4  # batches read ahead of the step, in a background thread
    launch: Literal["local", "cluster"] = "local"  # N ranks on this machine, or Spark tasks on executors
    # How long a rank waits on the others (a gradient all-reduce, a validation sum) before it fails:
    # a rank that died or hangs ends the run with an error instead of holding the rest for torch's 30 min.
    collective_timeout_s: int = 600
    # The other models' knobs (models/gsasrec.py, gru4rec.py, bert4rec.py, pnfrec.py).
    softmax: Literal["sampled", "full"] = "sampled"  # gru4rec, bert4rec, pnfrec: the next-item loss
    gbce_t: float = 0.75  # gsasrec: gBCE calibration (0 plain BCE, 1 calibrated to the sampling rate)
    not_to_recommend: float = 0.0  # gsasrec: weight of the not-to-recommend loss on downs (0 = off)
    pnfrec_alpha: float = 0.5  # pnfrec: weight of the negative encoder's next-negative loss
    # sasrec: which tracks between a position and its next positive InfoNCE pushes away: the skipped
    # ones, or every non-positive one (plays and downs too, as RecSys'24 defines it)
    info_nce_negatives: Literal["skips", "non_positive"] = "skips"
    pnfrec_beta: float = 0.5  # pnfrec: weight of the contrast of the next positive with the negatives
    # The validation figure that stops a run and picks its best epoch: auto = the model's own task's
    # (next-item models NDCG@10 of the next positive, pair models paired accuracy).
    select_on: Literal["auto", "paired_accuracy", "ndcg@10"] = "auto"
    # Adam's second-moment decay: torch's 0.999 by default; kang205's SASRec and RecTools use 0.98,
    # which follows the gradients' scale down within an epoch once an early loss drop has passed.
    adam_beta2: float = 0.999
