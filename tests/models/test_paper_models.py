"""gSASRec, GRU4Rec, BERT4Rec and PNFRec: each loss against the same loss computed by hand, one
position at a time, from the model's own states and the same random draws."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from downbeat.models.losses import full_softmax_loss, gbce_beta, gbce_loss, not_to_recommend_loss
from downbeat.models.negatives import cloze_mask
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


def test_gru4rec_full_softmax_predicts_each_next_positive_from_the_state_after_each_play():
    model = make("gru4rec", softmax="full")
    batch = random_batch(seed=6)
    loss, _ = model(batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        items = model.network.item_embeddings()
        terms = []
        for b in range(batch.rows):
            positions = real(batch.tracks[b])
            # the GRU run on this row alone, without any padding and without its last item
            row = [t[b, positions[:-1]].unsqueeze(0) for t in (batch.tracks, batch.stations, batch.feedback)]
            hidden = model.network.hidden(*row)[0]
            for k in range(len(positions) - 1):
                later = [j for j in positions[k + 1 :] if batch.targets[b, j]]
                if later:
                    logits = hidden[k] @ items[1:].T
                    terms.append(-F.log_softmax(logits, dim=0)[int(batch.tracks[b, later[0]]) - 1].item())
    assert math.isclose(loss.item(), sum(terms) / len(terms), rel_tol=1e-4)


def test_a_gru_state_reads_only_the_items_up_to_its_own():
    network = make("gru4rec").network
    g = torch.Generator().manual_seed(2)
    tracks = torch.randint(1, N_TRACKS + 1, (3, 8), generator=g)
    stations = torch.randint(1, N_STATIONS + 1, (3, 8), generator=g)
    feedback = torch.full((3, 8), UP)
    changed = tracks.clone()
    changed[:, 5:] = (changed[:, 5:] % N_TRACKS) + 1  # other tracks from position 5 on
    with torch.no_grad():
        a = network.hidden(tracks, stations, feedback)
        b = network.hidden(changed, stations, feedback)
    assert torch.allclose(a[:, :5], b[:, :5])
    assert not torch.isclose(a[:, 5:], b[:, 5:]).all(dim=2).any()  # every later state moved


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
