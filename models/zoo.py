"""Model names to architectures."""

from __future__ import annotations

from collections.abc import Callable

from downbeat.models.bert4rec import BERT4Rec
from downbeat.models.gru4rec import GRU4Rec
from downbeat.models.gsasrec import GSASRec
from downbeat.models.hybrid import Hybrid
from downbeat.models.network import Recommender
from downbeat.models.pnfrec import PNFRec
from downbeat.models.popularity import Popularity
from downbeat.models.sasrec import SASRec
from downbeat.models.settings import MODEL_NAMES, ModelSettings, TrainSettings

# Each takes (n_tracks, n_stations, model settings, train settings, positive feedback codes).
Architecture = Callable[[int, int, ModelSettings, TrainSettings, tuple[int, ...]], Recommender]
ARCHITECTURES: dict[str, Architecture] = {
    "sasrec": SASRec,
    "gsasrec": GSASRec,
    "gru4rec": GRU4Rec,
    "pnfrec": PNFRec,
    "bert4rec": BERT4Rec,
    "popularity": Popularity,
}


def learns_by_gradient(name: str) -> bool:
    """Whether a model trains by gradient steps (fit()), or in one counting pass (popularity)."""
    return name not in ARCHITECTURES or ARCHITECTURES[name].learns_by_gradient  # type: ignore[attr-defined]


def build_model(
    name: str,
    n_tracks: int,
    n_stations: int,
    settings: ModelSettings,
    train: TrainSettings,
    positive_feedback: tuple[int, ...],
) -> Recommender:
    """A fresh model: `baseline` and `hybrid` share the bidirectional network (the baseline reads
    positives only); the others are one class each (models/<name>.py)."""
    if name in ("baseline", "hybrid"):
        return Hybrid(
            n_tracks, n_stations, settings, train, positive_feedback, positives_only=name == "baseline"
        )
    if name in ARCHITECTURES:
        return ARCHITECTURES[name](n_tracks, n_stations, settings, train, positive_feedback)
    raise ValueError(f"model {name!r} is not one of {', '.join(MODEL_NAMES)}")
