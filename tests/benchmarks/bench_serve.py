"""Benchmark (prints figures, never fails on time): `mlflow models serve` under a bounded load.

    python tests/benchmarks/bench_serve.py --json out.json          # 8 clients, 60 s, 600 tracks
    python tests/benchmarks/bench_serve.py --clients 4 --seconds 20 --tracks 2000

A model of the configured size over a catalog of --tracks (the demo's is 600) is logged and
registered as training does (bench_recommend.py's tables and registration), then served on
127.0.0.1 by `mlflow models serve --env-manager local`. --clients threads post requests for
--seconds, alternating requests of 1 and of 64 users, each scoring the whole catalog from a
50-play history. Reported, per request size and overall: requests, requests/s, latency p50 and
p99 (ms), answers by status class (any 5xx is an error of the server), and the server's resident
memory (its process tree) at the start and the end of the load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_recommend import register_model, write_tables  # noqa: E402

from tests.processes import free_port, stop_group  # noqa: E402

SIZES = (1, 64)
HISTORY = 50


def body(users: int, n_tracks: int, n_stations: int, rng: np.random.Generator) -> bytes:
    """A request of `users` rows, each a 50-play history and the whole catalog as candidates."""
    from downbeat.models.serving import INPUT_COLUMNS

    columns = list(INPUT_COLUMNS)  # history tracks, stations, feedback; the station; the candidates
    catalog = list(range(1, n_tracks + 1))
    rows = []
    for _ in range(users):
        stations = rng.integers(1, n_stations + 1, HISTORY).tolist()
        rows.append(
            [
                rng.integers(1, n_tracks + 1, HISTORY).tolist(),
                stations,
                rng.integers(1, 5, HISTORY).tolist(),
                stations[-1],
                catalog,
            ]
        )
    return json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()


def serve(tracking: str, work: Path) -> tuple[subprocess.Popen[str], str]:
    """The server process (its own process group) and its base URL, once /ping answers."""
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    command = [mlflow_cli, "models", "serve", "-m", "models:/downbeat@champion", "--env-manager", "local"]
    server = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        stdout=(work / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": path},
        cwd=work,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {(work / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as answer:
                if answer.status == 200:
                    return server, url
        except OSError:
            time.sleep(1)
    raise SystemExit("the server did not answer /ping within 180 s")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, MiB."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    return sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20


def load(
    url: str, bodies: dict[int, bytes], clients: int, seconds: float
) -> dict[int, list[tuple[float, int]]]:
    """(latency s, status) of every request, by request size; `clients` threads for `seconds`."""
    results: dict[int, list[tuple[float, int]]] = {size: [] for size in bodies}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(first: int) -> None:
        n = first
        while time.monotonic() < stop:
            size = SIZES[n % len(SIZES)]
            n += 1
            request = urllib.request.Request(
                f"{url}/invocations", bodies[size], {"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    answer.read()
                    status = answer.status
            except urllib.error.HTTPError as refused:
                status = refused.code
            except OSError:
                status = 0  # no answer at all
            with lock:
                results[size].append((time.perf_counter() - started, status))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def figures(latencies: list[tuple[float, int]], seconds: float) -> dict[str, Any]:
    times = np.array([t for t, _ in latencies]) * 1000
    statuses = [s for _, s in latencies]
    return {
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 2),
        "p50_ms": round(float(np.percentile(times, 50)), 1) if len(times) else None,
        "p99_ms": round(float(np.percentile(times, 99)), 1) if len(times) else None,
        "ok": sum(200 <= s < 300 for s in statuses),
        "4xx": sum(400 <= s < 500 for s in statuses),
        "5xx": sum(s >= 500 for s in statuses),
        "no_answer": sum(s == 0 for s in statuses),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=600, help="catalog size (the demo's: 600)")
    parser.add_argument("--stations", type=int, default=12)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--work", help="folder for the tables and the registry (default: a temporary one)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-serve-"))
    work.mkdir(parents=True, exist_ok=True)

    snapshots = write_tables(work, max(200, args.tracks // 10), args.tracks, 20, args.stations)
    tracking, _ = register_model(work, snapshots)
    n_tracks, n_stations = snapshots["gold/tracks"].rows, snapshots["gold/stations"].rows
    rng = np.random.default_rng(0)
    bodies = {size: body(size, n_tracks, n_stations, rng) for size in SIZES}
    server, url = serve(tracking, work)
    try:
        rss_start = rss_mb(server.pid)
        results = load(url, bodies, args.clients, args.seconds)
        rss_end = rss_mb(server.pid)
        alive = server.poll() is None
    finally:
        stop_group(server)
    out: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "tracks": n_tracks,
        "server_alive_after": alive,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "all": figures([r for rs in results.values() for r in rs], args.seconds),
        **{f"users_{size}": figures(results[size], args.seconds) for size in SIZES},
    }
    for key, value in out.items():
        print(f"{key:>20}: {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
