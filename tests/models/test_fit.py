"""The training loop: determinism, checkpoints, resume, early stopping, validation scoring."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from downbeat.models import checkpoint
from downbeat.models.evaluation import pair_predictions
from downbeat.models.loader import TrainingStream
from downbeat.models.metrics import paired_accuracy, paired_accuracy_pooled
from downbeat.models.network import PLAY, SKIP, Batch
from downbeat.models.serving import checkpoint_payload, score_frame
from downbeat.models.train import FitHooks, fit, seed_everything
from downbeat.models.validation import ValidationSet
from downbeat.models.zoo import build_model
from tests.models.helpers import settings
from tests.models.tables import sequence_rows, validation_set, write_training

N_TRACKS = 30


ROWS = sequence_rows(40, n_tracks=N_TRACKS)


@pytest.fixture()
def snapshot(tmp_path):
    return write_training(tmp_path / "seq", ROWS, files=2)


def train(snapshot, tmp_path, name="hybrid", *, epochs, resume=None, folder="ck", **overrides):
    model_settings, train_settings, optim = settings(
        **{"max_epochs": epochs, "patience": 10, "warmup_steps": 2, **overrides}
    )
    seed_everything(train_settings.seed)
    model = build_model(name, N_TRACKS, 3, model_settings, (1,))
    stream = TrainingStream(
        snapshot.files, batch_size=8, steps=3, max_length=32, seed=train_settings.seed, shuffle_buffer=16
    )
    validation = validation_set(ROWS, N_TRACKS)
    state = fit(
        model,
        stream.epoch,
        lambda m: validation.score(m, device=torch.device("cpu"), batch_size=16),
        train_settings,
        optim,
        device=torch.device("cpu"),
        resume=checkpoint.read(resume) if resume else None,
        hooks=FitHooks(checkpoint_dir=tmp_path / folder, payload=lambda: checkpoint_payload(model)),
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
    drop = ("train_seconds", "train_sequences_per_s", "data_wait_share")
    assert [{k: v for k, v in h.items() if k not in drop} for h in state_a.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in state_b.history
    ]


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(snapshot, tmp_path):
    whole, whole_state = train(snapshot, tmp_path, epochs=4, folder="whole")
    _, first = train(snapshot, tmp_path, epochs=2, folder="part")
    saved = checkpoint.latest(tmp_path / "part")
    assert saved.name == "epoch-002.pt" and first.epoch == 2
    resumed, resumed_state = train(snapshot, tmp_path, epochs=4, folder="part", resume=saved)
    assert same_weights(whole, resumed)
    assert resumed_state.epoch == whole_state.epoch == 4
    assert [h["train_loss"] for h in resumed_state.history] == [h["train_loss"] for h in whole_state.history]
    assert sorted(p.name for p in (tmp_path / "part").glob("*.pt")) == [
        f"epoch-00{i}.pt" for i in range(1, 5)
    ]


@pytest.mark.parametrize("beta2", [0.999, 0.98])
def test_adam_keeps_its_second_moments_at_the_configured_decay(snapshot, tmp_path, beta2):
    train(snapshot, tmp_path, epochs=1, adam_beta2=beta2)
    saved = checkpoint.read(checkpoint.latest(tmp_path / "ck"))["optimizer"]
    assert {tuple(group["betas"]) for group in saved["param_groups"]} == {(0.9, beta2)}


def test_early_stopping_ends_after_patience_epochs_without_improvement_and_keeps_the_best(snapshot, tmp_path):
    # learning rate 0: validation never improves after the first epoch
    _, state = train(snapshot, tmp_path, epochs=10, learning_rate=0.0, patience=2)
    assert state.stopped_early and state.epoch == 3 and state.best_epoch == 0
    assert not math.isnan(state.best)


def test_validation_scores_the_mean_over_users_of_each_users_share_of_pairs_won():
    model_settings = settings()[0]
    seed_everything(3)
    model = build_model("hybrid", N_TRACKS, 3, model_settings, (1,))
    validation = validation_set(ROWS, N_TRACKS)
    score = validation.score(model, device=torch.device("cpu"), batch_size=7)["paired_accuracy"]
    scored = pair_predictions(lambda f: score_frame(model, f), validation.pairs, validation.histories)
    users, up, down = (scored[c].to_numpy() for c in ("user_id", "up_score", "down_score"))
    assert score.users == len(np.unique(users)) > 2
    assert score.value == pytest.approx(paired_accuracy(users, up, down))
    # users weigh alike: the pooled share differs once users have different numbers of pairs
    assert len(set(np.unique(users, return_counts=True)[1])) > 1
    assert score.value != pytest.approx(paired_accuracy_pooled(up, down))
    per_user = [
        np.mean((up[users == u] > down[users == u]) + 0.5 * (up[users == u] == down[users == u]))
        for u in np.unique(users)
    ]
    assert score.standard_error == pytest.approx(np.std(per_user, ddof=1) / math.sqrt(len(per_user)))


def test_validation_ndcg_ranks_each_users_next_positive_among_the_catalog_less_the_excluded():
    model_settings = settings()[0]
    seed_everything(3)
    model = build_model("sasrec", N_TRACKS, 3, model_settings, (1,))
    validation = validation_set(ROWS, N_TRACKS)
    rows = validation.histories
    scores = np.stack(
        score_frame(
            model,
            rows.assign(candidate_track_ids=[np.arange(1, N_TRACKS + 1)] * len(rows)),
        )["scores"].to_list()
    )
    targets = rows["track_idx"].to_numpy() - 1
    mine = scores[np.arange(len(rows)), targets]
    ranks = (scores >= mine[:, None]).sum(axis=1)  # ties against the target
    gains = np.where(ranks <= 10, 1 / np.log2(ranks + 1), 0.0)
    got = validation.score(model, device=torch.device("cpu"), batch_size=5)["ndcg@10_pos"]
    assert got.users == len(rows) and got.value == pytest.approx(gains.mean())
    assert got.standard_error == pytest.approx(np.std(gains, ddof=1) / math.sqrt(len(gains)))
    # excluding every track but the target puts each target first
    everything_else = [np.setdiff1d(np.arange(1, N_TRACKS + 1), [t + 1]) for t in targets]
    excluded = ValidationSet(validation.pairs, rows.assign(exclude_track_ids=everything_else), N_TRACKS)
    assert excluded.score(model, device=torch.device("cpu"))["ndcg@10_pos"].value == 1.0


def planted_batches(seed: int, *, shuffled: bool, rows: int = 32, length: int = 16):
    """Rows where every even track is played (a target) and every odd one skipped (its negative);
    with `shuffled`, the same rows with each row's feedback permuted: nothing left to learn."""
    g = torch.Generator().manual_seed(seed)
    tracks = torch.randint(1, N_TRACKS + 1, (rows, length), generator=g)
    liked = tracks % 2 == 0
    if shuffled:
        liked = torch.gather(liked, 1, torch.argsort(torch.rand(rows, length, generator=g), dim=1))
    feedback = torch.where(liked, PLAY, SKIP)
    # each target's stored negative: a skipped track of the same row (the first one), else none
    first_skip = torch.where(~liked, tracks, 0).max(dim=1, keepdim=True).values
    negatives = torch.where(liked, first_skip.expand_as(tracks), 0)
    return Batch(tracks, torch.ones_like(tracks), feedback, liked, negatives, torch.where(liked, 2, 0))


