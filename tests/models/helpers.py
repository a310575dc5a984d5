"""Tiny batches and settings for model tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import yaml

from downbeat.models.network import DOWN, PLAY, SKIP, UP, Batch
from downbeat.models.settings import OptimSettings, RunSettings
from downbeat.models.zoo import SECTION_FIELDS, ModelSettings, model_settings_of

N_TRACKS, N_STATIONS = 40, 4
# The shipped defaults, read as the models' own settings (model tests never import jobs/).
BASE = yaml.safe_load((Path(__file__).resolve().parents[2] / "conf" / "base.yaml").read_text())


def settings(**knobs: object) -> tuple[ModelSettings, RunSettings, OptimSettings]:
    """The shipped defaults on a tiny network; each knob goes to the run, the optimiser, or every
    architecture's settings that have a field of that name (a test builds one model)."""
    run, optim = RunSettings(**BASE["train"]), OptimSettings(**BASE["optim"])
    model = dataclasses.replace(
        model_settings_of(BASE["model"]), dim=16, layers=1, heads=2, dropout=0.0, max_length=32
    )
    knobs = {"sampled_negatives": 20, "k": 8, **knobs}
    for name, value in knobs.items():
        placed = False
        for target in ("run", "optim"):
            holder = run if target == "run" else optim
            if name in {f.name for f in dataclasses.fields(holder)}:
                run, optim = (
                    (dataclasses.replace(run, **{name: value}), optim)
                    if target == "run"
                    else (run, dataclasses.replace(optim, **{name: value}))
                )
                placed = True
        for section in SECTION_FIELDS:
            own = getattr(model, section)
            if name in {f.name for f in dataclasses.fields(own)}:
                model = dataclasses.replace(model, **{section: dataclasses.replace(own, **{name: value})})
                placed = True
        if not placed:
            raise TypeError(f"no setting is called {name!r}")
    return model, run, optim


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
