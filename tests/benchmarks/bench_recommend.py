"""Benchmark (prints figures, never fails on time): `downbeat recommend`'s users per second.

    python tests/benchmarks/bench_recommend.py --json out.json                  # 10,000 users, 20,000 tracks
    python tests/benchmarks/bench_recommend.py --users 2000 --tracks 5000 --work /tmp/bench

It writes silver/plays (--plays per user, every track played at least once), gold/tracks and
gold/stations with the pipelines' own vocabulary functions, logs and registers a model of the
configured size (conf/base.yaml's network, random weights: the figures measure work, not quality)
over that catalog exactly as training does (models/lifecycle.log_scoring_model), then runs
`downbeat recommend --model-uri models:/downbeat@champion --top-k K --json` as a user would (its own
process, local[2]) and reports:
  job_seconds, users_per_s_end_to_end
                                    the job's own wall time (Spark start to commit) and users / it
                                    (its progress lines, printed on stderr, time its phases)
  users_per_s_ranked                users / the ranking phase alone (the job's "ranked ..." line)
  rank_users_per_s_one_thread       recommend_frame alone on the same histories, one thread, in this
                                    process (what the model costs without Spark)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from downbeat.models.data import TableSnapshot  # noqa: E402
from downbeat.models.zoo import build_model, model_settings_of  # noqa: E402


def write_tables(root: Path, users: int, tracks: int, plays: int, stations: int) -> dict[str, TableSnapshot]:
    """silver/plays, gold/tracks and gold/stations under `root`; their snapshots."""
    from pyspark.sql import functions as F

    from downbeat.pipelines import schemas as S
    from downbeat.pipelines.lakehouse import DeltaSettings, Lakehouse
    from downbeat.pipelines.spark import SparkSettings, spark_session
    from downbeat.pipelines.vocabulary import stations as station_vocabulary
    from downbeat.pipelines.vocabulary import tracks as track_vocabulary

    spark = spark_session(
        SparkSettings("local[2]", "bench-recommend", "4g", 8, "ERROR", {"spark.ui.enabled": "false"}),
        DeltaSettings(engine="delta-rs", packages=None, jars_dir=None),
    )
    n = users * plays
    ids = spark.range(n, numPartitions=8)
    h = F.abs(F.xxhash64(F.col("id"), F.lit(17)))
    # every track at least once (the first `tracks` plays), then a skewed draw: popular tracks more often
    skewed = (F.pow(F.rand(seed=3), F.lit(2.0)) * tracks).cast("long")
    track = F.when(F.col("id") < tracks, F.col("id")).otherwise(skewed)
    share = h % 100
    feedback = (
        F.when(share < 2, F.lit(S.DOWN))
        .when(share < 12, F.lit(S.UP))
        .when(share < 32, F.lit(S.SKIP))
        .otherwise(F.lit(S.PLAY))
    )
    # play number id // users of user id % users, four minutes apart
    ts = F.timestamp_seconds(F.lit(1_704_067_200) + (F.col("id") / users).cast("long") * 240)
    frame = ids.select(
        F.format_string("u%06d", (F.col("id") % users).cast("int")).alias(S.USER_ID),
        F.format_string("s%06d", (F.col("id") % users).cast("int")).alias(S.SESSION_ID),
        (F.col("id") / users).cast("int").alias(S.POSITION),
        ts.alias(S.TS),
        F.format_string("t%06d", track.cast("int")).alias(S.TRACK_ID),
        F.format_string("st%02d", (track % stations).cast("int")).alias(S.STATION_ID),
        feedback.alias(S.FEEDBACK),
        F.lit("bench").alias(S.SOURCE),
        F.lit(None).cast("long").alias(S.MS_PLAYED),
        F.format_string("e%012d", F.col("id")).alias(S.EVENT_ID),
        F.to_date(ts).alias(S.DATE),
    )
    lakehouse = Lakehouse(spark, str(root / "lh"), "delta-rs")
    lakehouse.write(frame, "silver/plays")
    played = lakehouse.read("silver/plays")
    lakehouse.write(track_vocabulary(played), "gold/tracks")
    lakehouse.write(station_vocabulary(played), "gold/stations")
    out = {}
    for table in ("silver/plays", "gold/tracks", "gold/stations"):
        version, files, rows = lakehouse.snapshot(table)
        out[table] = TableSnapshot(table, lakehouse.uri(table), version, tuple(files), rows or 0)
    spark.stop()
    return out


def register_model(root: Path, snapshots: dict[str, TableSnapshot]) -> tuple[str, Any]:
    """A model of the configured size over the catalog, logged and registered as training does;
    the tracking URI and the model."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from downbeat.models.lifecycle import log_scoring_model
    from downbeat.models.serving import checkpoint_payload
    from downbeat.models.tracking import CHAMPION, experiment_id

    base = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())
    model = build_model(
        "hybrid",
        snapshots["gold/tracks"].rows,
        snapshots["gold/stations"].rows,
        model_settings_of(base["model"]),
        (1, 4),
    ).eval()
    tracking = f"sqlite:///{root / 'mlruns.db'}"
    experiment = experiment_id(tracking, "bench-recommend", str(root / "artifacts"))
    path = root / "model.pt"
    import torch

    torch.save(checkpoint_payload(model), path)
    with mlflow.start_run(experiment_id=experiment):
        info = log_scoring_model(
            path,
            model,
            snapshots["gold/tracks"],
            snapshots["gold/stations"].rows,
            registered_model_name="downbeat",
        )
    MlflowClient(tracking).set_registered_model_alias(
        "downbeat", CHAMPION, str(info.registered_model_version)
    )
    return tracking, model


