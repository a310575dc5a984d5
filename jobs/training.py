"""Training runs as the jobs start them (train, experiment, demo): the input checks, the device,
Spark's TorchDistributor for N processes, then models/lifecycle.py for the run itself. A shared
helper of the jobs, not a job: it parses nothing and prints nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from downbeat.jobs.common import snapshots, writer_commit
from downbeat.jobs.config import PROJECT_ROOT, Config, to_yaml
from downbeat.models.contract import Tables
from downbeat.models.redaction import redact
from downbeat.pipelines.errors import InputError
from downbeat.pipelines.lakehouse import Lakehouse
from downbeat.pipelines.sequences import UNIT_TAG
from downbeat.pipelines.settings import BUILD_SETTINGS_TAG

if TYPE_CHECKING:
    from downbeat.models.data import SequenceFacts, TableSnapshot
    from downbeat.models.lifecycle import TrainResult


def device_of(setting: str) -> str:
    import torch

    if setting == "cuda" and not torch.cuda.is_available():
        raise InputError("config key 'train.device' is 'cuda' but torch sees no CUDA device")
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def run_device(cfg: Config, world: int) -> str:
    """The device `world` training processes run on; bad input (exit 2) when there are not enough."""
    import torch

    if world < 1:
        raise InputError(f"--processes must be at least 1, got {world}")
    if cfg.train.launch == "cluster":
        return cluster_device(cfg)
    device = device_of(cfg.train.device)
    if device == "cuda" and world > torch.cuda.device_count():
        raise InputError(f"--processes {world} needs {world} GPUs; torch sees {torch.cuda.device_count()}")
    return device


def resumed(resume: str, model_name: str) -> tuple[Path, str | None]:
    """The checkpoint `--resume` names (a file, or the newest in a folder) and the run it belongs to;
    bad input (exit 2) when there is none or it holds another architecture."""
    from downbeat.models import checkpoint

    try:
        path = checkpoint.latest(Path(resume))
        saved = checkpoint.read(path)
    except (FileNotFoundError, checkpoint.NotACheckpoint) as exc:
        raise InputError(f"--resume {resume}: {exc}") from None
    if saved.get("model_name") != model_name:
        raise InputError(f"--resume {path} holds a {saved.get('model_name')} model, not {model_name}")
    return path, saved.get("run_id")


def run(
    cfg: Config,
    model_name: str,
    *,
    processes: int | None = None,
    resume: str | None = None,
    parent_run: str | None = None,
    child_name: str | None = None,
    tables: dict[str, TableSnapshot] | None = None,
) -> TrainResult:
    """Check the inputs, then one models.lifecycle run; returns its TrainResult. With `parent_run`,
    the run is an experiment's child named `child_name` (logged, never registered). `tables`: the
    input snapshots to train on (an experiment pins one set for all its children); default, the
    tables' current versions."""
    from downbeat.models.lifecycle import INPUT_TABLES, MAY_BE_EMPTY, TrainRequest, train_and_register

    world = processes if processes is not None else cfg.train.processes
    if "://" in cfg.train.checkpoint_dir:
        raise InputError(
            f"config key 'train.checkpoint_dir' is {cfg.train.checkpoint_dir!r}: it must be a path (local, "
            "or a shared mount for train.launch: cluster); the registered model goes to "
            "mlflow.artifact_root, which may be a URI"
        )
    device = run_device(cfg, world)
    resume_path, resume_run = resumed(resume, model_name) if resume is not None else (None, None)
    lakehouse = Lakehouse(None, cfg.lakehouse.root)
    if tables is None:
        tables = snapshots(lakehouse, INPUT_TABLES, MAY_BE_EMPTY)
    facts = check_inputs(lakehouse, tables, cfg)
    request = TrainRequest(
        model_name=model_name,
        tables=tables,
        facts=facts,
        model=cfg.model,
        train=cfg.train,
        optim=cfg.optim,
        mlflow=cfg.mlflow,
        registry=cfg.registry,
        # what the run tracks and its checkpoints carry: secrets masked (models.redaction)
        config=redact(json.loads(json.dumps(dataclasses.asdict(cfg), default=str))),
        config_yaml=to_yaml(cfg),
        processes=world,
        device=device,
        code_root=PROJECT_ROOT,
        resume=resume_path,
        resume_run=resume_run,
        parent_run=parent_run,
        child_name=child_name,
    )
    return train_and_register(request, lambda spec, n: _launch(spec, n, device == "cuda", cfg))


