"""gSASRec, GRU4Rec, BERT4Rec, PNFRec and Pooled: each loss against the same loss computed by hand, one
position at a time, from the model's own states and the same random draws."""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from downbeat.models.losses import full_softmax_loss, gbce_beta, gbce_loss, not_to_recommend_loss
from downbeat.models.negatives import cloze_mask, hard_or_random, hidden_positions, unseen_negatives
from downbeat.models.network import DOWN, PAD, SKIP, UP, History, feedback_cosines
from downbeat.models.zoo import build_model
from tests.models.helpers import N_STATIONS, N_TRACKS, random_batch, settings


def make(name, seed=0, **train):
    torch.manual_seed(seed)
    model_settings = settings(**train)[0]
    return build_model(name, N_TRACKS, N_STATIONS, model_settings, (UP,)).eval()


def real(row):
    """The real positions of a (L,) row, in order."""
    return [i for i in range(len(row)) if int(row[i]) != PAD]


def test_gbce_beta_is_one_uncalibrated_the_sampling_rate_fully_calibrated_and_between_otherwise():
    assert math.isclose(gbce_beta(10, 101, 0.0), 1.0)
    assert math.isclose(gbce_beta(10, 101, 1.0), 0.1)
    assert math.isclose(gbce_beta(10, 101, 0.75), 0.1 * (0.75 * (1 - 10) + 10))  # 0.325
    assert math.isclose(gbce_beta(500, 101, 0.75), 1.0)  # more draws than tracks: alpha is 1


def test_gbce_loss_is_the_mean_bce_over_a_rows_logits_with_the_positive_raised_to_beta():
    positive = torch.tensor([0.5, -1.0])
    negatives = torch.tensor([[0.2, -0.3, 2.0], [1.0, 0.0, -2.0]])
    collide = torch.tensor([[False, False, True], [False, False, False]])
    beta = 0.4
    rows = []
    for n in range(2):
        total = -math.log(torch.sigmoid(positive[n]).item() ** beta)
        for j in range(3):
            if not collide[n, j]:
                total += -math.log(1 - torch.sigmoid(negatives[n, j]).item())
        rows.append(total / 4)
    assert math.isclose(float(gbce_loss(positive, negatives, beta, collide)), sum(rows) / 2, rel_tol=1e-5)


def test_full_softmax_and_not_to_recommend_losses_match_their_formulas():
    hidden = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    items = torch.tensor([[9.0, 9.0], [1.0, 2.0], [0.0, 1.0], [-1.0, 0.5]])  # row 0 padding
    positives = torch.tensor([2, 3])
    expected = 0.0
    for n in range(2):
        logits = [float(hidden[n] @ items[i]) for i in (1, 2, 3)]
        expected += -(logits[int(positives[n]) - 1] - math.log(sum(math.exp(x) for x in logits)))
    assert math.isclose(float(full_softmax_loss(hidden, items, positives)), expected / 2, rel_tol=1e-5)
    scores = torch.tensor([0.3, -2.0])
    assert math.isclose(
        float(not_to_recommend_loss(scores)),
        sum(-math.log(1 - 1 / (1 + math.exp(-s))) for s in (0.3, -2.0)) / 2,
        rel_tol=1e-5,
    )
    assert float(not_to_recommend_loss(torch.zeros(0))) == 0.0


