"""What every architecture shares: the batch, the embedding-sum transformer, and scoring.

Padding (id 0) may sit on either side of a row: training batches are left-padded (the layout
gold/training_sequences stores), scoring histories right-padded. Position ids count back from each
row's most recent item (0 = most recent), so a training row, whose last item is a positive, and a
scoring row, whose last item is the query, put the prediction at the same position whatever the
padding.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from downbeat.models.contract import DOWN_ID as DOWN
from downbeat.models.contract import N_FEEDBACK, PAD
from downbeat.models.contract import PLAY_ID as PLAY
from downbeat.models.contract import SKIP_ID as SKIP
from downbeat.models.contract import UP_ID as UP
from downbeat.models.settings import NetworkSettings, SoftmaxSettings

__all__ = ["DOWN", "N_FEEDBACK", "PAD", "PLAY", "SKIP", "UP"]

# An architecture's own settings (models/<name>.py), which `Recommender.settings` holds.
S = TypeVar("S")


def dropped(x: Tensor, p: float) -> Tensor:
    """Dropout in training: each value kept with chance 1 - p and scaled by 1 / (1 - p). On the
    CPU the keep mask is drawn as uniform floats (kept where >= p) from the default generator: the
    same distribution as torch's dropout, drawn about 3x faster than the `bernoulli_` its CPU kernel
    uses, which made dropout about half of a SASRec training step at dropout 0.5 on two cores
    (docs/performance.md). Elsewhere torch's fused kernel draws it."""
    if p == 0:
        return x
    if not x.is_cpu:
        return F.dropout(x, p, training=True)
    if p == 1:
        return x * 0.0
    return x * (torch.rand_like(x) >= p) * (1.0 / (1.0 - p))


class Dropout(nn.Dropout):
    """nn.Dropout through `dropped`."""

    def forward(self, x: Tensor) -> Tensor:
        return dropped(x, self.p) if self.training else x


def query_feedback(positive_feedback: tuple[int, ...]) -> int:
    """The feedback code a scoring query carries: the positive type the model was trained to
    predict (up where the source has ups, else play). A query marked 'up' for a model that only
    ever predicted plays would add an embedding that never received a gradient."""
    if not positive_feedback:
        return UP
    return UP if UP in positive_feedback else min(positive_feedback)


@dataclass
class Batch:
    """Aligned (B, L) tensors of training rows, left-padded with 0 (the most recent item last)."""

    tracks: Tensor  # (B, L) long, track idx 1..n
    stations: Tensor  # (B, L) long, station idx (0 = none)
    feedback: Tensor  # (B, L) long, FEEDBACK_IDS
    targets: Tensor  # (B, L) bool, positions that may be predicted (positives)
    negatives: Tensor  # (B, L) long, stored hard negative (0 = none)
    tiers: Tensor  # (B, L) long, its cascade tier (0 = none)

    def to(self, device: torch.device | str) -> Batch:
        """On `device`, integer columns as int64 (a loader may hand over narrower types: less to copy)."""

        def moved(t: Tensor) -> Tensor:
            t = t.to(device, non_blocking=True)
            return t if t.dtype in (torch.bool, torch.int64) else t.long()

        return Batch(**{f.name: moved(getattr(self, f.name)) for f in fields(self)})

    def pin_memory(self) -> Batch:
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    @property
    def rows(self) -> int:
        return int(self.tracks.shape[0])


