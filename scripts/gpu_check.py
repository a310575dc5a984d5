"""The GPU check: the project's Arrow loader and models on a GPU, with nothing else installed.

A lent GPU machine has Python with its own CUDA torch, numpy, pandas, pyarrow and PyYAML (what
`run` needs), and no Java, Spark, MLflow or Petastorm. So the check is Spark-free and reads plain
Parquet:

    make gpu-check-data    # here: a small demo build's gold/training_sequences as plain Parquet,
                           # with the catalog's sizes (.gpu-check/data, git-ignored, a few MiB)
    make gpu-check         # there (carry .gpu-check/data): python3 scripts/gpu_check.py run ...

`run` imports the checkout's own code (downbeat.models, from the folder this script sits in; no
install), and for each model trains `--epochs` epochs of `--steps` steps through the project's
path: models/loader.TrainingStream (ArrowChunks, shuffle buffer, prefetch thread, pinned memory)
into models/train.fit (bf16 autocast on CUDA), without validation. It prints one line per figure
and writes one JSON (`--json`): per model the last epoch's sequences/s, data-wait share, loader
rows/s and peak GPU memory; with two or more GPUs, the same for a 2-rank NCCL DDP run. TorchDistributor
and Petastorm are not on that machine: they are checked on the CPU by the test suite only.

`--device cpu` runs the same on a machine without a GPU (the test suite does, on a tiny table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
import types
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("hybrid", "sasrec", "gsasrec")
META = "meta.json"


def bad_input(line: str) -> NoReturn:
    """One line on stderr and exit code 2, as every downbeat command ends on bad input."""
    print(line, file=sys.stderr)
    raise SystemExit(2)


def use_checkout() -> None:
    """`downbeat.models` from this checkout's models/ folder, installed or not (as pyproject's
    package-dir maps it)."""
    if "downbeat" not in sys.modules:
        package = types.ModuleType("downbeat")
        package.__path__ = [str(ROOT)]
        sys.modules["downbeat"] = package


def export(lakehouse: str, out: Path) -> dict[str, Any]:
    """Copy gold/training_sequences' current files to `out`/training and write `out`/meta.json: the
    catalog's sizes and the positive feedback ids the models need to be built (needs deltalake)."""
    from downbeat.models.data import TableSnapshot, sequence_facts
    from downbeat.pipelines.lakehouse import Lakehouse

    store = Lakehouse(None, lakehouse)
    snap = {}
    for table in ("gold/training_sequences", "gold/sequences", "gold/tracks", "gold/stations"):
        if not store.exists(table):
            bad_input(f"gpu_check export: {lakehouse} has no {table}: run `downbeat build` first")
        version, files, rows = store.snapshot(table)
        snap[table] = TableSnapshot(table, store.uri(table), version, tuple(files), rows or 0)
    shutil.rmtree(out, ignore_errors=True)
    (out / "training").mkdir(parents=True)
    for i, source in enumerate(snap["gold/training_sequences"].files):
        shutil.copyfile(source.removeprefix("file://"), out / "training" / f"part-{i:05d}.parquet")
    meta = {
        "n_tracks": snap["gold/tracks"].rows,
        "n_stations": snap["gold/stations"].rows,
        "positive_feedback": list(sequence_facts(snap["gold/sequences"]).positive_feedback),
        "rows": snap["gold/training_sequences"].rows,
        "bytes": sum(p.stat().st_size for p in (out / "training").iterdir()),
    }
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


@dataclasses.dataclass(frozen=True)
class Check:
    """One model's run: what it reads and how long it trains."""

    data: Path
    model: str
    batch_size: int
    steps: int
    epochs: int
    device: str


def settings_for(check: Check) -> tuple[Any, Any, Any]:
    """conf/base.yaml's model, run and optimiser settings, the check's batch and epochs on top."""
    import yaml

    from downbeat.models.settings import OptimSettings, RunSettings
    from downbeat.models.zoo import model_settings_of

    base = yaml.safe_load((ROOT / "conf" / "base.yaml").read_text())
    run = RunSettings(**base["train"])
    run = dataclasses.replace(
        run, batch_size=check.batch_size, max_epochs=check.epochs, patience=check.epochs + 1, loader="arrow"
    )
    return model_settings_of(base["model"]), run, OptimSettings(**base["optim"])


