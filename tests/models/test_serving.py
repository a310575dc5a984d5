"""recommend_frame: the catalog ranked from a model's scores, down-rated tracks never among them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from downbeat.models.network import DOWN, PLAY, SKIP, UP
from downbeat.models.serving import (
    CANDIDATES,
    EXCLUDE,
    HISTORY_FEEDBACK,
    HISTORY_STATIONS,
    HISTORY_TRACKS,
    SCORES,
    SERVED,
    STATION,
    TOP_TRACKS,
    catalog_fingerprint,
    recommend_frame,
    score_frame,
)
from downbeat.models.train import seed_everything
from downbeat.models.zoo import build_model
from tests.models.helpers import settings

N_TRACKS = 40


def model(name: str = "hybrid"):
    model_settings = settings()[0]
    seed_everything(5)
    return build_model(name, N_TRACKS, 3, model_settings, (UP,))


def requests(exclude: list[list[int]]) -> pd.DataFrame:
    histories = [[3, 7, 9], [12, 5], [8, 8, 30, 2]][: len(exclude)]
    return pd.DataFrame(
        {
            HISTORY_TRACKS: [np.array(h) for h in histories],
            HISTORY_STATIONS: [np.ones(len(h), dtype=np.int64) for h in histories],
            HISTORY_FEEDBACK: [np.array([UP, SKIP, DOWN, PLAY][: len(h)]) for h in histories],
            STATION: [1] * len(histories),
            EXCLUDE: [np.array(x, dtype=np.int64) for x in exclude],
        }
    )


def test_the_top_tracks_are_the_best_scored_of_the_whole_catalog_in_order():
    m = model()
    frame = requests([[], [], []])
    top = recommend_frame(m, frame, 5, batch_size=2)
    full = score_frame(m, frame.assign(**{CANDIDATES: [np.arange(1, N_TRACKS + 1)] * 3}))
    for i in range(3):
        scores = full[SCORES][i]
        expected = np.argsort(-scores, kind="stable")[:5] + 1  # column j scores track j + 1
        assert list(top[TOP_TRACKS][i]) == list(expected)
        assert np.allclose(top[SCORES][i], scores[expected - 1], atol=1e-5)
    assert top[SERVED].all()


def test_down_rated_tracks_are_never_recommended_and_the_next_best_move_up():
    m = model()
    before = recommend_frame(m, requests([[], []]), 4)
    best, second = int(before[TOP_TRACKS][0][0]), int(before[TOP_TRACKS][1][1])
    after = recommend_frame(m, requests([[best, 0, N_TRACKS + 5], [second]]), 4)
    assert best not in after[TOP_TRACKS][0] and second not in after[TOP_TRACKS][1]
    # the rest keep their order; the fifth best fills the last place
    assert list(after[TOP_TRACKS][0][:3]) == list(before[TOP_TRACKS][0][1:])
    assert list(after[TOP_TRACKS][1][:1]) == list(before[TOP_TRACKS][1][:1])
    assert list(after[TOP_TRACKS][1][1:3]) == list(before[TOP_TRACKS][1][2:])
    assert len(after[TOP_TRACKS][0]) == len(after[TOP_TRACKS][1]) == 4


def test_a_user_the_model_cannot_serve_gets_no_tracks_and_k_is_capped_by_the_catalog():
    baseline = model("baseline")  # reads positives only: a skip-only history is nothing to it
    frame = requests([[], []])
    frame.at[0, HISTORY_FEEDBACK] = np.array([SKIP, SKIP, SKIP])
    out = recommend_frame(baseline, frame, N_TRACKS + 10)
    assert list(out[SERVED]) == [False, True]
    assert len(out[TOP_TRACKS][0]) == 0 and len(out[TOP_TRACKS][1]) == N_TRACKS
    with pytest.raises(ValueError, match="top_k"):
        recommend_frame(baseline, frame, 0)
    with pytest.raises(ValueError, match=EXCLUDE):
        recommend_frame(baseline, frame.drop(columns=[EXCLUDE]), 3)


def test_the_catalog_fingerprint_follows_the_ids_in_index_order_only():
    assert catalog_fingerprint(["a", "b", "c"]) == catalog_fingerprint(iter(["a", "b", "c"]))
    assert catalog_fingerprint(["a", "b", "c"]) != catalog_fingerprint(["b", "a", "c"])
    assert catalog_fingerprint(["ab", "c"]) != catalog_fingerprint(["a", "bc"])


def test_top_tracks_is_a_stable_descending_sort_cut_at_k_whatever_the_ties():
    import torch

    from downbeat.models.serving import top_tracks

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (50, 30), generator=g).float()  # many ties, some across the k-th place
    scores[3] = float("-inf")
    scores[4, :25] = float("-inf")
    for k in (1, 5, 29):
        values, columns = top_tracks(scores.clone(), k)
        expected_values, expected_columns = torch.sort(scores, dim=1, descending=True, stable=True)
        assert torch.equal(columns, expected_columns[:, :k]) and torch.equal(values, expected_values[:, :k])


def test_top_tracks_without_ties_across_the_kth_place_orders_ties_inside_by_column():
    import torch

    from downbeat.models.serving import top_tracks

    g = torch.Generator().manual_seed(1)
    scores = torch.rand((40, 200), generator=g)  # distinct values: the top-k path, no full sort
    scores[:, 7] = scores[:, 3] = scores.max(dim=1).values + 1  # a tie for first place, inside the k
    values, columns = top_tracks(scores.clone(), 10)
    assert not ((scores >= values[:, -1:]).sum(dim=1) > 10).any()  # no row needed the full sort
    assert (columns[:, 0] == 3).all() and (columns[:, 1] == 7).all()
    expected_values, expected_columns = torch.sort(scores, dim=1, descending=True, stable=True)
    assert torch.equal(columns, expected_columns[:, :10]) and torch.equal(values, expected_values[:, :10])


def test_a_checkpoint_with_the_old_flat_train_settings_loads_with_its_own_knobs_under_their_new_names():
    """Checkpoints written before each architecture had settings of its own kept every knob in one
    `train_settings` dict (pnfrec's as pnfrec_alpha/pnfrec_beta): they load, knobs and weights kept."""
    import dataclasses

    from downbeat.models.serving import checkpoint_payload, model_from_payload

    trained = model("pnfrec")
    payload = checkpoint_payload(trained)
    own = payload.pop("settings")
    flat = {"seed": 7, "softmax": "full", "sampled_negatives": 9, "alpha": 1.0, "beta": 0.1}
    payload["train_settings"] = flat | {"pnfrec_alpha": 0.3, "pnfrec_beta": 0.6, "p_hard": 1.0}

    loaded = model_from_payload(payload)

    assert dataclasses.asdict(loaded.settings) == {
        "softmax": "full",
        "sampled_negatives": 9,
        "alpha": 0.3,
        "beta": 0.6,
    }
    assert own != dataclasses.asdict(loaded.settings)
    assert all(
        (a == b).all()
        for a, b in zip(trained.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert model_from_payload(checkpoint_payload(loaded)).settings == loaded.settings  # written anew


def test_every_architectures_defaults_are_conf_base_yamls():
    """A checkpoint missing a field falls back to the dataclass default: it must be base.yaml's."""

    from downbeat.models.settings import OptimSettings, RunSettings
    from downbeat.models.zoo import ARCHITECTURES, ModelSettings, model_settings_of, own_settings
    from tests.models.helpers import BASE

    assert model_settings_of(BASE["model"]) == ModelSettings()
    assert RunSettings(**BASE["train"]) == RunSettings()
    assert OptimSettings(**BASE["optim"]) == OptimSettings()
    for name in ARCHITECTURES:  # every model builds from the defaults, popularity without settings
        assert (own_settings(name, ModelSettings()) is None) == (name == "popularity"), name
        build_model(name, N_TRACKS, 3, ModelSettings(dim=8, heads=2, max_length=8), (UP,))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({CANDIDATES: [[]]}, "row 0: candidate_track_ids holds 0 ids; a row scores 1 to 5"),
        ({CANDIDATES: [[1] * 6]}, "row 0: candidate_track_ids holds 6 ids; a row scores 1 to 5"),
        ({CANDIDATES: [[-3, 1]]}, "row 0: candidate_track_ids holds -3, outside 1..5"),
        ({HISTORY_TRACKS: [[6, 1, 1]]}, "row 0: history_track_ids holds 6, outside 1..5"),
        ({HISTORY_STATIONS: [[1, 3, 0]]}, "row 0: history_station_ids holds 3, outside 0..2"),
        ({HISTORY_FEEDBACK: [[1, 9, 2]]}, "row 0: history_feedback_ids holds 9, outside 0..4"),
        ({HISTORY_FEEDBACK: [[1, 2]]}, "row 0: history_track_ids, history_station_ids, history_feedback_ids"),
        ({STATION: [7]}, "row 0: station_idx 7 is outside 0..2"),
    ],
)
def test_a_malformed_request_is_named_by_row_and_column(change, message):
    from downbeat.models.serving import check_request, input_example

    frame = input_example(5)
    check_request(frame, 5, 2)  # the logged example itself passes
    for column, value in change.items():
        frame[column] = value
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        check_request(frame, 5, 2)
    with pytest.raises(ValueError, match="a request holds 1 to 10000 rows, this one 0"):
        check_request(frame.iloc[:0], 5, 2)
