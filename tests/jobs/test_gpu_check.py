"""scripts/gpu_check.py, on the CPU: what it exports from a build, and that `run` trains through the
project's loader and models with only what a lent GPU machine has (no pyspark, MLflow, Petastorm
or deltalake, downbeat not installed)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pyarrow.parquet as pq

from downbeat.models.data import TableSnapshot, sequence_facts
from downbeat.pipelines.lakehouse import Lakehouse
from tests.jobs.small import own_copy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
ABSENT_THERE = ("pyspark", "mlflow", "petastorm", "deltalake", "s3fs")


def bare_python(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """A Python that sees this venv's packages but not its .pth files (so not the editable install
    of downbeat), with the packages the GPU machine lacks made unimportable."""
    blocked = tmp_path / "blocked"
    for name in ABSENT_THERE:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not on the GPU machine')\n"
        )
    paths = [str(blocked), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return [sys.executable, "-S"], {"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"}


def test_the_gpu_check_exports_the_training_table_and_trains_each_model_with_nothing_but_torch(
    built_lakehouse, tmp_path
):
    root = own_copy(built_lakehouse, tmp_path / "copy")
    data = tmp_path / "data"
    exported = subprocess.run(
        [sys.executable, str(SCRIPT), "export", "--lakehouse", str(root / "lh"), "--out", str(data)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    lakehouse = Lakehouse(None, str(root / "lh"))
    meta = json.loads((data / "meta.json").read_text())
    assert meta["n_tracks"] == lakehouse.snapshot("gold/tracks")[2]
    assert meta["n_stations"] == lakehouse.snapshot("gold/stations")[2]
    training_rows = lakehouse.snapshot("gold/training_sequences")[2]
    assert meta["rows"] == training_rows > 0
    assert sum(pq.read_metadata(p).num_rows for p in (data / "training").glob("*.parquet")) == training_rows
    version, files, rows = lakehouse.snapshot("gold/sequences")
    facts = sequence_facts(TableSnapshot("gold/sequences", "", version, tuple(files), rows or 0))
    assert tuple(meta["positive_feedback"]) == facts.positive_feedback

    python, env = bare_python(tmp_path)
    missing = subprocess.run(
        [*python, str(SCRIPT), "run", "--data", "nowhere", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "gpu_check: nowhere/meta.json is missing: run `make gpu-check-data` here first"
    ]
    out = tmp_path / "out" / "gpu_check.json"
    command = [
        *python,
        str(SCRIPT),
        "run",
        "--data",
        "data",  # relative to the working folder, as `make gpu-check` passes it
        "--device",
        "cpu",
        "--models",
        "hybrid,sasrec",
    ]
    command += ["--steps", "3", "--epochs", "2", "--batch-size", "8", "--ranks", "2", "--json", str(out)]
    ran = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert ran.returncode == 0, ran.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["environment"]["device"] == "cpu"
    assert set(report["models"]) == {"hybrid", "sasrec"}
    for name, figures in report["models"].items():
        assert figures["epochs"] == 2 and figures["steps_per_epoch"] == 3
        assert figures["sequences_per_s"] > 0 and figures["loader_rows_per_s"] > 0
        assert 0.0 <= figures["data_wait_share"] <= 1.0
        assert figures["train_loss"] > 0
        for key, value in figures.items():  # one line per figure
            assert f"gpu_check: {name} {key} {value}" in ran.stdout
    ddp = report["distributed"]
    assert ddp["ranks"] == 2 and ddp["sequences_per_s"] > 0  # gloo here; NCCL where there are GPUs
