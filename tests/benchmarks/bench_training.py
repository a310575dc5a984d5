"""Benchmark (prints figures, never fails on time): the loader's rows/s and training sequences/s.

    python tests/benchmarks/bench_training.py --lakehouse DIR --json out.json   # loader + CPU training
    python tests/benchmarks/bench_training.py --lakehouse DIR --device cuda      # the same on a GPU
    python tests/benchmarks/bench_training.py --synthetic --device cuda          # model only, any device

--lakehouse streams the current snapshot of gold/training_sequences (batch 512, the configured
max_length) and reports:
  loader_rows_per_s           one process, the configured reader (Petastorm), batches handed to a
                              consumer that does nothing else (median of --trials, after a warm-up)
  loader_rows_per_s_arrow     the same with the pyarrow reader
  loader_rows_per_s_parallel  --ranks processes at once, each a rank reading its shard (summed)
  <model>_train_sequences_per_s   training on batches already in memory
  <model>_fed_sequences_per_s, <model>_data_wait_share   training fed by the loader in one run
--synthetic trains on random batches of full-length rows (no Petastorm, Spark or MLflow needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from downbeat.models.network import DOWN, PLAY, SKIP, UP, Batch  # noqa: E402
from downbeat.models.settings import OptimSettings, RunSettings  # noqa: E402
from downbeat.models.zoo import ModelSettings, build_model, model_settings_of  # noqa: E402


def default_settings() -> tuple[ModelSettings, RunSettings, OptimSettings]:
    """conf/base.yaml's model, train and optim sections (read directly: no Spark needed to import them)."""
    base = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())
    return model_settings_of(base["model"]), RunSettings(**base["train"]), OptimSettings(**base["optim"])


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
    model_settings, _, optim = default_settings()
    model = build_model(name, n_tracks, n_stations, model_settings, (UP,)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim.learning_rate)
    g = torch.Generator(device=device).manual_seed(0)
    cuda = device.type == "cuda"

    def step(batch: Batch) -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            loss, _ = model(batch, g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.clip_norm)
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


def stream_of(
    files: list[str], loader: str, batch: int, steps: int, rank: int = 0, world: int = 1, pin: bool = False
):
    """The training stream train would build over these files (conf/base.yaml's settings)."""
    from downbeat.models.loader import TrainingStream

    model_settings, train_settings, _ = default_settings()
    return TrainingStream(
        files,
        batch_size=batch,
        steps=steps,
        max_length=model_settings.max_length,
        seed=0,
        shuffle_buffer=train_settings.shuffle_buffer,
        rank=rank,
        world=world,
        loader=loader,
        prefetch=train_settings.prefetch,
        pin_memory=pin,
    )


def loader_rate(
    files: list[str], loader: str, batch: int, steps: int, rank: int = 0, world: int = 1
) -> float:
    """Rows/s of a training stream's batches as its consumer receives them (a warm-up epoch first)."""
    stream = stream_of(files, loader, batch, steps, rank, world)
    for _ in stream.epoch(0):
        pass
    started, rows = time.perf_counter(), 0
    for b in stream.epoch(1):
        rows += b.rows
    return rows / (time.perf_counter() - started)


def _rank_rate(args: tuple[list[str], str, int, int, int, int], start: Any) -> float:
    files, loader, batch, steps, rank, world = args
    start.wait()
    return loader_rate(files, loader, batch, steps, rank, world)


