"""Benchmark (prints figures): what one score per (user, track) can reach on the demo's two tasks at
once, from the generator's own truth. The demo asks a model to order a user's up above their down on
one station (paired accuracy) and to rank the next positive among the catalog (NDCG@10). The
generator knows each user's appeal for every track, how popular each track is within its station
and how likely the user is to pick each station, so the scores

    s(u, t) = liked_power * log sigmoid(appeal(u, t)) + pop * log popularity(t) + odds * log P(station(t) | u)

are scorers no model can beat with the same weights. Pure appeal orders pairs best; the next play
also depends on popularity and station odds, which carry no signal between two tracks of one
station, so every weight on them moves a score along a frontier: more NDCG, less paired accuracy.

    python tests/benchmarks/demo_frontier.py --lakehouse demo/lakehouse [--tables test] [--json PATH]

The generator's arguments must be the demo's (`downbeat demo` defaults: 5,000 users, 49 days, 50
tracks a station, seed 7). Reads gold/{validation,eval}_pairs and _next; users with a history only.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from deltalake import DeltaTable

from downbeat.pipelines.synthetic import SynthSettings, _appeal, _catalog, _taste, number_of

WEIGHTS = (  # (liked_power, pop, odds): from the pair oracle to the next-item one
    (1.0, 0.0, 0.0),
    (1.0, 0.0, 1.0),
    (1.0, 0.1, 0.5),
    (1.0, 0.25, 0.5),
    (0.7, 0.25, 1.0),
    (0.7, 0.5, 1.0),
    (0.7, 1.0, 1.0),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lakehouse", required=True, help="the demo's lakehouse root")
    parser.add_argument("--tables", choices=("validation", "test"), default="validation")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--days", type=int, default=49)
    parser.add_argument("--tracks-per-station", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    settings = SynthSettings(
        args.users, args.days, tracks_per_station=args.tracks_per_station, seed=args.seed
    )
    vectors, popularity = _catalog(settings)
    n = settings.stations * settings.tracks_per_station
    station_of = np.arange(n) // settings.tracks_per_station
    log_pop = np.log(np.tile(popularity, settings.stations))

    def truth(user: int) -> tuple[np.ndarray, np.ndarray]:
        taste, latent = _taste(np.random.default_rng([settings.seed, 1, user]), settings.stations)
        log_odds = taste - np.log(np.exp(taste).sum())
        return -np.logaddexp(0, -_appeal(taste, latent, vectors, np.arange(n), station_of)), log_odds[
            station_of
        ]

    prefix = "validation" if args.tables == "validation" else "eval"
    pairs = DeltaTable(f"{args.lakehouse}/gold/{prefix}_pairs").to_pandas()
    rows = DeltaTable(f"{args.lakehouse}/gold/{prefix}_next").to_pandas()
    rows = rows[rows.is_positive & (rows.history_length > 0)]
    catalog = DeltaTable(f"{args.lakehouse}/gold/tracks").to_pandas()
    number_by_idx = np.zeros(len(catalog) + 1, dtype=np.int64)
    number_by_idx[catalog.track_idx.to_numpy()] = [number_of(t) for t in catalog.track_id]
    users = {number_of(u) for u in pairs.user_id} | {number_of(u) for u in rows.user_id}
    known = {u: truth(u) for u in sorted(users)}
    results = []
    for liked_power, pop, odds in WEIGHTS:

        def score(user: int, lp: float = liked_power, p: float = pop, o: float = odds) -> np.ndarray:
            liked, log_station = known[user]
            return lp * liked + p * log_pop + o * log_station

        won = []
        for user, group in pairs.groupby("user_id"):
            s = score(number_of(user))
            up = s[[number_of(t) for t in group.up_track_id]]
            down = s[[number_of(t) for t in group.down_track_id]]
            won.append(float(np.mean((up > down) + 0.5 * (up == down))))
        gains = []
        for user, track, excluded in zip(rows.user_id, rows.track_id, rows.exclude_track_ids, strict=True):
            s = score(number_of(user))
            if excluded is not None and len(excluded):  # left out of the ranking, as evaluation does
                s = s.copy()
                s[number_by_idx[np.asarray(excluded, dtype=np.int64)]] = -np.inf
            rank = int((s >= s[number_of(track)]).sum())  # ties against the target
            gains.append(1.0 / np.log2(rank + 1) if rank <= 10 else 0.0)
        entry = {
            "liked_power": liked_power,
            "pop": pop,
            "odds": odds,
            "paired_accuracy": float(np.mean(won)),
            "ndcg@10_pos": float(np.mean(gains)),
        }
        results.append(entry)
        print(
            f"liked^{liked_power} x popularity^{pop} x station odds^{odds}: paired accuracy "
            f"{entry['paired_accuracy']:.4f}, NDCG@10 {entry['ndcg@10_pos']:.4f}",
            flush=True,
        )
    print(f"({len(won)} users with pairs, {len(gains)} next-positive targets, {args.tables} tables)")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"tables": args.tables, "scorers": results}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
