"""Checkpoints on disk: one file an epoch (epoch-NNN.pt), written so that a crash never leaves a
truncated file under the real name, and read as data only: `torch.load(weights_only=True)` builds
tensors, numbers, strings and containers and runs no code a file carries, so a `--resume` that names
a stranger's file cannot execute it."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class NotACheckpoint(ValueError):
    """The file is missing, unreadable, or holds something other than a downbeat checkpoint."""


def epoch_path(directory: Path, epoch: int) -> Path:
    """Where epoch `epoch` (0-based) is written: epoch-001.pt for the first."""
    return directory / f"epoch-{epoch + 1:03d}.pt"


def write(path: Path, content: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".pt.partial")
    torch.save(content, partial)
    partial.replace(path)  # atomic: the real name only ever holds a whole file
    return path


def latest(path: Path) -> Path:
    """`path` itself when it is a file, else the newest epoch-NNN.pt inside it."""
    if path.is_file():
        return path
    found = sorted(path.glob("epoch-*.pt"))
    if not found:
        raise FileNotFoundError(f"no checkpoint epoch-NNN.pt in {path}")
    return found[-1]


def read(source: Path | str | Any, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's content (a path or a binary file object); NotACheckpoint, naming the file,
    when it is not one."""
    name = source if isinstance(source, str | Path) else "the checkpoint"
    try:
        content = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False, which is what must not be done here
        raise NotACheckpoint(
            f"{name} is not a downbeat checkpoint (not a torch file of tensors and plain values)"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        # not pipelines.errors.first_line: the logged model carries downbeat/models alone, and
        # serving reads its weights through this module
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotACheckpoint(f"{name} is not a downbeat checkpoint ({reason})") from None
    if not isinstance(content, dict) or "state_dict" not in content:
        raise NotACheckpoint(f"{name} is not a downbeat checkpoint (no state_dict in it)")
    return content
