"""Every model: shapes, losses, one step, determinism, who they can serve."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from downbeat.models.network import (
    DOWN,
    PAD,
    PLAY,
    SKIP,
    UP,
    Batch,
    Dropout,
    History,
    attention,
    causal_mask,
    compact,
    dot_scores,
    positions_from_end,
    query_feedback,
)
from downbeat.models.sasrec import next_target, skipped_between
from downbeat.models.zoo import build_model
from tests.models.helpers import N_STATIONS, N_TRACKS, random_batch, settings

NAMES = ["baseline", "hybrid", "sasrec", "gsasrec", "gru4rec", "caser", "bert4rec", "pnfrec", "pooled"]


def make(name, seed=0, **train):
    torch.manual_seed(seed)
    model_settings = settings(**train)[0]
    return build_model(name, N_TRACKS, N_STATIONS, model_settings, (UP,))


def history(batch, query=None):
    query = torch.ones(batch.rows, dtype=torch.long) if query is None else query
    return History(batch.tracks, batch.stations, batch.feedback, query)


@pytest.mark.parametrize("name", NAMES)
def test_scores_have_one_value_per_candidate_and_per_catalog_track(name):
    model = make(name).eval()
    batch = random_batch()
    h = history(batch)
    assert model.user_vectors(h).shape == (6, 16)
    assert model.score(h, torch.randint(1, N_TRACKS + 1, (6, 5))).shape == (6, 5)
    full = model.score_all(h)
    assert full.shape == (6, N_TRACKS + 1)
    assert torch.isinf(full[:, 0]).all() and torch.isfinite(full[:, 1:]).all()


@pytest.mark.parametrize("name", NAMES)
def test_scoring_the_whole_catalog_as_candidates_gives_score_alls_columns(name):
    model = make(name).eval()
    h = history(random_batch())
    catalog = torch.arange(1, N_TRACKS + 1).expand(6, -1)
    with torch.no_grad():
        assert torch.allclose(model.score(h, catalog), model.score_all(h)[:, 1:], atol=1e-5)


def test_dot_scores_take_each_rows_own_candidates_whether_shared_or_not():
    torch.manual_seed(0)
    users, items = torch.randn(3, 4), torch.randn(10, 4)
    shared = torch.tensor([[2, 5, 7]] * 3)
    own = torch.tensor([[2, 5, 7], [1, 1, 9], [7, 5, 2]])
    for candidates in (shared, own):
        expected = torch.stack([items[c] @ u for u, c in zip(users, candidates, strict=True)])
        assert torch.allclose(dot_scores(users, items, candidates), expected, atol=1e-6)
    assert dot_scores(users[:0], items, own[:0]).shape == (0, 3)


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_a_finite_scalar_and_one_step_lowers_it(name):
    model = make(name, p_task=0.5)
    batch = random_batch(1)
    loss, _ = model(batch, torch.Generator().manual_seed(0))
    assert loss.shape == () and torch.isfinite(loss)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    after, _ = model(batch, torch.Generator().manual_seed(0))  # same masks and negatives
    assert float(after.detach()) < float(loss.detach())


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_weights(name):
    def trained(seed):
        model = make(name, seed=seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(seed)
        for step in range(3):
            loss, _ = model(random_batch(step), g)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return model.state_dict()

    first, second, other = trained(5), trained(5), trained(6)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_hardest_of_k_trains_without_stored_negatives():
    model = make("hybrid", negative_mode="hardest_of_k")
    loss, stats = model(random_batch(2), torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and stats["hard_share"] == 0.0


def test_the_baseline_cannot_serve_a_skip_only_user_but_the_hybrid_can():
    tracks = torch.tensor([[3, 4, 0], [5, 6, 7]])
    feedback = torch.tensor([[SKIP, SKIP, PAD], [UP, SKIP, UP]])
    h = History(tracks, torch.zeros_like(tracks), feedback, torch.tensor([0, 0]))
    assert make("baseline").can_serve(h).tolist() == [False, True]
    assert make("hybrid").can_serve(h).tolist() == [True, True]
    assert make("sasrec").can_serve(h).tolist() == [True, True]


def test_the_baseline_scores_ignore_everything_but_positive_history():
    model = make("baseline").eval()
    a = History(
        torch.tensor([[3, 9, 4]]),
        torch.tensor([[1, 2, 1]]),
        torch.tensor([[UP, SKIP, UP]]),
        torch.tensor([1]),
    )
    b = History(torch.tensor([[3, 4]]), torch.tensor([[1, 1]]), torch.tensor([[UP, UP]]), torch.tensor([1]))
    assert torch.allclose(model.score_all(a), model.score_all(b))
    hybrid = make("hybrid").eval()
    assert not torch.allclose(hybrid.score_all(a), hybrid.score_all(b))


def test_compact_keeps_the_last_width_kept_items_in_order():
    keep = torch.tensor([[True, False, True, True, True], [False, False, False, False, False]])
    values = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    (out,) = compact(keep, 3, values)
    assert out.tolist() == [[3, 4, 5], [0, 0, 0]]
    (wide,) = compact(keep, 6, values)
    assert wide.tolist() == [[1, 3, 4, 5, 0, 0], [0] * 6]


def test_positions_count_back_from_the_last_item_and_skip_removed_ones():
    tracks = torch.tensor([[5, 6, 7, 0], [5, 0, 7, 0]])
    assert positions_from_end(tracks).tolist() == [[2, 1, 0, 0], [1, 0, 0, 0]]


def test_next_target_and_skipped_between_match_a_brute_force_reading():
    g = torch.Generator().manual_seed(4)
    targets = torch.rand(3, 9, generator=g) < 0.3
    feedback = torch.randint(1, 5, (3, 9), generator=g)
    following = next_target(targets)
    between = skipped_between(feedback, following)
    for b in range(3):
        for t in range(9):
            later = [j for j in range(t + 1, 9) if targets[b, j]]
            expected = later[0] if later else 9
            assert int(following[b, t]) == expected
            for j in range(9):
                assert bool(between[b, t, j]) == (t < j < expected and int(feedback[b, j]) == SKIP)
    counted = ~targets
    every = skipped_between(feedback, following, counted)
    for b in range(3):
        for t in range(9):
            for j in range(9):
                assert bool(every[b, t, j]) == (t < j < int(following[b, t]) and not bool(targets[b, j]))


def test_sasrec_info_nce_pushes_away_plays_and_downs_in_between_only_when_asked():
    # up, play, down, up: nothing skipped before the second up
    batch = random_batch(seed=1, rows=1, length=4)
    batch.tracks[0] = torch.tensor([3, 4, 5, 6])
    batch.feedback[0] = torch.tensor([UP, PLAY, DOWN, UP])
    batch.targets[0] = torch.tensor([True, False, False, True])
    _, skips = make("sasrec")(batch, torch.Generator().manual_seed(0))
    _, every = make("sasrec", info_nce_negatives="non_positive")(batch, torch.Generator().manual_seed(0))
    assert skips["info_nce"] == 0.0 and every["info_nce"] > 0.0


def test_the_query_carries_the_positive_type_the_model_was_trained_to_predict():
    # A model trained on a plays-only source (Last.fm, MSSD) never updates the 'up' embedding:
    # its scores must not depend on it.
    torch.manual_seed(0)
    model_settings = settings()[0]
    model = build_model("hybrid", N_TRACKS, N_STATIONS, model_settings, (PLAY,)).eval()
    h = History(
        torch.tensor([[3, 4, 5]]),
        torch.tensor([[1, 1, 2]]),
        torch.tensor([[PLAY, SKIP, PLAY]]),
        torch.tensor([1]),
    )
    before = model.score_all(h)
    with torch.no_grad():
        model.network.feedback.weight[UP] += 5.0
    assert torch.allclose(model.score_all(h), before)
    assert (
        query_feedback((PLAY,)) == PLAY and query_feedback((UP, PLAY)) == UP and query_feedback((UP,)) == UP
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_fresh_network_reads_which_tracks_a_history_holds(name):
    # All input embeddings start at one scale. With the station, feedback and position tables
    # at nn.Embedding's N(0, 1) beside tracks at N(0, 0.02), the tracks were about 1% of the
    # summed input: user vectors barely moved with the tracks played, and training on the demo
    # stayed at chance paired accuracy.
    model = make(name).eval()
    batch = random_batch()
    present = batch.tracks != PAD
    g = torch.Generator().manual_seed(1)
    other_tracks = torch.randint(1, N_TRACKS + 1, batch.tracks.shape, generator=g) * present
    other_stations = torch.randint(1, N_STATIONS + 1, batch.tracks.shape, generator=g) * present
    query = torch.ones(batch.rows, dtype=torch.long)
    with torch.no_grad():
        base = model.user_vectors(History(batch.tracks, batch.stations, batch.feedback, query))
        by_track = model.user_vectors(History(other_tracks, batch.stations, batch.feedback, query))
        by_station = model.user_vectors(History(batch.tracks, other_stations, batch.feedback, query))
    moved_by_tracks = (by_track - base).norm(dim=1).mean()
    moved_by_stations = (by_station - base).norm(dim=1).mean()
    assert moved_by_tracks > 0.3 * moved_by_stations


def left_padded(batch):
    """The same rows with their padding moved to the left (the layout gold/training_sequences stores)."""
    lengths = (batch.tracks != PAD).sum(dim=1)
    width = batch.tracks.shape[1]
    index = (torch.arange(width).unsqueeze(0) - (width - lengths).unsqueeze(1)) % width

    def moved(t):
        keep = torch.arange(width).unsqueeze(0) >= (width - lengths).unsqueeze(1)
        return torch.where(keep, t.gather(1, index), torch.zeros_like(t))

    return Batch(
        *(
            moved(getattr(batch, f))
            for f in ("tracks", "stations", "feedback", "targets", "negatives", "tiers")
        )
    )


@pytest.mark.parametrize("name", ["hybrid", "sasrec", "gru4rec"])  # bidirectional; causal; recurrent
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_padding_on_either_side_gives_the_same_states_at_real_positions(name, mode):
    network = make(name).network
    getattr(network, mode)()
    right = random_batch(seed=4, rows=6, length=12)
    left = left_padded(right)
    assert not torch.equal(left.tracks, right.tracks)  # some rows are shorter than the batch
    a = network.hidden(right.tracks, right.stations, right.feedback)
    b = network.hidden(left.tracks, left.stations, left.feedback)
    assert torch.isfinite(b).all()
    assert torch.allclose(a[right.tracks != PAD], b[left.tracks != PAD], atol=1e-5)


@pytest.mark.parametrize("name", ["hybrid", "sasrec", "gru4rec"])  # bidirectional; causal; recurrent
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("side", ["right", "left"])
def test_the_state_at_one_position_per_row_is_the_full_networks_state_there(name, layers, side):
    """Scoring computes the last layer at the read position only (hidden_at); every row's state
    there must be the one the whole network computes, whatever the row's length, its padding's side
    and the position read (a real item, the last one, or padding)."""
    torch.manual_seed(0)
    model_settings = dataclasses.replace(settings()[0], layers=layers)
    network = build_model(name, N_TRACKS, N_STATIONS, model_settings, (UP,)).network.eval()
    batch = random_batch(seed=6, rows=8, length=12)
    batch = batch if side == "right" else left_padded(batch)
    tracks, stations, feedback = batch.tracks.clone(), batch.stations.clone(), batch.feedback.clone()
    tracks[0], stations[0], feedback[0] = PAD, PAD, PAD  # an empty row reads one token
    tracks[0, 0] = network.mask_id
    real = tracks != PAD
    last = torch.where(real, torch.arange(12), -1).max(dim=1).values
    generator = torch.Generator().manual_seed(1)
    anywhere = torch.randint(0, 12, (8,), generator=generator)
    some_real = torch.multinomial(real.float(), 1, generator=generator)[:, 0]
    for index in (last, some_real, anywhere):
        with torch.no_grad():
            full = network.hidden(tracks, stations, feedback)[torch.arange(8), index]
            one = network.hidden_at(tracks, stations, feedback, index)
        assert one.shape == (8, model_settings.dim)
        assert torch.allclose(one, full, atol=1e-5), (one - full).abs().max()


@pytest.mark.parametrize("name", ["sasrec", "gsasrec", "gru4rec", "pnfrec"])
def test_a_causal_loss_and_its_gradients_do_not_depend_on_the_side_padding_sits(name):
    right = random_batch(seed=5, rows=6, length=12)
    losses, grads = [], []
    for batch in (right, left_padded(right)):
        model = make(name, seed=1, not_to_recommend=1.0)
        loss, _ = model(batch, torch.Generator().manual_seed(0))
        loss.backward()
        losses.append(loss.detach())
        grads.append(model.network.track.weight.grad.clone())
    assert torch.allclose(losses[0], losses[1], atol=1e-5)
    assert torch.isfinite(grads[1]).all() and torch.allclose(grads[0], grads[1], atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "gsasrec", "gru4rec", "pnfrec"])
def test_the_slot_scoring_reads_gets_a_gradient_in_training(name):
    """Scoring reads the state after a user's most recent play (position id 0); training must train
    that slot: each row's most recent input predicts the row's last positive."""
    model = make(name)
    network = model.network
    forward, captured = network.hidden, []

    def spy(tracks, stations, feedback):
        states = forward(tracks, stations, feedback)
        states.retain_grad()
        captured.append((tracks, states))
        return states

    network.hidden = spy  # type: ignore[method-assign]
    loss, _ = model(random_batch(seed=4), torch.Generator().manual_seed(0))
    loss.backward()
    tracks, states = captured[0]  # the (positive) encoder scoring reads
    slot = (positions_from_end(tracks) == 0) & (tracks != PAD)
    assert slot.sum() >= 3
    assert (states.grad[slot].abs().sum(dim=-1) > 0).all()
    if hasattr(network, "position"):
        assert network.position.weight.grad[0].abs().sum() > 0


def test_weight_decay_spares_embeddings_norms_and_biases():
    from downbeat.models.train import parameter_groups

    model = make("pnfrec")  # two encoders sharing one track embedding
    decayed, kept = parameter_groups(model, 0.5)
    assert decayed["weight_decay"] == 0.5 and kept["weight_decay"] == 0.0
    ids = {id(p) for p in decayed["params"]}
    never = [m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding | torch.nn.LayerNorm)]
    never += [p for n, p in model.named_parameters() if "bias" in n]
    assert never and not any(id(p) in ids for p in never)
    assert all(p.ndim == 2 for p in decayed["params"]) and decayed["params"]
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))  # each once
    # a track no batch holds keeps its embedding through a step with a large decay
    optimizer = torch.optim.AdamW(parameter_groups(model, 10.0), lr=0.1)
    before = model.network.track.weight[N_TRACKS].detach().clone()
    loss, _ = model(random_batch(seed=1), torch.Generator().manual_seed(0))  # tracks 1..N_TRACKS
    optimizer.zero_grad()
    loss.backward()
    model.network.track.weight.grad[N_TRACKS] = 0.0
    optimizer.step()
    assert torch.equal(model.network.track.weight[N_TRACKS], before)


def test_decay_embeddings_puts_the_embedding_tables_under_weight_decay_and_nothing_else():
    from downbeat.models.train import parameter_groups

    model = make("hybrid")
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    spared, _ = parameter_groups(model, 0.5)
    decayed, kept = parameter_groups(model, 0.5, decay_embeddings=True)
    ids = {id(p) for p in decayed["params"]}
    assert embeddings <= ids and not embeddings & {id(p) for p in spared["params"]}
    assert ids - embeddings == {id(p) for p in spared["params"]}  # norms and biases stay spared
    assert len(decayed["params"]) + len(kept["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("name", ["sasrec", "gsasrec", "bert4rec", "gru4rec"])
def test_separate_output_embeddings_score_from_their_own_table_and_leave_the_inputs_as_drawn(name):
    import dataclasses

    model_settings = settings()[0]
    built = {}
    for output in ("tied", "separate"):
        torch.manual_seed(3)
        ms = dataclasses.replace(model_settings, output_embeddings=output)
        built[output] = build_model(name, N_TRACKS, N_STATIONS, ms, (UP,)).eval()
    tied, separate = built["tied"].network, built["separate"].network
    assert tied.output is None and separate.output is not None
    # the input tables are drawn first, so a seed gives both networks the same inputs
    assert torch.equal(tied.track.weight, separate.track.weight)
    assert torch.equal(tied.item_embeddings(), tied.track.weight[: N_TRACKS + 1])
    assert torch.equal(separate.item_embeddings(), separate.output.weight)
    assert not torch.equal(separate.item_embeddings(), tied.item_embeddings())
    assert float(separate.output.weight[PAD].abs().sum()) == 0.0
    # scores move with the output table only: zeroing a track's output row zeroes its score
    h = history(random_batch())
    with torch.no_grad():
        separate.output.weight[5] = 0.0
    assert torch.all(built["separate"].score_all(h)[:, 5] == 0.0)
    assert torch.all(built["tied"].score_all(h)[:, 5] != 0.0)


def test_init_std_sets_the_scale_every_embedding_table_starts_at():
    import dataclasses

    model_settings = settings()[0]
    for std in (0.02, 1.0):
        torch.manual_seed(0)
        ms = dataclasses.replace(model_settings, dim=64, init_std=std)
        network = build_model("sasrec", 500, N_STATIONS, ms, (UP,)).network
        drawn = network.track.weight[1:]
        assert abs(float(drawn.std()) - std) < 0.05 * std
        assert float(network.track.weight[PAD].abs().sum()) == 0.0


def test_popularity_scores_each_track_by_its_count_of_positive_training_plays_for_every_user():
    model_settings = settings()[0]
    model = build_model("popularity", N_TRACKS, N_STATIONS, model_settings, (UP,))
    tracks = np.array([[0, 3, 5, 3], [7, 3, 5, 5]])
    targets = np.array([[0, 1, 0, 1], [1, 1, 1, 0]])  # positives: 3, 3, 7, 3, 5
    model.count(tracks, targets)
    batch = random_batch(seed=2)
    h = history(batch)
    scores = model.score(h, torch.tensor([[3, 5, 7, 1]] * batch.rows))
    assert scores.tolist() == [[3.0, 1.0, 1.0, 0.0]] * batch.rows
    full = model.score_all(h)
    assert full.shape == (batch.rows, N_TRACKS + 1) and full[0, 0] == float("-inf") and full[0, 3] == 3.0
    assert model.can_serve(h).all()
    with pytest.raises(RuntimeError, match="counting"):
        model(batch, torch.Generator())


@pytest.mark.parametrize("name", ["hybrid", "baseline", "bert4rec"])
def test_without_query_station_a_masked_position_and_a_query_carry_no_station(name):
    from downbeat.models.network import History

    g = torch.Generator().manual_seed(3)
    history = History(
        tracks=torch.randint(1, N_TRACKS + 1, (4, 6), generator=g),
        stations=torch.randint(1, N_STATIONS + 1, (4, 6), generator=g),
        feedback=torch.full((4, 6), UP),
        query_station=torch.tensor([1, 1, 1, 1]),
    )
    other = History(history.tracks, history.stations, history.feedback, torch.tensor([2, 3, 4, 2]))
    for carried in (True, False):
        model = make(name, query_station=carried).eval()
        with torch.no_grad():
            same = torch.allclose(model.user_vectors(history), model.user_vectors(other))
        assert same != carried  # the query's station moves the vector only when it is carried
    if name != "bert4rec":  # the hybrid's training inputs: no station at a masked position
        batch = random_batch(seed=5)
        inputs = make(name, query_station=False, p_task=0.5).cloze_inputs(
            batch, torch.Generator().manual_seed(1)
        )
        assert (inputs.stations[inputs.masked] == PAD).all()
        carried = make(name, query_station=True, p_task=0.5).cloze_inputs(
            batch, torch.Generator().manual_seed(1)
        )
        assert (carried.stations[carried.masked] != PAD).any()


def test_dropout_keeps_each_value_with_chance_one_minus_p_and_scales_the_kept():
    x = torch.ones(200_000, requires_grad=True)
    dropout = Dropout(0.3).train()
    torch.manual_seed(0)
    y = dropout(x)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(out)/d(in) is the mask times its scale
    torch.manual_seed(0)
    assert torch.equal(dropout(x), y)  # the default generator's seed fixes the mask
    assert dropout.eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))


@pytest.mark.parametrize("name", ["sasrec", "hybrid", "bert4rec"])
def test_the_feed_forward_has_the_width_and_activation_the_settings_give(name):
    base = dataclasses.replace(settings()[0], dim=16)
    for width, activation in ((4, "gelu"), (1, "none"), (2, "relu")):
        torch.manual_seed(0)
        ms = dataclasses.replace(base, feedforward=width, activation=activation)
        network = build_model(name, N_TRACKS, N_STATIONS, ms, (UP,)).network
        layer = network.encoder.layers[0]
        assert layer.linear1.weight.shape == (width * 16, 16)
        z = torch.randn(5, 16)
        block = layer.linear2(layer.activation(layer.linear1(z)))
        w1, b1, w2, b2 = layer.linear1.weight, layer.linear1.bias, layer.linear2.weight, layer.linear2.bias
        expected = {"gelu": torch.nn.functional.gelu, "relu": torch.relu, "none": lambda v: v}[activation]
        assert torch.allclose(block, expected(z @ w1.T + b1) @ w2.T + b2, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_written_out_is_torchs_multi_head_attention(causal):
    """Every position's query, one query a row (scoring's last layer), and a row whose keys are all
    padding (bidirectional: it attends to nothing), with biases that are not 0."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    torch.nn.init.normal_(mha.in_proj_bias)
    torch.nn.init.normal_(mha.out_proj.bias)
    x = torch.randn(3, 7, 16, requires_grad=True)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, :3] = True
    padding[2] = not causal
    blocked, mask = (None, causal_mask(padding, 2)) if causal else (padding, None)
    expected, _ = mha(x[:, :], x, x, key_padding_mask=blocked, attn_mask=mask, need_weights=False)
    written = attention(mha, x, x, blocked, mask, 0.0)
    assert torch.allclose(written, expected, atol=1e-5)
    written.sum().backward()
    assert torch.isfinite(x.grad).all()
    last, last_mask = x[:, -1:], None if mask is None else mask[:, -1:]
    expected, _ = mha(last, x, x, key_padding_mask=blocked, attn_mask=last_mask, need_weights=False)
    assert torch.allclose(attention(mha, last, x, blocked, last_mask, 0.0), expected, atol=1e-5)