@pytest.mark.parametrize("name", ["hybrid", "pooled"])
def test_a_model_trained_on_planted_feedback_beats_the_same_model_trained_on_shuffled_feedback(name):
    model_settings, train_settings, optim = settings(
        max_epochs=3, warmup_steps=5, learning_rate=0.01, patience=10
    )
    validation = planted_validation()
    scores = {}
    for shuffled in (False, True):
        seed_everything(train_settings.seed)
        model = build_model(name, N_TRACKS, 3, model_settings, (PLAY,))
        fit(
            model,
            lambda epoch, s=shuffled: [planted_batches(epoch * 100 + i, shuffled=s) for i in range(25)],
            lambda m: validation.score(m, device=torch.device("cpu"), batch_size=64),
            train_settings,
            optim,
            device=torch.device("cpu"),
        )
        scores[shuffled] = validation.score(model, device=torch.device("cpu"))["paired_accuracy"].value
    assert scores[False] > 0.8 and scores[False] - scores[True] > 0.25, scores


def planted_validation() -> ValidationSet:
    """New users: history of planted plays and skips, pairs of an unseen-in-history even track
    (liked) against an odd one (rejected)."""
    g = np.random.default_rng(99)
    pairs, histories = [], []
    for u in range(20):
        tracks = g.integers(1, N_TRACKS + 1, 12)
        histories.append(
            {
                "user_id": f"v{u}",
                "history_track_ids": tracks,
                "history_station_ids": np.ones(12, np.int64),
                "history_feedback_ids": np.where(tracks % 2 == 0, PLAY, SKIP),
                "history_length": 12,
                "track_idx": 2 * g.integers(1, N_TRACKS // 2 + 1),  # the next play: a liked (even) track
                "station_idx": 1,
                "is_positive": True,
            }
        )
        for _ in range(5):
            up, down = 2 * g.integers(1, N_TRACKS // 2 + 1), 2 * g.integers(0, N_TRACKS // 2) + 1
            pairs.append(
                {
                    "user_id": f"v{u}",
                    "station_id": "s",
                    "up_track_id": str(up),
                    "down_track_id": str(down),
                    "station_idx": 1,
                    "up_track_idx": up,
                    "down_track_idx": down,
                }
            )
    return ValidationSet(pd.DataFrame(pairs), pd.DataFrame(histories), N_TRACKS)
