"""Benchmark (prints figures, never fails on time): the loader's rows/s and training sequences/s.

    python tests/benchmarks/bench_training.py --lakehouse demo/lakehouse          # loader + CPU training
    python tests/benchmarks/bench_training.py --synthetic --device cuda           # model only, any device

--lakehouse reads the current snapshot of gold/sequences through the Petastorm stream (batch 512)
and then trains each model on those batches, already in memory (the loader keeps up when its rows/s
exceed the training sequences/s).
--synthetic trains on random batches of full-length rows (no Petastorm, Spark or MLflow needed),
which is what runs on a GPU machine that has torch but not this project's data stack.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from models.network import DOWN, PLAY, SKIP, UP, Batch  # noqa: E402
from models.settings import ModelSettings, TrainSettings  # noqa: E402
from models.zoo import build_model  # noqa: E402


def default_settings() -> tuple[ModelSettings, TrainSettings]:
    """conf/base.yaml's model and train sections (read directly: no Spark needed to import them)."""
    base = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())
    return ModelSettings(**base["model"]), TrainSettings(**base["train"])


def random_batch(rows: int, length: int, n_tracks: int, n_stations: int, g: torch.Generator) -> Batch:
    tracks = torch.randint(1, n_tracks + 1, (rows, length), generator=g)
    feedback = torch.tensor([UP, DOWN, SKIP, PLAY])[
        torch.multinomial(torch.tensor([0.1, 0.02, 0.2, 0.68]), rows * length, True, generator=g)
    ]
    feedback = feedback.view(rows, length)
    feedback[:, -1] = UP
    targets = feedback == UP
    negatives = torch.where(targets, torch.randint(1, n_tracks + 1, (rows, length), generator=g), 0)
    negatives = torch.where(negatives == tracks, (negatives % n_tracks) + 1, negatives)
    stations = torch.randint(1, n_stations + 1, (rows, length), generator=g)
    return Batch(tracks, stations, feedback, targets, negatives, targets.long())


def train_rate(
    name: str, batches: list[Batch], n_tracks: int, n_stations: int, device: torch.device, steps: int
) -> dict[str, float]:
    model_settings, train_settings = default_settings()
    model = build_model(name, n_tracks, n_stations, model_settings, train_settings, (UP,)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train_settings.learning_rate)
    g = torch.Generator(device=device).manual_seed(0)
    cuda = device.type == "cuda"

    def step(batch: Batch) -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, _ = model(batch, g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_settings.clip_norm)
        optimizer.step()

    on_device = [b.to(device) for b in batches]
    for b in on_device[:3]:  # warm-up
        step(b)
    if cuda:
        torch.cuda.synchronize()
    start, rows = time.perf_counter(), 0
    for i in range(steps):
        b = on_device[i % len(on_device)]
        step(b)
        rows += b.rows
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"sequences_per_s": rows / seconds, "steps_per_s": steps / seconds, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lakehouse", help="a built lakehouse (reads gold/sequences, gold/tracks, gold/stations)"
    )
    parser.add_argument("--synthetic", action="store_true", help="random full-length batches instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--length", type=int, default=200, help="--synthetic row length")
    parser.add_argument("--tracks", type=int, default=20_000, help="--synthetic catalog size")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--loader-batches", type=int, default=100)
    parser.add_argument("--models", default="baseline,hybrid,sasrec")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(torch.get_num_threads())
    figures: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
    }
    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        n_tracks, n_stations = args.tracks, 50
        batches = [random_batch(args.batch_size, args.length, n_tracks, n_stations, g) for _ in range(4)]
        figures["rows"] = f"random, length {args.length}, {n_tracks} tracks"
    else:
        from models.data import SequenceStream
        from pipelines.lakehouse import Lakehouse

        lakehouse = Lakehouse(None, args.lakehouse)
        _, files, rows = lakehouse.snapshot("gold/sequences")
        n_tracks, n_stations = lakehouse.rows("gold/tracks"), lakehouse.rows("gold/stations")
        model_settings, _ = default_settings()
        stream = SequenceStream(
            files,
            batch_size=args.batch_size,
            steps=args.loader_batches,
            max_length=model_settings.max_length,
            seed=0,
            shuffle_buffer=4096,
        )
        batches = list(stream.epoch(0))
        figures["rows"] = f"gold/sequences, {rows} rows, {n_tracks} tracks"
        figures["loader_rows_per_s"] = round(stream.rows_per_second)
        figures["mean_batch_width"] = round(sum(b.tracks.shape[1] for b in batches) / len(batches), 1)
    for name in args.models.split(","):
        rate = train_rate(name, batches, n_tracks, n_stations, device, args.steps)
        figures[f"{name}_train_sequences_per_s"] = round(rate["sequences_per_s"])
    if "loader_rows_per_s" in figures:
        slowest = min(v for k, v in figures.items() if k.endswith("_train_sequences_per_s"))
        figures["loader_keeps_up"] = bool(figures["loader_rows_per_s"] >= slowest)  # type: ignore[operator]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