@dataclass
class History:
    """What a model scores from: users' recent plays (right-padded) and the query station."""

    tracks: Tensor  # (B, L) long
    stations: Tensor  # (B, L) long
    feedback: Tensor  # (B, L) long
    query_station: Tensor  # (B,) long

    def to(self, device: torch.device | str) -> History:
        return History(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def compact(keep: Tensor, width: int, *columns: Tensor) -> tuple[Tensor, ...]:
    """Move the kept positions of each row to the left, in order, keeping at most the last `width`.

    keep: (B, L) bool; columns: (B, L) each. Returns (B, width) tensors, 0 where nothing is kept.
    """
    b, length = keep.shape
    index = torch.arange(length, device=keep.device).expand(b, length)
    order = torch.where(keep, index, index + length).argsort(dim=1)  # kept first, in order
    count = keep.sum(dim=1)  # (B,)
    start = (count - width).clamp(min=0)  # drop the oldest when more than `width` are kept
    slots = torch.arange(width, device=keep.device).expand(b, width)
    source = order.gather(1, (start.unsqueeze(1) + slots).clamp(max=length - 1))  # (B, W)
    valid = slots < count.clamp(max=width).unsqueeze(1)
    return tuple(torch.where(valid, c.gather(1, source), torch.zeros_like(source)) for c in columns)


def real_first(tracks: Tensor) -> Tensor:
    """(B, L) the order that moves each row's real items to its front, in order, padding after
    (either padding side); `order.argsort(dim=1)` puts them back."""
    b, length = tracks.shape
    index = torch.arange(length, device=tracks.device).expand(b, length)
    return torch.where(tracks != PAD, index, index + length).argsort(dim=1)


def reordered(x: Tensor, order: Tensor) -> Tensor:
    """(B, L, D) `x` with each row's positions taken in `order` (B, L)."""
    return x.gather(1, order.unsqueeze(2).expand(-1, -1, x.shape[2]))


def positions_from_end(tracks: Tensor) -> Tensor:
    """(B, L) position ids: the number of non-padding items after each one (0 = the row's last).

    Padding anywhere in the row (removed inputs) is skipped, as if those items had never been.
    """
    present = (tracks != PAD).long()
    after = present.flip(1).cumsum(1).flip(1) - present  # (B, L) items strictly after
    return after * present


def without_last(tracks: Tensor) -> Tensor:
    """(B, L) `tracks` with each row's last real item replaced by padding (either padding side).

    A causal model trains on a row's items but its last, predicting the items after each (kang205's
    and gSASRec's `items[:-1]` -> `items[1:]`): the row's last input then sits at position id 0,
    the slot scoring reads after a user's most recent play. Fed the whole row, position 0 would be
    the last positive, which has no next positive to learn from, and never get a gradient."""
    present = tracks != PAD
    after = present.flip(1).cumsum(1).flip(1) - present.long()  # (B, L) real items strictly after
    return tracks.masked_fill(present & (after == 0), PAD)


def causal_mask(padding: Tensor, heads: int) -> Tensor:
    """(B * heads, L, L) bool, True = blocked: the future and padding, except each position itself.

    A left-padded position under a causal mask has only padding before it; letting every position
    see itself keeps its attention row from being blocked entirely, which some attention kernels
    turn into NaN (and NaN gradients), whatever padding the row has. Real positions never read a
    padding position, so their states are those of the row without its padding.
    """
    length = padding.shape[1]
    future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=padding.device), 1)
    itself = torch.eye(length, dtype=torch.bool, device=padding.device)
    blocked = (future | padding.unsqueeze(1)) & ~itself  # (B, L, L)
    return blocked.repeat_interleave(heads, dim=0)