def parallel_rate(files: list[str], loader: str, batch: int, steps: int, world: int) -> float:
    """Summed rows/s of `world` processes reading their shards at once (as DDP ranks do)."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    with context.Manager() as manager, context.Pool(world) as pool:
        start = manager.Barrier(world)
        rates = pool.starmap(
            _rank_rate, [((files, loader, batch, steps, rank, world), start) for rank in range(world)]
        )
    return float(sum(rates))


def fed_rate(
    name: str, files: list[str], n_tracks: int, n_stations: int, device: torch.device, batch: int, steps: int
) -> dict[str, float]:
    """Training fed by the loader in one run, through fit() itself (no validation data): the second
    epoch's sequences/s and the share of it the steps waited for their batch."""
    import dataclasses

    from downbeat.models.train import FitHooks, fit
    from downbeat.models.validation import Score

    model_settings, train_settings, optim = default_settings()
    train_settings = dataclasses.replace(train_settings, batch_size=batch, max_epochs=2)
    model = build_model(name, n_tracks, n_stations, model_settings, (UP,)).to(device)
    stream = stream_of(files, train_settings.loader, batch, steps, pin=device.type == "cuda")
    state = fit(
        model,
        stream.epoch,
        lambda m: Score({}),  # no validation data: every figure NaN, the last epoch kept
        train_settings,
        optim,
        device=device,
        hooks=FitHooks(loader_rate=lambda: stream.rows_per_second),
    )
    last = state.history[-1]  # the first epoch warms up (imports, allocator, kernels)
    return {"sequences_per_s": last["train_sequences_per_s"], "data_wait_share": last["data_wait_share"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lakehouse", help="a built lakehouse (reads gold/training_sequences, tracks, stations)"
    )
    parser.add_argument("--synthetic", action="store_true", help="random full-length batches instead")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--length", type=int, default=200, help="--synthetic row length")
    parser.add_argument("--tracks", type=int, default=20_000, help="--synthetic catalog size")
    parser.add_argument("--steps", type=int, default=20, help="training steps per model")
    parser.add_argument("--loader-batches", type=int, default=400, help="batches per loader measurement")
    parser.add_argument("--trials", type=int, default=3, help="loader measurements (the median is kept)")
    parser.add_argument(
        "--ranks", type=int, default=os.cpu_count() or 1, help="processes of the parallel figure"
    )
    parser.add_argument("--models", default="baseline,hybrid,sasrec")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    device = torch.device(args.device)
    figures: dict[str, object] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "batch_size": args.batch_size,
        "date": f"{dt.date.today()}",
    }
    files: list[str] = []
    if args.synthetic:
        g = torch.Generator().manual_seed(0)
        n_tracks, n_stations = args.tracks, 50
        batches = [random_batch(args.batch_size, args.length, n_tracks, n_stations, g) for _ in range(4)]
        figures["rows"] = f"random, length {args.length}, {n_tracks} tracks"
    else:
        from downbeat.pipelines.lakehouse import Lakehouse

        lakehouse = Lakehouse(None, args.lakehouse)
        _, files, rows = lakehouse.snapshot("gold/training_sequences")
        n_tracks, n_stations = lakehouse.rows("gold/tracks"), lakehouse.rows("gold/stations")
        model_settings, train_settings, _ = default_settings()
        figures["table"] = {"table": "gold/training_sequences", "rows": rows, "files": len(files)}
        figures["max_length"] = model_settings.max_length
        for key, loader in (
            ("loader_rows_per_s", train_settings.loader),
            ("loader_rows_per_s_arrow", "arrow"),
        ):
            trials = [
                loader_rate(files, loader, args.batch_size, args.loader_batches) for _ in range(args.trials)
            ]
            figures[key] = round(statistics.median(trials))
            figures[f"{key}_trials"] = [round(t) for t in trials]
            print(f"{key}: {figures[key]:,} rows/s (trials {figures[f'{key}_trials']})", flush=True)
        figures["parallel_ranks"] = args.ranks
        for key, loader in (
            ("loader_rows_per_s_parallel", train_settings.loader),
            ("loader_rows_per_s_parallel_arrow", "arrow"),
        ):
            figures[key] = round(
                parallel_rate(files, loader, args.batch_size, args.loader_batches, args.ranks)
            )
            print(f"{key}: {figures[key]:,} rows/s", flush=True)
        batches = list(stream_of(files, train_settings.loader, args.batch_size, 8).epoch(0))
        figures["mean_batch_width"] = round(sum(b.tracks.shape[1] for b in batches) / len(batches), 1)
    for name in args.models.split(","):
        rate = train_rate(name, batches, n_tracks, n_stations, device, args.steps)
        figures[f"{name}_train_sequences_per_s"] = round(rate["sequences_per_s"])
        if files:
            fed = fed_rate(name, files, n_tracks, n_stations, device, args.batch_size, args.steps)
            figures[f"{name}_fed_sequences_per_s"] = round(fed["sequences_per_s"])
            figures[f"{name}_data_wait_share"] = round(fed["data_wait_share"], 4)
        print(f"{name}: trained {figures[f'{name}_train_sequences_per_s']:,} sequences/s", flush=True)
    if "loader_rows_per_s" in figures:
        slowest = min(v for k, v in figures.items() if k.endswith("_train_sequences_per_s"))
        figures["loader_keeps_up"] = bool(figures["loader_rows_per_s"] >= slowest)  # type: ignore[operator]
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
