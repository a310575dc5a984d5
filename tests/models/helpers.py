"""Tiny batches and settings for model tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from downbeat.models.network import DOWN, PLAY, SKIP, UP, Batch
from downbeat.models.settings import ModelSettings, TrainSettings

N_TRACKS, N_STATIONS = 40, 4
# The shipped defaults, read as the models' own settings (model tests never import jobs/).
BASE = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "base.yaml").read_text())


def settings(**train: object) -> tuple[ModelSettings, TrainSettings]:
    model = dataclasses.replace(
        ModelSettings(**BASE["model"]), dim=16, layers=1, heads=2, dropout=0.0, max_length=32
    )
    defaults = TrainSettings(**BASE["train"])
    return model, dataclasses.replace(defaults, sampled_negatives=20, k=8, **train)  # type: ignore[arg-type]


def random_batch(seed: int = 0, rows: int = 6, length: int = 12) -> Batch:
    """Right-padded rows of random plays; every row ends on an up, ups carry a stored negative."""
    g = torch.Generator().manual_seed(seed)
    tracks = torch.randint(1, N_TRACKS + 1, (rows, length), generator=g)
    feedback = torch.tensor([UP, DOWN, SKIP, PLAY])[torch.randint(0, 4, (rows, length), generator=g)]
    lengths = torch.randint(3, length + 1, (rows,), generator=g)
    present = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
    feedback[torch.arange(rows), lengths - 1] = UP
    tracks, feedback = tracks * present, feedback * present
    stations = torch.randint(1, N_STATIONS + 1, (rows, length), generator=g) * present
    targets = feedback == UP
    # a stored negative: some other track of the row that was skipped or downed, else a random one
    stored = torch.randint(1, N_TRACKS + 1, (rows, length), generator=g)
    rejected = (feedback == DOWN) | (feedback == SKIP)
    for r in range(rows):
        others = tracks[r][rejected[r]]
        if len(others):
            stored[r] = others[torch.randint(0, len(others), (length,), generator=g)]
    stored = torch.where(stored == tracks, (stored % N_TRACKS) + 1, stored)
    negatives = torch.where(targets, stored, 0)
    return Batch(tracks, stations, feedback, targets, negatives, torch.where(targets, 1, 0))