def test_attention_drops_attention_weights_with_the_chance_it_is_given():
    """The same draw by hand: softmax weights, kept where a uniform draw is >= p, scaled."""
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 2, batch_first=True)
    x = torch.randn(3, 7, 16)
    _, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)  # (B, heads, L, L)
    torch.manual_seed(5)
    kept = (torch.rand_like(weights) >= 0.4) / 0.6
    v = torch.nn.functional.linear(x, mha.in_proj_weight[32:], mha.in_proj_bias[32:])
    heads_v = v.view(3, 7, 2, 8).transpose(1, 2)
    expected = mha.out_proj(((weights * kept) @ heads_v).transpose(1, 2).reshape(3, 7, 16))
    torch.manual_seed(5)
    assert torch.allclose(attention(mha, x, x, None, None, 0.4), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["sasrec", "hybrid"])  # causal; bidirectional
def test_training_with_dropout_runs_the_layers_torchs_encoder_runs(name):
    """With dropout on, training runs each layer through `pre_norm_layer` (every dropout drawn by
    `dropped`): at a dropout too small to drop anything, its states are the encoder's."""
    torch.manual_seed(0)
    ms = dataclasses.replace(settings()[0], layers=2, dropout=1e-9)
    network = build_model(name, N_TRACKS, N_STATIONS, ms, (UP,)).network
    batch = random_batch(seed=3, rows=6, length=10)
    trained = network.train().hidden(batch.tracks, batch.stations, batch.feedback)
    evaluated = network.eval().hidden(batch.tracks, batch.stations, batch.feedback)
    real = batch.tracks != PAD
    assert torch.allclose(trained[real], evaluated[real], atol=1e-5)
    network.train()
    for module in network.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.5
        if isinstance(module, torch.nn.MultiheadAttention):
            module.dropout = 0.5
    dropped = network.hidden(batch.tracks, batch.stations, batch.feedback)
    assert not torch.allclose(dropped[real], evaluated[real], atol=1e-2)
    dropouts = [m for m in network.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(isinstance(m, Dropout) for m in dropouts)  # every one draws through `dropped`
