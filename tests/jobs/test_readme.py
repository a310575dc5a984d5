"""The README's commands run as written. Every line of its `sh` blocks runs in a shell, from a
folder laid out as the tour expects (`demo/lakehouse`, `demo/mlruns.db` with a champion, `.venv`),
except `make` lines, which are how these tests themselves run. The tour's blocks run on a tiny
lakehouse; the block on a real log ingests and builds the Last.fm sample (minutes: integration)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from downbeat.jobs import training
from downbeat.jobs.config import load_config
from tests.jobs.small import TINY_TRAINING, store_settings
from tests.processes import run_command

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parents[1]


def sh_blocks(text: str) -> list[list[str]]:
    """The commands of each ```sh block: continuation lines joined, comments, blank lines and
    `make` lines left out."""
    blocks = []
    for body in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", "", body)
        lines = [line.split("  #")[0].strip() for line in joined.splitlines()]
        blocks.append([line for line in lines if line and not line.startswith(("#", "make "))])
    return [b for b in blocks if b]


BLOCKS = sh_blocks((ROOT / "README.md").read_text())
TOUR = [b for b in BLOCKS if any("demo/" in line for line in b)]
REAL = [b for b in BLOCKS if b not in TOUR]


def test_the_reader_finds_the_tour_and_the_real_log_blocks_and_skips_make():
    text = "```sh\nmake test   # all\n.venv/bin/downbeat a \\\n    b --json\n```\n```\nnot run\n```\n"
    assert sh_blocks(text) == [[".venv/bin/downbeat a b --json"]]
    assert len(TOUR) == 3
    assert {line.split()[0] for b in TOUR for line in b} == {".venv/bin/downbeat", ".venv/bin/python"}
    assert len(REAL) == 1 and [line.split()[:2] for line in REAL[0]] == [
        ["downbeat", "ingest"],
        ["downbeat", "build"],
        ["downbeat", "train"],
    ]


def run_line(line: str, cwd: Path, *more: str) -> tuple[str, str]:
    """One README line in bash from `cwd`, the venv's commands on PATH; it must succeed."""
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    result = run_command(["bash", "-c", " ".join([line, *more])], cwd=cwd, env=env, timeout=600)
    assert result.returncode == 0, (line, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, (line, result.stderr[-3000:])
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def tour(built_lakehouse, tmp_path_factory) -> Path:
    """A folder as the tour finds it after `make demo`: the lakehouse, a registry whose champion is
    a tiny hybrid, and the venv as `.venv`."""
    root = tmp_path_factory.mktemp("readme")
    demo = root / "demo"
    shutil.copytree(built_lakehouse / "lh", demo / "lakehouse")
    training.run(load_config(None, [*store_settings(demo / "lakehouse", demo), *TINY_TRAINING]), "hybrid")
    (root / ".venv").symlink_to(VENV)
    return root


@pytest.mark.parametrize("block", range(len(TOUR)))
def test_each_tour_block_runs_as_written_on_the_demo_folder(tour, block):
    for line in TOUR[block]:
        out, _ = run_line(line, tour)
        if " config show" in line:
            assert "root: demo/lakehouse" in out and "tracking_uri: sqlite:///demo/mlruns.db" in out
        elif "--json" in line:
            assert "paired_accuracy" in json.loads(out.strip().splitlines()[-1])
        elif " recommend " in line:
            assert re.search(r"top 20 of downbeat version 1 for \d+ users", out), out[-500:]
        else:  # the gold table's first rows, through delta-rs
            assert "user_id" in out and "cutoff_ts" in out and "[5 rows x 12 columns]" in out


@pytest.mark.integration
def test_the_real_log_block_runs_as_written(tmp_path):
    if not (ROOT.parent / "shared" / "datasets" / "lastfm1k_head").exists():
        pytest.skip("the Last.fm sample is not beside the repository")
    (tmp_path / ".venv").symlink_to(VENV)
    (tmp_path / "repo").mkdir()
    (tmp_path / "shared").symlink_to(ROOT.parent / "shared")
    cwd = tmp_path / "repo"  # so that ../shared is the datasets' folder, as beside the checkout
    small = [x for v in (*TINY_TRAINING, "spark.log_level=ERROR") for x in ("--set", v)]
    outputs = [run_line(line, cwd, *small)[0] for line in REAL[0]]
    assert re.search(r"ingest lastfm1k: 1 file\(s\), 5000 accepted, 0 rejected", outputs[0]), outputs[0]
    assert (cwd / "lakehouse" / "gold" / "training_sequences").exists()
    assert re.fullmatch(r"[0-9a-f]{32}", outputs[2].strip().splitlines()[-1])
