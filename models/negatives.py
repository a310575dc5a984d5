"""Masking and negative sampling: standalone functions over whole batches (any device).

Every function takes an explicit `torch.Generator` on the batch's device, so a seeded run draws
the same masks and negatives whatever else consumes random numbers.
"""

from __future__ import annotations

import torch
from torch import Tensor

PAD = 0


def cloze_mask(targets: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Which positions to mask: each row's last target always, and every other target position
    with probability `p` (UMAP'24: the last positive of a row is always predicted).

    targets: (B, L) bool, the positions that may be masked (positives). Returns (B, L) bool, True
    only at target positions. Scoring asks for the track after the history, so the last target,
    the position whose right context is empty, is the one training must never skip.
    """
    draw = torch.rand(targets.shape, generator=generator, device=targets.device) < p  # (B, L)
    masked = draw & targets
    positions = torch.arange(targets.shape[1], device=targets.device).expand_as(targets)
    last = torch.where(targets, positions, -1).max(dim=1).values  # (B,) -1 = no target
    rows = (last >= 0).nonzero(as_tuple=True)[0]
    masked[rows, last[rows]] = True
    return masked


def random_negatives(
    positives: Tensor, n_tracks: int, generator: torch.Generator, k: int | None = None
) -> Tensor:
    """Uniform track ids in 1..n_tracks, never equal to the positive at the same place.

    positives: (N,) ids in 1..n_tracks. Returns (N,) or, with `k`, (N, k). Drawing from the
    n_tracks - 1 other ids and stepping over the positive keeps the draw exactly uniform.
    """
    if n_tracks < 2:
        raise ValueError("negative sampling needs at least two tracks in the catalog")
    shape = positives.shape if k is None else (*positives.shape, k)
    draw = torch.randint(1, n_tracks, shape, generator=generator, device=positives.device)
    anchor = positives if k is None else positives.unsqueeze(-1)
    return draw + (draw >= anchor).long()


def unseen_negatives(rows: Tensor, n_tracks: int, count: int, generator: torch.Generator) -> Tensor:
    """`count` distinct track ids per row, drawn uniformly from the tracks the row does not hold
    (RecSys'24 samples its softmax's negatives from the items a user has not played).

    rows: (B, L) track ids, 0 padding. Returns (B, count) ids in 1..n_tracks, without repeats in a
    row; a row holding more than n_tracks - count tracks gets some of its own tracks at the end
    (its unseen ones first), so the shape holds whatever the catalog. One uniform key per
    (row, track), the row's own tracks keyed past every other: memory (B, n_tracks).
    """
    if not 1 <= count <= n_tracks:
        raise ValueError(f"cannot draw {count} distinct negatives from a catalog of {n_tracks} tracks")
    keys = torch.rand((rows.shape[0], n_tracks + 1), generator=generator, device=rows.device)
    keys.scatter_(1, rows, 2.0)  # the row's own tracks after every unseen one
    keys[:, PAD] = 3.0  # padding, last of all: never drawn (count <= n_tracks)
    return keys.topk(count, dim=1, largest=False).indices


def hard_or_random(
    positives: Tensor, stored: Tensor, p_hard: float, n_tracks: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One negative per positive: its stored hard negative with probability `p_hard`, else random.

    positives, stored: (N,); stored 0 = no hard negative (then always random). Returns the
    negatives (N,) and whether each is the stored hard one (N,) bool.
    """
    use_hard = (stored > 0) & (stored != positives)
    if p_hard < 1.0:
        use_hard &= torch.rand(positives.shape, generator=generator, device=positives.device) < p_hard
    negatives = torch.where(use_hard, stored, random_negatives(positives, n_tracks, generator))
    return negatives, use_hard


def hardest(candidates: Tensor, scores: Tensor) -> Tensor:
    """The highest-scoring candidate of each row (the hardest-of-k ablation).

    candidates, scores: (N, k). Returns (N,).
    """
    return candidates.gather(1, scores.argmax(dim=1, keepdim=True)).squeeze(1)


def hidden_positions(tracks: Tensor, masked: Tensor, negatives: Tensor, used_hard: Tensor) -> Tensor:
    """Positions whose track is a hard negative used as a target somewhere in the same row.

    tracks: (B, L); masked: (B, L) bool; negatives, used_hard: (N,) for the N masked positions in
    row-major order. Returns (B, L) bool: those inputs must be removed, or the model could learn
    to score down whatever it sees in the input.
    """
    chosen = torch.zeros_like(tracks)  # (B, L) the hard negative drawn at each masked position
    chosen[masked] = torch.where(used_hard, negatives, torch.zeros_like(negatives))
    clash = (tracks.unsqueeze(2) == chosen.unsqueeze(1)) & (chosen.unsqueeze(1) > 0)  # (B, L, L)
    return clash.any(dim=2) & ~masked