def test_gsasrec_loss_is_gbce_of_each_next_positive_plus_not_to_recommend_on_each_next_down():
    model = make("gsasrec", not_to_recommend=0.7, gbce_t=0.5)
    batch = random_batch(seed=3)
    loss, figures = model(batch, torch.Generator().manual_seed(11))
    # each position that has a next positive its own 20 uniform draws, rows in order, positions
    # left to right within a row
    n_positions = sum(
        any(batch.targets[b, j] for j in real(batch.tracks[b])[k + 1 :])
        for b in range(batch.rows)
        for k in range(len(real(batch.tracks[b])) - 1)
    )
    generator = torch.Generator().manual_seed(11)
    sampled = iter(torch.randint(1, N_TRACKS + 1, (n_positions, 20), generator=generator).tolist())
    beta = gbce_beta(20, N_TRACKS, 0.5)
    with torch.no_grad():
        items = model.network.item_embeddings()
        positive_terms, rejected_terms = [], []
        for b in range(batch.rows):
            positions = real(batch.tracks[b])
            # the row alone, without padding and without its last item (a target, never an input)
            row = [t[b, positions[:-1]].unsqueeze(0) for t in (batch.tracks, batch.stations, batch.feedback)]
            hidden = model.network.hidden(*row)[0]
            for k in range(len(positions) - 1):
                later = [j for j in positions[k + 1 :] if batch.targets[b, j]]
                if later:
                    target = int(batch.tracks[b, later[0]])
                    h = hidden[k]
                    term = -beta * math.log(torch.sigmoid(h @ items[target]).item())
                    for s in next(sampled):
                        if s != target:
                            term += -math.log(1 - torch.sigmoid(h @ items[s]).item())
                    positive_terms.append(term / 21)
                if int(batch.feedback[b, positions[k + 1]]) == DOWN:
                    score = hidden[k] @ items[int(batch.tracks[b, positions[k + 1]])]
                    rejected_terms.append(-math.log(1 - torch.sigmoid(score).item()))
    assert rejected_terms  # the batch has downs after some position
    assert next(sampled, None) is None  # every draw belongs to one position
    expected = sum(positive_terms) / len(positive_terms) + 0.7 * sum(rejected_terms) / len(rejected_terms)
    assert math.isclose(loss.item(), expected, rel_tol=1e-4)
    assert math.isclose(figures["gbce_beta"], beta)
    off, _ = make("gsasrec", gbce_t=0.5)(batch, torch.Generator().manual_seed(11))
    assert math.isclose(off.item(), sum(positive_terms) / len(positive_terms), rel_tol=1e-4)


def next_positive_terms(model, batch, state):
    """-log softmax over the catalog of each position's next positive, position by position:
    `state(b, positions, k)` is the model's state at the k-th real position of row b, computed by hand."""
    items = model.network.item_embeddings()
    terms = []
    with torch.no_grad():
        for b in range(batch.rows):
            positions = real(batch.tracks[b])
            for k in range(len(positions) - 1):
                later = [j for j in positions[k + 1 :] if batch.targets[b, j]]
                if later:
                    logits = state(b, positions, k) @ items[1:].T
                    terms.append(-F.log_softmax(logits, dim=0)[int(batch.tracks[b, later[0]]) - 1].item())
    return terms


def rows_of(batch, b, positions):
    """Row b's track, station and feedback ids at `positions`, as a batch of one (no padding)."""
    return [t[b, positions].unsqueeze(0) for t in (batch.tracks, batch.stations, batch.feedback)]


def test_gru4rec_full_softmax_predicts_each_next_positive_from_the_state_after_each_play():
    model = make("gru4rec", softmax="full")
    batch = random_batch(seed=6)
    loss, _ = model(batch, torch.Generator().manual_seed(0))

    def state(b, positions, k):  # the GRU run on this row alone, without padding and its last item
        return model.network.hidden(*rows_of(batch, b, positions[:-1]))[0, k]

    terms = next_positive_terms(model, batch, state)
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-4)


