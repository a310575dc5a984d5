"""Tiny batches and settings for model tests."""

from __future__ import annotations

import dataclasses

import torch

from downbeat.jobs.config import load_config
from downbeat.models.network import DOWN, PLAY, SKIP, UP, Batch
from downbeat.models.settings import ModelSettings, TrainSettings

N_TRACKS, N_STATIONS = 40, 4


def settings(**train: object) -> tuple[ModelSettings, TrainSettings]:
    cfg = load_config(None)
    model = dataclasses.replace(cfg.model, dim=16, layers=1, heads=2, dropout=0.0, max_length=32)
    return model, dataclasses.replace(cfg.train, sampled_negatives=20, k=8, **train)  # type: ignore[arg-type]


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
