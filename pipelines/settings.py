"""Settings of the feature pipelines (config sections sessions, skips, split, sequences, eval)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

When = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class SessionSettings:
    """A new session starts after a gap longer than `gap_minutes`, and only then."""

    gap_minutes: int


@dataclass(frozen=True)
class SkipSettings:
    """A play is a skip when the next play starts, or it lasted, less than `threshold_seconds`.

    The time-to-next-play rule applies to `timing_sources` only: sources whose rows are plays with
    real start times (ratings and MSSD's reconstructed times are not).
    """

    threshold_seconds: int
    timing_sources: tuple[str, ...]


@dataclass(frozen=True)
class SplitSettings:
    """Test period = the last `test_days` days of data, or from `cutoff_date` (YYYY-MM-DD) when set.

    Validation period = the `validation_days` days before the test period; validation users' plays
    in it are the validation pairs, their plays before it the validation histories.
    """

    test_days: int
    cutoff_date: str | None
    validation_days: int


@dataclass(frozen=True)
class SequenceSettings:
    """Training rows: the last `max_length` plays before the cut-off, ending on a positive.

    Positives are ups, and plays when `play_is_positive` is `always`, or `auto` and the play's
    source has no ups at all. `validation_percent` of users (by a stable hash) go to validation.
    """

    max_length: int
    validation_percent: int
    play_is_positive: When


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation sets: pairs capped per user; skips count as downs when `skip_is_negative` says so
    (`auto`: for sources with no downs)."""

    max_pairs_per_user: int
    skip_is_negative: When


@dataclass(frozen=True)
class FeatureSettings:
    """Everything `downbeat build` needs besides Spark and the lakehouse."""

    sessions: SessionSettings
    skips: SkipSettings
    split: SplitSettings
    sequences: SequenceSettings
    eval: EvalSettings