def check_inputs(lakehouse: Lakehouse, tables: dict[str, TableSnapshot], cfg: Config) -> SequenceFacts:
    """What training on `tables` with `cfg` needs of them (bad input, exit 2, otherwise); the facts
    of gold/sequences."""
    from downbeat.models.data import sequence_facts

    sequences = tables[Tables.SEQUENCES]
    facts = sequence_facts(sequences)
    if facts.train_rows == 0:
        raise InputError(
            f"table gold/sequences version {sequences.version} has no train rows "
            "(users with a positive before the cut-off): nothing to train on"
        )
    check_training_table(lakehouse, tables, facts.train_rows, cfg)
    tracks = tables[Tables.TRACKS]
    if tracks.rows < 2:
        raise InputError(f"table gold/tracks version {tracks.version} has {tracks.rows} track(s): need 2")
    return facts


def check_training_table(lakehouse: Lakehouse, tables: dict[str, Any], train_rows: int, cfg: Config) -> None:
    """gold/training_sequences must come from the build that wrote gold/sequences, at the width the
    configuration asks for (it is fixed when the table is built)."""
    from downbeat.models.loader import table_width

    training, sequences = tables[Tables.TRAINING_SEQUENCES], tables[Tables.SEQUENCES]
    written = writer_commit(lakehouse, sequences)  # the build's write of gold/sequences
    # (tables of two builds' batches were refused by snapshots(); a foreign write shows in the rows)
    if training.rows != train_rows:
        raise InputError(
            f"table gold/training_sequences version {training.version} ({training.rows} rows) and "
            f"gold/sequences version {sequences.version} ({train_rows} train rows) come from different "
            "builds: run `downbeat build`"
        )
    built = written.get(UNIT_TAG, "user")  # tables built before the tag: users
    if built != cfg.features.sequences.unit:
        raise InputError(
            f"table gold/sequences version {sequences.version} holds a row per {built}, but "
            f"sequences.unit is {cfg.features.sequences.unit}: run `downbeat build` with this configuration, "
            f"or train with --set sequences.unit={built}"
        )
    try:
        width = table_width(training.files)
    except ValueError as exc:  # not the layout build writes: a table of an older or foreign writer
        raise InputError(f"table gold/training_sequences version {training.version}: {exc}") from None
    wanted = cfg.training_width
    if width < wanted:
        raise InputError(
            f"table gold/training_sequences version {training.version} holds {width} positions per row, "
            f"but model.max_length asks for {wanted}: run `downbeat build` with this configuration"
        )


def build_settings(lakehouse: Lakehouse, snapshot: TableSnapshot) -> dict[str, Any] | None:
    """The build settings (FeatureSettings.record) the build that wrote the snapshot's data
    recorded, or None for tables written before builds recorded them."""
    raw = writer_commit(lakehouse, snapshot).get(BUILD_SETTINGS_TAG)
    return None if raw is None else dict(json.loads(raw))