def attention(
    mha: nn.MultiheadAttention,
    query: Tensor,
    keys: Tensor,
    blocked: Tensor | None,
    mask: Tensor | None,
    p: float,
) -> Tensor:
    """`mha(query, keys, keys, key_padding_mask=blocked, attn_mask=mask)`'s output written out
    (batch first, one packed input projection, boolean masks), with the attention weights' dropout
    at `p` drawn by `dropped`: torch's attention draws it with `bernoulli_`. query (B, Lq, D), keys
    (B, L, D); `blocked` (B, L) and `mask` (B * heads, Lq, L) True = not attended."""
    b, lq, d = query.shape
    heads = mha.num_heads
    weight, bias = mha.in_proj_weight, mha.in_proj_bias
    k, v = F.linear(keys, weight[d:], None if bias is None else bias[d:]).chunk(2, dim=-1)
    q = F.linear(query, weight[:d], None if bias is None else bias[:d])

    def split(t: Tensor) -> Tensor:  # (B, heads, length, D / heads)
        return t.view(b, t.shape[1], heads, d // heads).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) * (d // heads) ** -0.5  # (B, heads, Lq, L)
    hidden = torch.zeros(1, 1, 1, 1, dtype=torch.bool, device=query.device)
    if mask is not None:
        hidden = hidden | mask.view(b, heads, lq, -1)
    if blocked is not None:
        hidden = hidden | blocked[:, None, None, :]
    # The lowest finite score (exactly 0 after the softmax beside any key not blocked), and 0 for a
    # query whose every key is blocked: it attends to nothing (a zero vector, as torch's attention
    # gives), where -inf would give NaN and NaN gradients. A causal mask never blocks a whole row.
    weights = torch.softmax(scores.masked_fill(hidden, torch.finfo(scores.dtype).min), dim=-1)
    nothing = hidden.all(dim=-1, keepdim=True)
    if nothing.any():
        weights = weights.masked_fill(nothing, 0.0)
    weights = dropped(weights, p)
    return mha.out_proj((weights @ split(v)).transpose(1, 2).reshape(b, lq, d))


def pre_norm_layer(
    layer: nn.TransformerEncoderLayer,
    x: Tensor,
    at: Tensor | None,
    blocked: Tensor | None,
    mask: Tensor | None,
) -> Tensor:
    """A pre-norm encoder layer's output on (B, L, D) `x`: at every position ((B, L, D)), or at one
    position per row, `at` (B,), only ((B, D)). `blocked` (B, L) True = a key not to attend, `mask`
    (B * heads, L, L) one per query. Attention runs as scaled dot product: the query is never the
    key object itself, so PyTorch's native fast path, whose masked softmax costs about as much
    as the rest of the layer on the CPU, is not taken."""
    n = layer.norm1(x)
    if at is None:
        query, base = n[:, :], x  # a view: not `n` itself
    else:
        rows = torch.arange(x.shape[0], device=x.device)
        query, base = n[rows, at].unsqueeze(1), x[rows, at].unsqueeze(1)
    mha, p = layer.self_attn, layer.self_attn.dropout if layer.training else 0.0
    if p > 0 and x.is_cpu:
        attended = attention(mha, query, n, blocked, mask, p)
    else:
        attended, _ = mha(query, n, n, key_padding_mask=blocked, attn_mask=mask, need_weights=False)
    h = base + layer.dropout1(attended)
    h = h + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(h))))))
    return h if at is None else h[:, 0]