def rank_alone(model: Any, snapshots: dict[str, TableSnapshot], width: int, top_k: int) -> float:
    """recommend_frame's users/s on one thread over every user's last `width` plays (read here)."""
    import numpy as np
    import pandas as pd
    import torch

    from downbeat.models.contract import FEEDBACK_IDS
    from downbeat.models.data import read_table
    from downbeat.models.serving import (
        EXCLUDE,
        HISTORY_FEEDBACK,
        HISTORY_STATIONS,
        HISTORY_TRACKS,
        STATION,
        recommend_frame,
    )

    plays = read_table(
        snapshots["silver/plays"], ["user_id", "ts", "event_id", "track_id", "station_id", "feedback"]
    )
    frame = plays.to_pandas().sort_values(["user_id", "ts", "event_id"])
    tracks = read_table(snapshots["gold/tracks"], ["track_id", "track_idx"]).to_pandas()
    stations = read_table(snapshots["gold/stations"], ["station_id", "station_idx"]).to_pandas()
    frame["t"] = frame.track_id.map(dict(zip(tracks.track_id, tracks.track_idx, strict=True)))
    frame["s"] = frame.station_id.map(dict(zip(stations.station_id, stations.station_idx, strict=True)))
    frame["f"] = frame.feedback.map(FEEDBACK_IDS)
    recent = frame.groupby("user_id").tail(width).groupby("user_id")
    downs = frame[frame.feedback == "down"].groupby("user_id").t.apply(lambda s: np.unique(s.to_numpy()))
    request = pd.DataFrame(
        {
            HISTORY_TRACKS: recent.t.apply(np.asarray),
            HISTORY_STATIONS: recent.s.apply(np.asarray),
            HISTORY_FEEDBACK: recent.f.apply(np.asarray),
            STATION: recent.s.last(),
        }
    )
    request[EXCLUDE] = downs.reindex(request.index).apply(
        lambda x: x if isinstance(x, np.ndarray) else np.zeros(0)
    )
    torch.set_num_threads(1)
    started = time.perf_counter()
    recommend_frame(model, request.reset_index(drop=True), top_k)
    return len(request) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--plays", type=int, default=100, help="plays per user (default 100)")
    parser.add_argument("--stations", type=int, default=12)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--work", help="folder for the tables and the registry (default: a temporary one)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    if args.plays * args.users < args.tracks:
        parser.error("--users x --plays must be at least --tracks (every track is played)")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-recommend-"))
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    snapshots = write_tables(work, args.users, args.tracks, args.plays, args.stations)
    tracking, model = register_model(work, snapshots)
    setup = time.perf_counter() - started
    command = [
        str(Path(sys.executable).parent / "downbeat"),
        "--set", f"lakehouse.root={work / 'lh'}",
        "--set", f"mlflow.tracking_uri={tracking}",
        "--set", "spark.log_level=ERROR",
        "recommend", "--model-uri", "models:/downbeat@champion", "--top-k", str(args.top_k), "--json",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, cwd=work, env=dict(os.environ))
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        return 1
    ranked_rate = None
    for line in run.stderr.splitlines():  # the job's own progress lines (its phases, timed)
        if "[downbeat." in line:
            print(line, file=sys.stderr)
        found = re.search(r"ranked \d+ tracks for \d+ users .*: (\d+) users/s", line)
        ranked_rate = float(found.group(1)) if found else ranked_rate
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    width = model.network.settings.max_length - 1
    figures = {
        "users": summary["served_users"] + summary["unserved_users"],
        "tracks": snapshots["gold/tracks"].rows,
        "plays": snapshots["silver/plays"].rows,
        "top_k": args.top_k,
        "model": dataclasses.asdict(model.network.settings),
        "rows_written": summary["model_rows"],
        "job_seconds": summary["seconds"],
        "users_per_s_end_to_end": round(
            (summary["served_users"] + summary["unserved_users"]) / summary["seconds"], 1
        ),
        "users_per_s_ranked": ranked_rate,
        "rank_users_per_s_one_thread": round(rank_alone(model, snapshots, width, args.top_k), 1),
        "setup_seconds": round(setup, 1),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
