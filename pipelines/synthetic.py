"""A synthetic listening log with planted structure, generated inside Spark partitions.

Stations (genres) own their tracks. Each user has a taste per station and a latent vector; a
track's appeal to a user is the station taste plus the dot product of the user's and the track's
vectors. Users listen in sessions (one station each) separated by gaps of hours to days, with
heavy-tailed activity. A play the user dislikes tends to be cut short (3-25 s), so the next play
starts within 30 s: a skip the pipeline must derive. About two thirds of users also thumb up
liked tracks and thumb down disliked ones; the rest never thumb up, they only skip.

Every user's events come from a random generator seeded by (seed, user number), so the log is the
same for the same arguments however Spark partitions the work; no user's events leave its task
until written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from downbeat.pipelines import schemas as S

LATENT = 2  # the taste a history must reveal: two dimensions per user and per track
LATENT_WEIGHT = 1.0
THUMBLESS_SHARE = 1 / 3


@dataclass(frozen=True)
class Profile:
    """The shape of a log: session lengths and how often a play is skipped. A play is skipped with
    probability 1 - liked ** skip_exponent (liked: the sigmoid of the track's appeal), so a larger
    exponent skips more; a session's length is 1 + a geometric draw of mean 12, then held within
    [session_min, session_max]. `paper` names the figures the profile imitates."""

    skip_exponent: float = 0.7
    session_min: int = 1
    session_max: int | None = None
    paper: str = "the demo's log: no paper's figures"


PROFILES = {
    "default": Profile(),
    # RecSys'24's MSSD sample: sessions of at most 20 tracks, about half the plays skipped
    "mssd": Profile(
        skip_exponent=2.6, session_max=20, paper="RecSys'24's MSSD sample: sessions cut at 20, ~50% skips"
    ),
    # RecSys'24's LFM-1K after its sampling: 20-minute sessions of at least 5 plays, ~11% skips
    "lfm1k": Profile(
        skip_exponent=0.3, session_min=5, paper="RecSys'24's LFM-1K: sessions of >= 5 plays, ~11% skips"
    ),
}


@dataclass(frozen=True)
class SynthSettings:
    users: int
    days: int
    stations: int = 12
    tracks_per_station: int = 150
    seed: int = 7
    start: dt.date = dt.date(2024, 1, 1)
    partitions: int = 8
    profile: str = "default"


EVENTS_FILE_SCHEMA = T.StructType(
    [
        T.StructField(S.USER_ID, T.StringType()),
        T.StructField(S.TS, T.TimestampType()),
        T.StructField(S.TRACK_ID, T.StringType()),
        T.StructField(S.STATION_ID, T.StringType()),
        T.StructField(S.FEEDBACK, T.StringType()),
        T.StructField(S.MS_PLAYED, T.LongType()),
    ]
)


def _catalog(settings: SynthSettings) -> tuple[np.ndarray, np.ndarray]:
    """Track latent vectors (stations * tracks, LATENT) and popularity weights within a station."""
    rng = np.random.default_rng([settings.seed, 0])
    vectors = rng.normal(0.0, 1.0, (settings.stations * settings.tracks_per_station, LATENT))
    ranks = np.arange(1, settings.tracks_per_station + 1)
    popularity = 1.0 / ranks**0.8
    return vectors, popularity / popularity.sum()


def _taste(rng: np.random.Generator, n_stations: int) -> tuple[np.ndarray, np.ndarray]:
    """A user's station tastes and latent vector: the first draws of the user's generator."""
    taste = rng.normal(0.0, 1.0, n_stations)
    taste[rng.permutation(n_stations)[: max(1, n_stations // 4)]] += 1.5  # a few favourite stations
    return taste, rng.normal(0.0, 1.0, LATENT)


def _appeal(
    taste: np.ndarray, latent: np.ndarray, vectors: np.ndarray, track: np.ndarray, station: np.ndarray
):
    """How much a user likes each track: station taste plus the latent match (the planted truth)."""
    return taste[station] * 0.8 + vectors[track] @ latent * LATENT_WEIGHT


def appeal(user: int, tracks: np.ndarray, settings: SynthSettings) -> np.ndarray:
    """The generator's true appeal of catalog tracks (0-based numbers) to user number `user`: what
    an oracle scorer knows. A track's station is the one that owns it."""
    vectors, _ = _catalog(settings)
    taste, latent = _taste(np.random.default_rng([settings.seed, 1, user]), settings.stations)
    tracks = np.asarray(tracks, dtype=np.int64)
    return _appeal(taste, latent, vectors, tracks, tracks // settings.tracks_per_station)


def number_of(identifier: str) -> int:
    """The number inside a generated user or track id ('u0042' -> 42, 't0317' -> 317)."""
    return int(identifier[1:])


def user_events(
    user: int, settings: SynthSettings, vectors: np.ndarray, popularity: np.ndarray
) -> dict[str, np.ndarray]:
    """One user's log as column arrays, in time order."""
    rng = np.random.default_rng([settings.seed, 1, user])
    n_stations, per_station = settings.stations, settings.tracks_per_station
    taste, latent = _taste(rng, n_stations)
    station_odds = np.exp(taste) / np.exp(taste).sum()
    thumbs = rng.random() >= THUMBLESS_SHARE
    sessions_per_day = float(np.clip(rng.lognormal(-0.7, 0.9), 0.05, 12.0))  # heavy-tailed activity
    horizon = settings.days * 86_400.0

    # Session starts: exponential gaps, at least 25 minutes after the previous session's start.
    expected = int(sessions_per_day * settings.days * 1.5) + 4
    gaps = rng.exponential(86_400.0 / sessions_per_day, expected) + 1_500.0
    starts = np.cumsum(gaps) - gaps[0] + rng.uniform(0, 86_400.0)
    starts = starts[starts < horizon]
    if starts.size == 0:
        starts = np.array([rng.uniform(0, horizon)])
    profile = PROFILES[settings.profile]
    lengths = np.clip(1 + rng.geometric(1 / 12.0, starts.size), profile.session_min, profile.session_max)
    session_of = np.repeat(np.arange(starts.size), lengths)
    station = rng.choice(n_stations, size=starts.size, p=station_odds)[session_of]
    track = station * per_station + rng.choice(per_station, size=session_of.size, p=popularity)
    liked = 1 / (1 + np.exp(-_appeal(taste, latent, vectors, track, station)))
    skipped = rng.random(session_of.size) > liked**profile.skip_exponent
    duration = np.where(
        skipped, rng.uniform(3.0, 25.0, session_of.size), rng.uniform(140.0, 330.0, session_of.size)
    )
    pause = rng.uniform(0.0, 3.0, session_of.size)
    # Time since the session start: the sum of earlier plays and pauses in the same session.
    step = duration + pause
    within = np.cumsum(step) - step
    first_of_session = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    within -= np.repeat(within[first_of_session], lengths)
    # A session ends before the next starts: cut what would overlap.
    seconds = starts[session_of] + within
    ends_before = np.append(starts[1:], np.inf)[session_of] - 1_260.0
    keep = (seconds < ends_before) & (seconds < horizon)
    draw = rng.random(session_of.size)
    feedback = np.full(session_of.size, None, dtype=object)
    if thumbs:
        feedback[(~skipped) & (draw < 0.25 * liked**2)] = S.UP
        feedback[(draw > 1 - 0.12 * (1 - liked) ** 2)] = S.DOWN
    epoch = dt.datetime.combine(settings.start, dt.time()).replace(tzinfo=dt.UTC).timestamp()
    micros = ((epoch + seconds) * 1_000_000).astype(np.int64)
    return {
        "ts": micros[keep],
        "track": track[keep],
        "station": station[keep],
        "feedback": feedback[keep],
        "ms": (duration * 1000).astype(np.int64)[keep],
    }


def synthetic_events(spark: SparkSession, settings: SynthSettings) -> DataFrame:
    """The log in the `events` format's columns (grain: one play); users are split over partitions."""
    vectors, popularity = _catalog(settings)
    schema = pa.schema(
        [
            (S.USER_ID, pa.string()),
            (S.TS, pa.timestamp("us", tz="UTC")),
            (S.TRACK_ID, pa.string()),
            (S.STATION_ID, pa.string()),
            (S.FEEDBACK, pa.string()),
            (S.MS_PLAYED, pa.int64()),
        ]
    )
    width = len(str(max(settings.users - 1, 0)))
    track_width = len(str(settings.stations * settings.tracks_per_station))

    def generate(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for user in batch.column(0).to_pylist():
                e = user_events(int(user), settings, vectors, popularity)
                n = e["ts"].size
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array([f"u{int(user):0{width}d}"] * n),
                        pa.array(e["ts"], pa.timestamp("us", tz="UTC")),
                        pa.array([f"t{t:0{track_width}d}" for t in e["track"]]),
                        pa.array([f"station_{s:02d}" for s in e["station"]]),
                        pa.array(e["feedback"].tolist(), pa.string()),
                        pa.array(e["ms"]),
                    ],
                    schema=schema,
                )

    users = spark.range(0, settings.users, numPartitions=max(1, settings.partitions))
    return users.mapInArrow(generate, EVENTS_FILE_SCHEMA)
