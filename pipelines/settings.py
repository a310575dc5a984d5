"""Settings of the feature pipelines (config sections sessions, skips, split, sequences, eval)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

# The commit tag of every gold table: the build's settings (FeatureSettings.record, as JSON), so a
# run or an experiment can tell what its tables were built with.
BUILD_SETTINGS_TAG = "downbeat.build_settings"
When = Literal["auto", "always", "never"]
Unit = Literal["user", "session"]
Protocol = Literal["temporal", "temporal_users", "leave_one_out"]


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
    """`protocol` temporal (one cut-off in time for every user): the test period is the last
    `test_days` days of data, or from `cutoff_date` (YYYY-MM-DD), or from the `cutoff_quantile` of
    all play times (PNFRec: 0.9). The validation period is the `validation_days` days before it;
    validation users' plays in it are the validation targets, their plays before it the histories.

    `protocol` temporal_users (PNFRec's split): the same cut-off; every user trains on the plays
    before it; the users with plays after it are divided by a stable hash of the id, half validation
    and half test, and each one's target is their last play, scored from every play before it (users
    with nothing before the cut-off have none; `validation_days` is not read).

    `protocol` leave_one_out (SASRec, gSASRec, the published ML-1M figures): each user's last play
    is the test target, the one before it the validation target, everything earlier trains; users
    with fewer than 3 plays are left out.
    """

    test_days: int
    cutoff_date: str | None
    validation_days: int
    protocol: Protocol = "temporal"
    cutoff_quantile: float | None = None


@dataclass(frozen=True)
class SequenceSettings:
    """Training rows: the last `max_length` plays before the cut-off, ending on a positive.

    Positives are ups, and plays when `play_is_positive` is `always`, or `auto` and the play's
    source has no ups at all. `validation_percent` of users (by a stable hash) go to validation.
    `unit` session (RecSys'24): a row per session instead of per user, of the session's last
    `session_max_length` plays up to its last positive; sessions with fewer than
    `session_min_events` plays before the cut-off have no row.
    """

    max_length: int
    validation_percent: int
    play_is_positive: When
    unit: Unit = "user"
    session_max_length: int = 20
    session_min_events: int = 5

    def row_length(self) -> int:
        """The most plays a row keeps."""
        return self.max_length if self.unit == "user" else min(self.max_length, self.session_max_length)


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation sets: pairs capped per user; skips count as downs when `skip_is_negative` says so
    (`auto`: for sources with no downs). Next-item rankings leave out the tracks a user played before
    the cut-off when `exclude_seen` says so (`auto`: plays of `seen_once_sources`, whose items are
    consumed once, as rated films are; listening logs replay tracks)."""

    max_pairs_per_user: int
    skip_is_negative: When
    exclude_seen: Literal["auto", True, False] = "auto"
    seen_once_sources: tuple[str, ...] = ("movielens",)


@dataclass(frozen=True)
class FeatureSettings:
    """Everything `downbeat build` needs besides Spark and the lakehouse."""

    sessions: SessionSettings
    skips: SkipSettings
    split: SplitSettings
    sequences: SequenceSettings
    eval: EvalSettings

    def record(self) -> dict[str, Any]:
        """Every setting as `section.key` -> its JSON value (tuples as lists): what a build records
        in BUILD_SETTINGS_TAG, and what a configuration is compared with."""
        out: dict[str, Any] = {}
        for section in dataclasses.fields(self):
            for key, value in dataclasses.asdict(getattr(self, section.name)).items():
                out[f"{section.name}.{key}"] = json.loads(json.dumps(value))
        return out