def up_rows(seed: int, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full rows of random tracks on random stations, every play an up: tracks, stations, feedback."""
    g = torch.Generator().manual_seed(seed)
    tracks = torch.randint(1, N_TRACKS + 1, (rows, length), generator=g)
    stations = torch.randint(1, N_STATIONS + 1, (rows, length), generator=g)
    return tracks, stations, torch.full((rows, length), UP)


def test_a_gru_state_reads_only_the_items_up_to_its_own():
    network = make("gru4rec").network
    tracks, stations, feedback = up_rows(2, 3, 8)
    changed = tracks.clone()
    changed[:, 5:] = (changed[:, 5:] % N_TRACKS) + 1  # other tracks from position 5 on
    with torch.no_grad():
        a = network.hidden(tracks, stations, feedback)
        b = network.hidden(changed, stations, feedback)
    assert torch.allclose(a[:, :5], b[:, :5])
    assert not torch.isclose(a[:, 5:], b[:, 5:]).all(dim=2).any()  # every later state moved


def test_caser_full_softmax_predicts_each_next_positive_from_the_window_before_it():
    model = make("caser", softmax="full", window=3)
    batch = random_batch(seed=6)
    loss, _ = model(batch, torch.Generator().manual_seed(0))

    def state(b, positions, k):  # the network on this position's window alone: its last three items
        return model.network.hidden(*rows_of(batch, b, positions[max(0, k - 2) : k + 1]))[0, -1]

    terms = next_positive_terms(model, batch, state)
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-4)


def test_a_caser_state_reads_its_window_of_items_and_nothing_before_or_after_it():
    network = make("caser", window=3).network
    tracks, stations, feedback = up_rows(2, 3, 8)
    changed = tracks.clone()
    changed[:, 4] = (changed[:, 4] % N_TRACKS) + 1  # another track at position 4
    with torch.no_grad():
        a = network.hidden(tracks, stations, feedback)
        b = network.hidden(changed, stations, feedback)
    same = torch.isclose(a, b).all(dim=2)  # (3, 8)
    assert same[:, :4].all() and same[:, 7:].all()  # before it, and past the window after it
    assert not same[:, 4:7].any()  # the three windows that hold it


def test_bert4rec_sampled_softmax_predicts_each_masked_positive_among_the_drawn_tracks():
    model = make("bert4rec", p_task=0.5, softmax="sampled")
    batch = random_batch(seed=7)
    loss, figures = model(batch, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    masked = cloze_mask(batch.targets, 0.5, g)
    sampled = torch.randint(1, N_TRACKS + 1, (20,), generator=g)
    with torch.no_grad():
        inputs = torch.where(masked, model.network.mask_id, batch.tracks)
        hidden = model.network.hidden(inputs, batch.stations, batch.feedback)
        items = model.network.item_embeddings()
        terms = []
        for b, i in masked.nonzero().tolist():
            target = int(batch.tracks[b, i])
            logits = [float(hidden[b, i] @ items[target])]
            logits += [float(hidden[b, i] @ items[s]) for s in sampled.tolist() if s != target]
            terms.append(-(logits[0] - math.log(sum(math.exp(x) for x in logits))))
    assert figures["masked"] == len(terms) > batch.rows  # every row's last positive, and more
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-4)


def test_pnfrec_loss_is_both_encoders_next_item_losses_and_the_contrast_with_the_rows_negatives():
    model = make("pnfrec", softmax="full", alpha=0.3, beta=0.6)
    batch = random_batch(seed=8)
    loss, figures = model(batch, torch.Generator().manual_seed(0))
    assert model.negative_network.track is model.network.track  # one set of track embeddings
    with torch.no_grad():
        items = model.network.item_embeddings()
        pos_terms, neg_terms, contrast_terms = [], [], []
        for b in range(batch.rows):
            fb = batch.feedback[b]
            pos = [i for i in real(batch.tracks[b]) if batch.targets[b, i]]
            neg = [i for i in real(batch.tracks[b]) if int(fb[i]) in (SKIP, DOWN)]
            negatives = [int(batch.tracks[b, i]) for i in neg]
            for positions, network, terms in (
                (pos, model.network, pos_terms),
                (neg, model.negative_network, neg_terms),
            ):
                if len(positions) < 2:
                    continue  # nothing follows the only item
                # the encoder's sub-sequence but its last item (a target, never an input)
                inputs = positions[:-1]
                row = [t[b, inputs].unsqueeze(0) for t in (batch.tracks, batch.stations, batch.feedback)]
                hidden = network.hidden(*row)[0]
                for k in range(len(positions) - 1):
                    target = int(batch.tracks[b, positions[k + 1]])
                    terms.append(-F.log_softmax(hidden[k] @ items[1:].T, dim=0)[target - 1].item())
                    if network is model.network:
                        others = [n for n in negatives if n != target]
                        if others:
                            logits = [float(hidden[k] @ items[target])]
                            logits += [float(hidden[k] @ items[n]) for n in others]
                            contrast_terms.append(-(logits[0] - math.log(sum(math.exp(x) for x in logits))))
    assert pos_terms and neg_terms and contrast_terms
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert math.isclose(figures["ce_pos"], mean(pos_terms), rel_tol=1e-4)
    assert math.isclose(figures["ce_neg"], mean(neg_terms), rel_tol=1e-4)
    assert math.isclose(figures["contrastive"], mean(contrast_terms), rel_tol=1e-4)
    expected = mean(pos_terms) + 0.3 * mean(neg_terms) + 0.6 * mean(contrast_terms)
    assert math.isclose(loss.item(), expected, rel_tol=1e-4)


def test_pnfrec_reads_positive_history_only_and_cannot_serve_a_user_without_one():
    model = make("pnfrec")
    h = History(
        torch.tensor([[3, 4, 0], [5, 6, 7]]),
        torch.tensor([[1, 1, 0], [1, 2, 1]]),
        torch.tensor([[SKIP, DOWN, PAD], [UP, SKIP, UP]]),
        torch.tensor([1, 1]),
    )
    assert model.can_serve(h).tolist() == [False, True]
    alone = History(
        torch.tensor([[5, 7]]), torch.tensor([[1, 1]]), torch.tensor([[UP, UP]]), torch.tensor([1])
    )
    with torch.no_grad():
        assert torch.allclose(model.user_vectors(h)[1:], model.user_vectors(alone), atol=1e-6)


def test_feedback_cosines_are_the_cosine_similarities_of_the_feedback_embeddings():
    network = make("hybrid").network
    with torch.no_grad():
        network.feedback.weight[UP] = torch.tensor([1.0] + [0.0] * 15)
        network.feedback.weight[DOWN] = torch.tensor([0.0, 2.0] + [0.0] * 14)
        network.feedback.weight[SKIP] = torch.tensor([1.0, 1.0] + [0.0] * 14)
    cosines = feedback_cosines(network)
    assert math.isclose(cosines["up_down"], 0.0, abs_tol=1e-7)
    assert math.isclose(cosines["skip_down"], 1 / math.sqrt(2), rel_tol=1e-6)
    assert math.isclose(cosines["skip_up"], 1 / math.sqrt(2), rel_tol=1e-6)


def test_sasrec_softmax_over_unseen_tracks_ranks_each_next_positive_among_its_rows_own_draw():
    model = make("sasrec", alpha=1.0, beta=0.0, softmax="sampled", negatives_from="unseen")
    batch = random_batch(seed=3)
    loss, _ = model(batch, torch.Generator().manual_seed(9))
    sampled = unseen_negatives(batch.tracks, N_TRACKS, 20, torch.Generator().manual_seed(9))  # (B, 20)
    step = model.next_positive(batch)
    items = model.network.item_embeddings()
    terms = []
    with torch.no_grad():
        for b, i in step.valid.nonzero().tolist():
            h, target = step.hidden[b, i], int(step.positives[b, i])
            assert target not in sampled[b].tolist()  # the row holds its positives: never a negative
            logits = [float(h @ items[target])] + [float(h @ items[s]) for s in sampled[b].tolist()]
            terms.append(-(logits[0] - math.log(sum(math.exp(x) for x in logits))))
    assert len(terms) > batch.rows
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-4)


def test_hybrid_catalog_term_adds_a_weighted_full_softmax_of_each_masked_positive_to_the_pairwise_loss():
    batch = random_batch(seed=4)
    plain = make("hybrid", p_task=0.5, p_hard=1.0, catalog_weight=0.0)
    weighted = make("hybrid", p_task=0.5, p_hard=1.0, catalog_weight=0.5, softmax="full")
    weighted.load_state_dict(plain.state_dict())
    pairwise, _ = plain(batch, torch.Generator().manual_seed(2))
    loss, figures = weighted(batch, torch.Generator().manual_seed(2))
    c = weighted.cloze_inputs(batch, torch.Generator().manual_seed(2))
    with torch.no_grad():
        hidden = weighted.network.hidden(c.tracks, c.stations, c.feedback)[c.masked]
        items = weighted.network.item_embeddings()
        terms = []
        for h, target in zip(hidden, c.positives.tolist(), strict=True):
            logits = [float(h @ items[t]) for t in range(1, N_TRACKS + 1)]
            terms.append(-(logits[target - 1] - math.log(sum(math.exp(x) for x in logits))))
    catalog = sum(terms) / len(terms)
    assert math.isclose(figures["pairwise"], pairwise.item(), rel_tol=1e-5)  # the weight draws nothing
    assert math.isclose(figures["catalog"], catalog, rel_tol=1e-4)
    assert math.isclose(loss.item(), pairwise.item() + 0.5 * catalog, rel_tol=1e-4)


def test_gru4rec_and_caser_take_recsys24s_infonce_beside_their_softmax_when_beta_is_set():
    batch = random_batch(seed=8)
    for name in ("gru4rec", "caser"):
        plain = make(name, beta=0.0, softmax="full")
        contrasted = make(name, beta=0.5, temperature=0.1, softmax="full")
        contrasted.load_state_dict(plain.state_dict())
        base, figures = plain(batch, torch.Generator().manual_seed(0))
        loss, both = contrasted(batch, torch.Generator().manual_seed(0))
        assert "info_nce" not in figures and both["info_nce"] > 0  # the rows hold skips before positives
        assert "sampled_softmax" not in both  # the catalog's softmax is logged as what it is
        assert math.isclose(both["full_softmax"], base.item(), rel_tol=1e-5)
        assert math.isclose(loss.item(), base.item() + 0.5 * both["info_nce"], rel_tol=1e-5)


def test_the_unseen_softmax_of_a_batch_without_a_next_positive_is_zero_not_nan():
    model = make("sasrec", beta=0.0, softmax="sampled", negatives_from="unseen")
    batch = random_batch(seed=3, rows=2)
    batch.targets[:] = False  # no position has a positive after it
    loss, _ = model(batch, torch.Generator().manual_seed(0))
    assert loss.item() == 0.0


def test_bert4rec_without_query_station_trains_as_if_masked_positions_had_no_station():
    batch = random_batch(seed=7)
    hidden = make("bert4rec", p_task=0.5, softmax="full", query_station=False)
    carried = make("bert4rec", p_task=0.5, softmax="full", query_station=True)
    masked = cloze_mask(batch.targets, 0.5, torch.Generator().manual_seed(5))
    stripped = dataclasses.replace(batch, stations=batch.stations.masked_fill(masked, PAD))
    with torch.no_grad():
        a, _ = hidden(batch, torch.Generator().manual_seed(5))
        b, _ = carried(stripped, torch.Generator().manual_seed(5))
        c, _ = carried(batch, torch.Generator().manual_seed(5))
    assert math.isclose(a.item(), b.item(), rel_tol=1e-6) and not math.isclose(
        a.item(), c.item(), rel_tol=1e-6
    )


def test_a_caser_state_is_the_same_whichever_side_its_row_is_padded_on():
    network = make("caser", window=3).network
    tracks, stations, feedback = up_rows(4, 2, 5)
    pad = torch.zeros((2, 3), dtype=torch.long)
    with torch.no_grad():
        right = network.hidden(*(torch.cat([x, pad], 1) for x in (tracks, stations, feedback)))[:, :5]
        left = network.hidden(*(torch.cat([pad, x], 1) for x in (tracks, stations, feedback)))[:, 3:]
    assert torch.allclose(right, left, atol=1e-6)


def pooled_user(model, tracks, stations, feedback, keep):
    """One row's pooled user vector and log station shares, by hand from the model's tables."""
    net = model.network
    kept = [k for k in range(len(tracks)) if keep[k]]
    total = torch.zeros(net.settings.dim)
    counts = torch.zeros(N_STATIONS + 1)
    for k in kept:
        f = int(feedback[k])
        total += net.track.weight[int(tracks[k])] * (1 + model.gate.weight[f]) + net.feedback.weight[f]
        counts[int(stations[k])] += 1
    counts[PAD] = 0
    share = torch.log((counts + 0.5) / (counts.sum() + 0.5 * N_STATIONS))
    return total / math.sqrt(max(len(kept), 1)), share


def pooled_prior(model, share, track):
    """The catalog prior of one track: scale * its stations' shares, weighted by its plays there, + bias;
    a track never counted as if on no station (an unheard one)."""
    counts = model.station_counts[track].float()
    if float(counts.sum()) == 0:
        return float(model.prior_scale * share[PAD] + model.bias[track])
    return float(model.prior_scale * (share * counts / counts.sum()).sum() + model.bias[track])


def test_pooled_loss_is_the_pairwise_logistic_of_each_masked_positive_plus_the_priors_catalog_softmax():
    batch = random_batch(seed=4)
    model = make("pooled", p_task=0.5, p_hard=1.0, history_dropout=0.0, catalog_weight=0.5)
    with torch.no_grad():  # a prior that is not flat: biases and a scale of their own
        model.bias.normal_(0, 1, generator=torch.Generator().manual_seed(3))
        model.prior_scale.fill_(0.7)
    loss, figures = model(batch, torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(2)  # the same draws, in the model's order
    masked = cloze_mask(batch.targets, 0.5, g)
    positives = batch.tracks[masked]
    negatives, used_hard = hard_or_random(positives, batch.negatives[masked], 1.0, N_TRACKS, g)
    removed = hidden_positions(batch.tracks, masked, negatives, used_hard)
    keep = (batch.tracks != PAD) & ~masked & ~removed
    # the station counts the forward pass added: every (track, station) of the batch
    expected_counts = torch.zeros(N_TRACKS + 1, N_STATIONS + 1, dtype=torch.float64)
    present = batch.tracks != PAD
    for t, s in zip(batch.tracks[present].tolist(), batch.stations[present].tolist(), strict=True):
        expected_counts[t, s] += 1
    assert torch.equal(model.station_counts, expected_counts)
    items = model.network.item_embeddings()
    pair_terms, catalog_terms = [], []
    with torch.no_grad():
        for (r, _), positive, negative in zip(
            masked.nonzero().tolist(), positives.tolist(), negatives.tolist(), strict=True
        ):
            user, share = pooled_user(model, batch.tracks[r], batch.stations[r], batch.feedback[r], keep[r])
            pair_terms.append(
                math.log1p(math.exp(float(user @ items[negative]) - float(user @ items[positive])))
            )
            logits = [float(user @ items[t]) + pooled_prior(model, share, t) for t in range(1, N_TRACKS + 1)]
            catalog_terms.append(-(logits[positive - 1] - math.log(sum(math.exp(x) for x in logits))))
    assert used_hard.any() and len(pair_terms) > batch.rows
    pairwise, catalog = sum(pair_terms) / len(pair_terms), sum(catalog_terms) / len(catalog_terms)
    assert math.isclose(figures["pairwise"], pairwise, rel_tol=1e-4)
    assert math.isclose(figures["catalog"], catalog, rel_tol=1e-4)
    assert math.isclose(loss.item(), pairwise + 0.5 * catalog, rel_tol=1e-4)


def test_pooled_scores_are_the_pair_score_plus_the_blended_prior_and_score_all_agrees():
    batch = random_batch(seed=6)
    model = make("pooled", catalog_blend=0.4)
    model(batch, torch.Generator().manual_seed(0))  # counts the batch's stations
    model.eval()
    with torch.no_grad():
        model.bias.normal_(0, 1, generator=torch.Generator().manual_seed(5))
    query = torch.ones(batch.rows, dtype=torch.long)
    history = History(batch.tracks, batch.stations, batch.feedback, query)
    candidates = torch.randint(1, N_TRACKS + 1, (batch.rows, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = model.score(history, candidates)
        every = model.score_all(history)
        items = model.network.item_embeddings()
        for r in range(batch.rows):
            user, share = pooled_user(
                model, batch.tracks[r], batch.stations[r], batch.feedback[r], batch.tracks[r] != PAD
            )
            for c, track in enumerate(candidates[r].tolist()):
                expected = float(user @ items[track]) + 0.4 * pooled_prior(model, share, track)
                assert math.isclose(float(scores[r, c]), expected, rel_tol=1e-4, abs_tol=1e-5)
    assert torch.allclose(every.gather(1, candidates), scores, atol=1e-5)
    assert torch.isinf(every[:, PAD]).all()
    # a track the training rows never held scores as if on an unheard station: below any played one
    unseen = [t for t in range(1, N_TRACKS + 1) if float(model.station_counts[t].sum()) == 0]
    assert unseen
    with torch.no_grad():
        _, share = pooled_user(
            model, batch.tracks[0], batch.stations[0], batch.feedback[0], batch.tracks[0] != PAD
        )
        prior = model.prior(share.unsqueeze(0), None)[0] - model.bias
    played = [int(s) for s in batch.stations[0][batch.tracks[0] != PAD]]
    assert all(float(prior[t]) < float(model.prior_scale * share[s]) for t in unseen for s in played)


def test_pooled_trains_every_parameter_it_has_so_ddp_finds_a_gradient_for_each():
    batch = random_batch(seed=3)
    for weight in (1.0, 0.0):  # without the catalog term, the prior is frozen
        model = make("pooled", catalog_weight=weight)
        loss, _ = model(batch, torch.Generator().manual_seed(0))
        loss.backward()
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
        assert ("bias" in trainable) == (weight > 0) and "network.station.weight" not in trainable


def test_pooled_history_dropout_of_one_leaves_every_user_vector_empty_so_each_pair_scores_even():
    model = make("pooled", history_dropout=1.0, catalog_weight=0.0)
    loss, figures = model(random_batch(seed=2), torch.Generator().manual_seed(0))
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6) and "catalog" not in figures
