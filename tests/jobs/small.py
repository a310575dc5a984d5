"""What the job tests share: a tiny network trained for two epochs, splits short enough for a few
weeks of synthetic listening, where a test keeps its tables and its MLflow store (`--set`
values), a test's own copy of a built lakehouse, and an experiment spec file."""

import shutil
from pathlib import Path

TINY_TRAINING = (
    "model.dim=16",
    "model.layers=1",
    "train.batch_size=16",
    "train.max_epochs=2",
    "train.eval_batch_size=64",
)
SHORT_SPLITS = ("split.test_days=14", "split.validation_days=14", "sequences.validation_percent=30")


def own_copy(built: Path, root: Path) -> Path:
    """A copy of the built lakehouse `built/lh` as `root/lh` (Delta tables name their files
    relatively, so the copied folder holds the same tables); returns `root`."""
    shutil.copytree(built / "lh", root / "lh")
    return root


def store_settings(lakehouse: Path, store: Path) -> list[str]:
    """`--set` values: the lakehouse at `lakehouse`; the MLflow store, its artifacts and the
    checkpoints under `store`."""
    return [
        f"lakehouse.root={lakehouse}",
        f"mlflow.tracking_uri=sqlite:///{store / 'mlruns.db'}",
        f"mlflow.artifact_root={store / 'artifacts'}",
        f"train.checkpoint_dir={store / 'checkpoints'}",
    ]


def spec_from(tmp_path: Path, text: str) -> str:
    """A spec file of `text` in tmp_path: its path, as `--spec` and load_spec take it."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return str(path)