def _launch(spec: Any, world: int, cuda: bool, cfg: Config) -> dict[str, Any]:
    """Run the worker in this process (one local process), or on `world` ranks through TorchDistributor."""
    from downbeat.models.worker import train_worker

    if world == 1 and cfg.train.launch == "local":
        return train_worker(spec)
    if cfg.train.launch == "local":
        # Local mode hands back the output of whichever rank finished last: rank 0 writes its own.
        with tempfile.TemporaryDirectory(prefix="downbeat-ranks-") as folder:
            path = os.path.join(folder, "rank0.pickle")
            distributor(cfg, world, cuda).run(train_worker, dataclasses.replace(spec, result_path=path))
            if not os.path.exists(path):
                raise RuntimeError(f"rank 0 of {world} ended without writing its result to {path}")
            with open(path, "rb") as handle:
                output = pickle.load(handle)
    else:
        output = distributor(cfg, world, cuda).run(train_worker, spec)
    if not isinstance(output, dict) or "model" not in output:
        raise RuntimeError(f"TorchDistributor returned {type(output).__name__}, not rank 0's result")
    return output


GPU_DISCOVERY = Path(__file__).resolve().parent / "gpu_discovery.sh"


def gpu_conf(world: int) -> dict[str, str]:
    """Driver settings with which Spark owns this machine's GPUs (what TorchDistributor's local mode
    hands out to its ranks): `world` of them, found by jobs/gpu_discovery.sh."""
    if not os.access(GPU_DISCOVERY, os.X_OK):
        raise InputError(
            f"{GPU_DISCOVERY} is not executable: Spark cannot run it to find the GPUs (chmod +x)"
        )
    return {
        "spark.driver.resource.gpu.amount": str(world),
        "spark.driver.resource.gpu.discoveryScript": str(GPU_DISCOVERY),
    }


def distributor(cfg: Config, world: int, cuda: bool) -> Any:
    """A TorchDistributor for `world` ranks: here (`train.launch: local`; NCCL on this machine's GPUs,
    which the Spark driver is set up to own) or as barrier tasks on executors (`cluster`; a GPU per
    task from spark.task.resource.gpu.amount)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    from downbeat.pipelines.spark import spark_session

    local = cfg.train.launch == "local"
    settings = cfg.spark
    if local and cuda:  # the configured spark.conf wins (a cluster may name its own script)
        settings = dataclasses.replace(settings, conf={**gpu_conf(world), **settings.conf})
    spark = spark_session(settings, cfg.delta)
    if local and cuda:
        owned = spark.sparkContext.resources.get("gpu")
        amount = spark.conf.get("spark.driver.resource.gpu.amount", "0") or "0"
        found = min(len(owned.addresses) if owned else 0, int(amount) if amount.isdigit() else 0)
        if found < world:  # TorchDistributor would quietly run fewer ranks than asked for
            raise InputError(
                f"--processes {world} on GPUs: the Spark driver owns {found} GPU(s). It was started "
                "before train could configure them (spark-submit, or an earlier session): pass --conf "
                f"spark.driver.resource.gpu.amount={world} --conf "
                f"spark.driver.resource.gpu.discoveryScript={GPU_DISCOVERY}"
            )
    return TorchDistributor(num_processes=world, local_mode=local, use_gpu=cuda)


def cluster_device(cfg: Config) -> str:
    """The device of ranks on executors: cuda when Spark gives each task a GPU."""
    from downbeat.pipelines.spark import spark_session

    spark = spark_session(cfg.spark, cfg.delta)
    text = spark.conf.get("spark.task.resource.gpu.amount", "0") or "0"
    if not text.isdigit():  # TorchDistributor reads it as a whole number of GPUs per task
        raise InputError(f"spark.task.resource.gpu.amount is {text!r}: give each task a whole number of GPUs")
    gpus = int(text)
    if cfg.train.device == "cuda" and gpus < 1:
        raise InputError(
            "config key 'train.device' is 'cuda' with 'train.launch: cluster', but "
            "spark.task.resource.gpu.amount is not set: give each task a GPU (spark.conf)"
        )
    if cfg.train.device == "cpu":
        return "cpu"
    return "cuda" if gpus >= 1 else "cpu"
