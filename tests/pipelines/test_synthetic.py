"""The generator's profiles: session lengths and skip shares shaped like the papers' music logs.
One user's events are a pure function of the settings (no Spark needed)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from downbeat.pipelines.synthetic import SynthSettings, _catalog, user_events


def log_of(profile: str, users: int = 120) -> tuple[np.ndarray, list[np.ndarray]]:
    """(skipped per play, each user's session lengths as generated) for `users` users."""
    settings = SynthSettings(users=users, days=20, tracks_per_station=50, profile=profile)
    vectors, popularity = _catalog(settings)
    skipped, lengths = [], []
    for user in range(users):
        events = user_events(user, settings, vectors, popularity)
        skipped.append(events["ms"] < 30_000)  # a skipped play lasts 3-25 s, a whole one 140-330 s
        # a new session starts after a gap of more than 20 minutes
        starts = np.flatnonzero(np.diff(events["ts"]) > 20 * 60 * 1_000_000) + 1
        lengths.append(np.diff(np.concatenate([[0], starts, [events["ts"].size]])))
    return np.concatenate(skipped), lengths


@pytest.mark.parametrize(("profile", "share"), [("default", 0.225), ("mssd", 0.50), ("lfm1k", 0.11)])
def test_each_profile_skips_about_the_share_it_imitates(profile, share):
    skipped, _ = log_of(profile)
    assert abs(skipped.mean() - share) < 0.03


def test_mssd_sessions_hold_at_most_20_plays_and_lfm1k_sessions_mostly_5_or_more():
    _, mssd = log_of("mssd")
    _, lfm1k = log_of("lfm1k")
    _, default = log_of("default")
    assert max(int(x.max()) for x in mssd) == 20
    assert max(int(x.max()) for x in default) > 20
    short = lambda lengths: np.concatenate(lengths) < 5  # noqa: E731
    # a session cut by the next one's start or the log's end may still be shorter
    assert short(lfm1k).mean() < 0.05 < short(default).mean()


def test_the_default_profile_is_the_generator_as_it_was():
    # the digest of three users' events from the generator before profiles existed: the demo's log,
    # and every figure measured on it, must not move
    settings = SynthSettings(users=3, days=5)
    vectors, popularity = _catalog(settings)
    digest = hashlib.sha256()
    for user in range(3):
        events = user_events(user, settings, vectors, popularity)
        for key in ("ts", "track", "station", "ms"):
            digest.update(np.ascontiguousarray(events[key]).tobytes())
        digest.update(repr(events["feedback"].tolist()).encode())
    assert digest.hexdigest() == "2ebb4f3fa322b187b4f7cc16a8b82f5c74cbe282863179f9efd90caa1eb01c5a"
