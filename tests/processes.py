"""Commands the tests run in their own processes: a command that runs past its time is stopped with
everything it started (Spark's JVMs, torchrun's ranks), and the test fails with what it printed last."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest


def run_command(
    command: Sequence[str],
    *,
    timeout: float,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`command` to its end, its stdout and stderr captured as text; past `timeout` seconds its whole
    process group is killed and the test fails with the tail of its stderr."""
    process = subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
        start_new_session=True,  # its own process group: the children go with it
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            os.killpg(process.pid, signal.SIGKILL)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # a grandchild in a session of its own still holds the pipes
            process.kill()
            stdout, stderr = "", "(its output could not be read: a process it started still holds it)"
        pytest.fail(f"{' '.join(command)} ran past {timeout:.0f} s; its stderr ended:\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