class InputNetwork(nn.Module):
    """The inputs every network reads: track + station + feedback embeddings, summed.

    Track ids: 0 padding, 1..n_tracks the catalog, n_tracks + 1 the mask token. A score is a dot
    product with a track's output embedding: its input embedding (`output_embeddings: tied`) or a
    row of a table of its own (`separate`).
    """

    def __init__(self, n_tracks: int, n_stations: int, settings: NetworkSettings) -> None:
        super().__init__()
        self.n_tracks, self.n_stations, self.settings = n_tracks, n_stations, settings
        self.mask_id = n_tracks + 1
        d = settings.dim
        self.track = nn.Embedding(n_tracks + 2, d, padding_idx=PAD)
        self.station = nn.Embedding(n_stations + 1, d, padding_idx=PAD)
        self.feedback = nn.Embedding(N_FEEDBACK, d, padding_idx=PAD)
        self.dropout = Dropout(settings.dropout)
        self.norm = nn.LayerNorm(d)
        # drawn in initialise, last (an empty weight consumes no random numbers here)
        empty = torch.empty(n_tracks + 1, d)
        separate = settings.output_embeddings == "separate"
        self.output = nn.Embedding(n_tracks + 1, d, PAD, _weight=empty) if separate else None

    def initialise(self, *more: nn.Embedding) -> None:
        """Every embedding table at one scale, N(0, init_std), padding rows at 0. A subclass calls it
        once its own layers exist, so a seed draws the weights in one fixed order (a separate
        output table last, so tied networks draw what they always drew)."""
        output = () if self.output is None else (self.output,)
        for embedding in (self.track, self.station, self.feedback, *more, *output):
            nn.init.normal_(embedding.weight, std=self.settings.init_std)
        with torch.no_grad():
            for embedding in (self.track, self.station, self.feedback, *output):
                embedding.weight[PAD].zero_()

    def embedded(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        """(B, L, D) the summed input embeddings (0 at padding)."""
        return self.track(tracks) + self.station(stations) + self.feedback(feedback)

    def hidden(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        """(B, L, D) hidden states of padded (B, L) inputs; padding is never read."""
        raise NotImplementedError

    def hidden_at(self, tracks: Tensor, stations: Tensor, feedback: Tensor, index: Tensor) -> Tensor:
        """(B, D) each row's hidden state at its position `index` (B,): `hidden(...)[rows, index]`,
        which a network may compute without the states no one reads (scoring reads one a row)."""
        rows = torch.arange(tracks.shape[0], device=tracks.device)
        return self.hidden(tracks, stations, feedback)[rows, index]

    def item_embeddings(self) -> Tensor:
        """(n_tracks + 1, D): row i scores track i (row 0, padding, is never a candidate)."""
        if self.output is not None:
            return self.output.weight
        return self.track.weight[: self.n_tracks + 1]


class SequenceNetwork(InputNetwork):
    """The inputs plus position embeddings into a pre-norm transformer encoder."""

    def __init__(self, n_tracks: int, n_stations: int, settings: NetworkSettings, *, causal: bool) -> None:
        super().__init__(n_tracks, n_stations, settings)
        self.causal = causal
        d = settings.dim
        self.position = nn.Embedding(settings.max_length, d)
        activation = nn.Identity() if settings.activation == "none" else settings.activation
        layer = nn.TransformerEncoderLayer(
            d,
            settings.heads,
            settings.feedforward * d,
            settings.dropout,
            batch_first=True,
            norm_first=True,
            activation=activation,
        )
        layer.dropout, layer.dropout1, layer.dropout2 = (Dropout(settings.dropout) for _ in range(3))
        self.encoder = nn.TransformerEncoder(layer, settings.layers, enable_nested_tensor=False)
        self.initialise(self.position)

    def hidden(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        """(B, L, D) hidden states of padded (B, L) inputs; padding is never attended to."""
        padding = tracks == PAD  # (B, L)
        x = self.inputs(tracks, stations, feedback)
        mask = causal_mask(padding, self.settings.heads) if self.causal else None
        if self.training and self.settings.dropout > 0 and x.is_cpu:  # every dropout through `dropped`
            for layer in self.encoder.layers:
                x = pre_norm_layer(layer, x, None, None if self.causal else padding, mask)
            return self.norm(x)
        h = self.encoder(x, mask=mask) if self.causal else self.encoder(x, src_key_padding_mask=padding)
        return self.norm(h)

    def inputs(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        """(B, L, D) the encoder's input: embeddings plus positions, after dropout."""
        positions = positions_from_end(tracks).clamp(max=self.settings.max_length - 1)
        x = self.embedded(tracks, stations, feedback)
        if self.settings.scale_embeddings:  # kang205's SASRec: inputs * sqrt(dim), then positions
            x = x * self.settings.dim**0.5
        return self.dropout(x + self.position(positions))

    def hidden_at(self, tracks: Tensor, stations: Tensor, feedback: Tensor, index: Tensor) -> Tensor:
        """Every layer but the last on every position, the last on the read position only: its
        keys and values still come from every position, its query, feed-forward and norm from one
        (a pre-norm layer's output at a position needs nothing else). The same states as `hidden`
        up to float rounding, at about two thirds of its cost on the CPU (docs/performance.md)."""
        padding = tracks == PAD
        x = self.inputs(tracks, stations, feedback)
        causal = causal_mask(padding, self.settings.heads) if self.causal else None
        for layer in self.encoder.layers[:-1]:
            x = pre_norm_layer(layer, x, None, None if self.causal else padding, causal)
        blocked = padding  # the keys the read position may not attend to: causal_mask's row, or padding
        if self.causal:
            keys = torch.arange(x.shape[1], device=x.device)
            at = index.unsqueeze(1)
            blocked = (padding & (keys != at)) | (keys > at)  # a position sees itself
        return self.norm(pre_norm_layer(self.encoder.layers[-1], x, index, blocked, None))


class GRUNetwork(InputNetwork):
    """The inputs into a GRU (GRU4Rec): causal, each state reads the real items up to its own.

    Rows are packed to the left before the GRU and the states put back where their items were, so
    padding on either side, or removed items inside a row, never enter a state.
    """

    causal = True

    def __init__(self, n_tracks: int, n_stations: int, settings: NetworkSettings) -> None:
        super().__init__(n_tracks, n_stations, settings)
        self.gru = nn.GRU(settings.dim, settings.dim, num_layers=settings.layers, batch_first=True)
        self.initialise()

    def hidden(self, tracks: Tensor, stations: Tensor, feedback: Tensor) -> Tensor:
        order = real_first(tracks)
        h, _ = self.gru(self.dropout(reordered(self.embedded(tracks, stations, feedback), order)))
        return reordered(self.norm(h), order.argsort(dim=1))


FEEDBACK_PAIRS = {"skip_down": (SKIP, DOWN), "skip_up": (SKIP, UP), "up_down": (UP, DOWN)}


def dot_scores(users: Tensor, items: Tensor, candidates: Tensor) -> Tensor:
    """(B, C) dot products of each row's user vector (B, D) with its candidates' rows of `items`.
    Rows that share one candidate list (scoring the whole catalog, as next-item evaluation does)
    take one matrix product instead of gathering a (B, C, D) copy of the items: on the CPU at 64
    rows x 3,416 tracks x 128 dims, 1 ms against 119 ms (docs/performance.md)."""
    if candidates.shape[0] > 0 and bool((candidates == candidates[:1]).all()):
        return users @ items[candidates[0]].T
    return torch.einsum("bd,bcd->bc", users, items[candidates])


def feedback_cosines(network: InputNetwork) -> dict[str, float]:
    """Cosine similarity of the learnt feedback-type embeddings, per pair (UMAP'24 reports skip-down
    0.82, skip-up 0.16, up-down 0.00: a skip reads like a mild thumb-down)."""
    weight = network.feedback.weight.detach().float().cpu()
    out = {}
    for name, (a, b) in FEEDBACK_PAIRS.items():
        out[name] = float(F.cosine_similarity(weight[a], weight[b], dim=0))
    return out


class Recommender(nn.Module, Generic[S]):
    """A model that trains on Batches (forward returns the loss) and scores Histories."""

    name: str = ""
    # Whether every feedback type's embedding is trained (read as input), so that their cosine
    # similarities mean something (not for models that read positives only).
    learns_feedback_embeddings: bool = True
    # The validation figure of the model's own task (models/validation.py), which `train.select_on:
    # auto` stops on: next-item models rank the catalog; pair models (the UMAP'24 hybrid) order pairs.
    selection_metric: str = "ndcg@10_pos"
    # False for a model fit in one counting pass (popularity) instead of by fit()'s gradient steps.
    learns_by_gradient: bool = True

    # What the architecture is trained for, in a line (the registered version's description).
    objective: str = ""

    def __init__(self, network: InputNetwork, settings: S, positive_feedback: tuple[int, ...]):
        super().__init__()
        self.network = network
        self.settings = settings  # the architecture's own (config `model.<name>`)
        self.positive_feedback = positive_feedback

    @property
    def n_tracks(self) -> int:
        return self.network.n_tracks

    def sampled_tracks(
        self, count: int, generator: torch.Generator, device: torch.device, rows: int | None = None
    ) -> Tensor:
        """`count` uniform track ids: (count,), one set for the whole batch, or (rows, count), a
        set for each of `rows` (training rows, or positions) of its own."""
        shape = (count,) if rows is None else (rows, count)
        return torch.randint(1, self.n_tracks + 1, shape, generator=generator, device=device)

    def softmax_negatives(
        self, softmax: SoftmaxSettings, generator: torch.Generator, device: torch.device
    ) -> Tensor | None:
        """The negatives of a next-item softmax: `sampled_negatives` tracks, or None for the whole
        catalog (`softmax: full`; then nothing is drawn)."""
        if softmax.softmax == "full":
            return None
        return self.sampled_tracks(softmax.sampled_negatives, generator, device)

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        """The training loss of one batch (a scalar) and figures worth logging."""
        raise NotImplementedError

    def user_vectors(self, history: History) -> Tensor:
        """(B, D): one vector per row; a track's score is its dot product with this vector."""
        raise NotImplementedError

    def inputs_of(self, history: History) -> Tensor:
        """(B, L) bool: which history positions the model reads."""
        return history.tracks != PAD

    def can_serve(self, history: History) -> Tensor:
        """(B,) bool: whether the model has any input for the row (its user is covered)."""
        return self.inputs_of(history).any(dim=1)

    def score(self, history: History, candidates: Tensor) -> Tensor:
        """(B, C) scores of candidate track ids (B, C)."""
        return dot_scores(self.user_vectors(history), self.network.item_embeddings(), candidates)

    def score_all(self, history: History) -> Tensor:
        """(B, n_tracks + 1) scores of every catalog track (column 0, padding, is -inf)."""
        scores = self.user_vectors(history) @ self.network.item_embeddings().T
        scores[:, PAD] = float("-inf")
        return scores
