"""Model names to architectures."""

from __future__ import annotations

from models.hybrid import Hybrid
from models.network import Recommender
from models.sasrec import SASRec
from models.settings import MODEL_NAMES, ModelSettings, TrainSettings


def build_model(
    name: str,
    n_tracks: int,
    n_stations: int,
    settings: ModelSettings,
    train: TrainSettings,
    positive_feedback: tuple[int, ...],
) -> Recommender:
    """A fresh model: `baseline` and `hybrid` share the bidirectional network, `sasrec` is causal."""
    if name == "sasrec":
        return SASRec(n_tracks, n_stations, settings, train, positive_feedback)
    if name in ("baseline", "hybrid"):
        return Hybrid(
            n_tracks, n_stations, settings, train, positive_feedback, positives_only=name == "baseline"
        )
    raise ValueError(f"model {name!r} is not one of {', '.join(MODEL_NAMES)}")
