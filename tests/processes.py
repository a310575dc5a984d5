"""Commands the tests run in their own processes: a command that runs past its time is stopped with
everything it started (Spark's JVMs, torchrun's ranks), and the test fails with what it printed last."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stop_group(process: subprocess.Popen) -> None:
    """Stop a server started with `start_new_session=True`, and everything it started: SIGTERM to
    its process group, SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):  # it may have died already
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