def train_one(check: Check, rank: int = 0, world: int = 1) -> dict[str, float]:
    """The last epoch's figures of `check.model` on this rank (summed over ranks where they sum)."""
    import torch

    from downbeat.models.loader import TrainingStream
    from downbeat.models.train import FitHooks, Ranks, fit, seed_everything
    from downbeat.models.validation import Score
    from downbeat.models.zoo import build_model

    meta = json.loads((check.data / META).read_text())
    files = sorted(str(p.resolve()) for p in (check.data / "training").glob("*.parquet"))
    network, run, optim = settings_for(check)
    cuda = check.device == "cuda"
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    seed_everything(run.seed)
    model = build_model(
        check.model, meta["n_tracks"], meta["n_stations"], network, tuple(meta["positive_feedback"])
    ).to(device)
    trainable: torch.nn.Module = model
    if world > 1:
        trainable = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if cuda else None)
    stream = TrainingStream.of_run(
        files, run, steps=check.steps, max_length=network.max_length, rank=rank, world=world, pin_memory=cuda
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    state = fit(
        model,
        stream.epoch,
        lambda m: Score({}),  # no validation: the check times the training path
        run,
        optim,
        device=device,
        ranks=Ranks(rank, world),
        trainable=trainable,
        hooks=FitHooks(loader_rate=lambda: stream.rows_per_second),
    )
    last = state.history[-1]
    return {
        "sequences_per_s": round(last["train_sequences_per_s"], 1),
        "data_wait_share": round(last["data_wait_share"], 4),
        "loader_rows_per_s": round(last["loader_rows_per_s"], 1),
        "peak_gpu_memory_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if cuda else 0.0,
        "train_loss": round(last["train_loss"], 4),
        "epochs": len(state.history),
        "steps_per_epoch": check.steps,
        "batch_size": run.batch_size,
    }


def _rank(rank: int, world: int, check: Check, port: int, out: str) -> None:
    """One rank of the NCCL (or, on the CPU, gloo) run; rank 0 writes its figures to `out`."""
    use_checkout()  # a spawned process starts from nothing
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    if check.device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if check.device == "cuda" else "gloo", rank=rank, world_size=world)
    try:
        figures = train_one(check, rank, world)
        if rank == 0:
            Path(out).write_text(json.dumps(figures))
    finally:
        dist.destroy_process_group()


def distributed(check: Check, world: int, port: int = 29517) -> dict[str, float]:
    """`world` ranks on this machine's first `world` devices (torch.multiprocessing, not Spark)."""
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rank0.json")
        mp.spawn(_rank, args=(world, check, port, out), nprocs=world, join=True)
        return {**json.loads(Path(out).read_text()), "ranks": world}


def environment(device: str) -> dict[str, Any]:
    import numpy
    import pyarrow
    import torch

    out: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "device": device,
        "autocast": "bfloat16" if device == "cuda" else "none (CPU)",
    }
    if device == "cuda":
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["cuda"] = torch.version.cuda
        out["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    data = Path(args.data)
    if not (data / META).is_file():
        bad_input(f"gpu_check: {data / META} is missing: run `make gpu-check-data` here first")
    report: dict[str, Any] = {"environment": environment(device), "models": {}}
    print(f"gpu_check: {json.dumps(report['environment'])}", flush=True)
    for name in args.models.split(","):
        check = Check(data, name, args.batch_size, args.steps, args.epochs, device)
        started = time.perf_counter()
        figures = train_one(check)
        figures["seconds"] = round(time.perf_counter() - started, 1)
        report["models"][name] = figures
        for key, value in figures.items():
            print(f"gpu_check: {name} {key} {value}", flush=True)
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    if gpus >= 2 or args.ranks > 1:
        world = max(2, args.ranks)
        check = Check(data, args.models.split(",")[0], args.batch_size, args.steps, args.epochs, device)
        report["distributed"] = distributed(check, world)
        for key, value in report["distributed"].items():
            print(f"gpu_check: {check.model} ddp {key} {value}", flush=True)
    else:
        report["distributed"] = f"not run: {gpus} GPU(s) on this machine (NCCL needs 2)"
        print(f"gpu_check: ddp {report['distributed']}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write the check's data from a built lakehouse (here)")
    ex.add_argument("--lakehouse", required=True, help="a lakehouse root `downbeat build` wrote")
    ex.add_argument("--out", default=".gpu-check/data")
    go = sub.add_parser("run", help="train each model on the exported data and time it")
    go.add_argument("--data", default=".gpu-check/data")
    go.add_argument("--json", help="write the figures here")
    go.add_argument("--models", default=",".join(MODELS))
    go.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    go.add_argument("--batch-size", type=int, default=256)
    go.add_argument("--steps", type=int, default=40, help="steps per epoch (default 40)")
    go.add_argument("--epochs", type=int, default=2, help="epochs; the last one is reported (default 2)")
    go.add_argument("--ranks", type=int, default=1, help="also a DDP run of this many ranks (2+ GPUs: 2)")
    args = parser.parse_args(argv)
    use_checkout()
    if args.command == "export":
        meta = export(args.lakehouse, Path(args.out))
        print(f"gpu_check export: {meta['rows']} rows, {meta['bytes'] / 2**20:.1f} MiB in {args.out}")
        return 0
    report = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
