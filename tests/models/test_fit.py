"""The training loop: determinism, checkpoints, resume, early stopping, validation pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.data import SequenceStream
from models.serving import checkpoint_payload
from models.train import Ranks, ValidationPairs, fit, latest_checkpoint, seed_everything
from models.worker import validation_rows
from models.zoo import build_model
from tests.models.helpers import settings
from tests.models.tables import sequence_rows, write_sequences

N_TRACKS = 30


@pytest.fixture()
def snapshot(tmp_path):
    return write_sequences(tmp_path / "seq", sequence_rows(40, n_tracks=N_TRACKS), files=2)


def train(snapshot, tmp_path, name="hybrid", *, epochs, resume=None, folder="ck", **overrides):
    model_settings, train_settings = settings(
        **{"max_epochs": epochs, "patience": 10, "warmup_steps": 2, **overrides}
    )
    seed_everything(train_settings.seed)
    model = build_model(name, N_TRACKS, 3, model_settings, train_settings, (1,))
    stream = SequenceStream(
        snapshot.files, batch_size=8, steps=3, max_length=32, seed=train_settings.seed, shuffle_buffer=16
    )
    validation = ValidationPairs.from_rows(validation_rows(snapshot.files), 5)
    state = fit(
        model,
        stream.epoch,
        lambda m: validation.accuracy(m, device=torch.device("cpu"), ranks=Ranks(), batch_size=16),
        train_settings,
        device=torch.device("cpu"),
        checkpoint_dir=tmp_path / folder,
        resume=torch.load(resume, weights_only=False) if resume else None,
        payload=lambda: checkpoint_payload(model),
    )
    return model, state


def same_weights(a, b):
    return all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name", ["hybrid", "sasrec"])
def test_the_same_seed_and_data_give_the_same_weights_and_history(snapshot, tmp_path, name):
    a, state_a = train(snapshot, tmp_path, name, epochs=2, folder="a")
    b, state_b = train(snapshot, tmp_path, name, epochs=2, folder="b")
    assert same_weights(a, b)
    drop = ("train_seconds", "train_sequences_per_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in state_a.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in state_b.history
    ]


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(snapshot, tmp_path):
    whole, whole_state = train(snapshot, tmp_path, epochs=4, folder="whole")
    _, first = train(snapshot, tmp_path, epochs=2, folder="part")
    checkpoint = latest_checkpoint(tmp_path / "part")
    assert checkpoint.name == "epoch-002.pt" and first.epoch == 2
    resumed, resumed_state = train(snapshot, tmp_path, epochs=4, folder="part", resume=checkpoint)
    assert same_weights(whole, resumed)
    assert resumed_state.epoch == whole_state.epoch == 4
    assert [h["train_loss"] for h in resumed_state.history] == [h["train_loss"] for h in whole_state.history]
    assert sorted(p.name for p in (tmp_path / "part").glob("*.pt")) == [
        f"epoch-00{i}.pt" for i in range(1, 5)
    ]


def test_early_stopping_ends_after_patience_epochs_without_improvement_and_keeps_the_best(snapshot, tmp_path):
    # learning rate 0: validation never improves after the first epoch
    _, state = train(snapshot, tmp_path, epochs=10, learning_rate=0.0, patience=2)
    assert state.stopped_early and state.epoch == 3 and state.best_epoch == 0
    assert not math.isnan(state.best)


def test_validation_pairs_are_each_users_last_targets_against_their_stored_negative():
    rows = {
        "track_ids": [[5, 6, 7, 8]],
        "station_ids": [[1, 1, 2, 2]],
        "feedback_ids": [[1, 3, 1, 1]],
        "is_target": [[1, 0, 1, 1]],
        "negative_track_ids": [[9, 0, 0, 6]],
    }
    pairs = ValidationPairs.from_rows(rows, per_user=5)
    assert pairs.up.tolist() == [5, 8] and pairs.down.tolist() == [9, 6]
    assert [t.tolist() for t in pairs.tracks] == [[], [5, 6, 7]]
    assert pairs.query_station.tolist() == [1, 2]
    assert ValidationPairs.from_rows(rows, per_user=1).up.tolist() == [8]
    assert np.all(pairs.up != pairs.down)
