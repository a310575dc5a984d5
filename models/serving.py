"""Scoring frames: the one interface of a trained model, in process and as an MLflow pyfunc.

Input: one row per request, a user's history (track, station and feedback ids, oldest first),
the query station and the candidate tracks. Output: one score per candidate, and whether the
model had any input for the user (`served`; e.g. the baseline cannot serve skip-only users).
`recommend_frame` ranks the whole catalog instead (the batch recommendation job).

The logged pyfunc carries this package as its code, under its own name `downbeat.models`
(`carried_code`), so it loads where downbeat is not installed and cannot be mistaken for another
package called `models`: nothing here may import pyspark, petastorm or deltalake.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from downbeat.models import checkpoint
from downbeat.models.contract import (
    CANDIDATE_TRACK_IDS,
    EXCLUDE_TRACK_IDS,
    HISTORY_FEEDBACK_IDS,
    HISTORY_STATION_IDS,
    HISTORY_TRACK_IDS,
    N_FEEDBACK,
    SCORES,
    SERVED,
    STATION_IDX,
    TOP_TRACK_IDS,
    TRACK_ID,
    TRACK_IDX,
)
from downbeat.models.data import TableSnapshot, history_tensors, pad_right, read_table
from downbeat.models.network import History, Recommender
from downbeat.models.zoo import build_model, network_settings, own_settings_from_flat, with_own_settings

HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK = (
    HISTORY_TRACK_IDS,
    HISTORY_STATION_IDS,
    HISTORY_FEEDBACK_IDS,
)
STATION, CANDIDATES = STATION_IDX, CANDIDATE_TRACK_IDS
INPUT_COLUMNS = (HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK, STATION, CANDIDATES)
# recommend_frame: the tracks never to recommend to a row's user (those the user rated down), in;
# the top tracks (track idx, best first) and their scores, out.
EXCLUDE, TOP_TRACKS = EXCLUDE_TRACK_IDS, TOP_TRACK_IDS
HISTORY_INPUT = (HISTORY_TRACKS, HISTORY_STATIONS, HISTORY_FEEDBACK, STATION)
# What the pyfunc needs installed: public packages only (its own code travels with it).
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy==1.26.4", "pandas==2.2.3", "pyarrow==14.0.2", "mlflow==3.6.0"]


def carried_code(into: Path) -> list[str]:
    """The code a logged model carries (mlflow `code_paths`): this package, copied under `into` as
    downbeat/models (a namespace package `downbeat`), so the model imports it as downbeat.models."""
    package = into / "downbeat" / "models"
    shutil.copytree(Path(__file__).resolve().parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    return [str(into / "downbeat")]


def score_frame(
    model: Recommender, frame: pd.DataFrame, *, batch_size: int = 256, device: str = "cpu"
) -> pd.DataFrame:
    """One row per input row: `scores` (float32 array, one per candidate) and `served` (bool)."""
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"scoring input lacks column(s) {', '.join(missing)}; expected {', '.join(INPUT_COLUMNS)}"
        )
    model.eval()
    scores: list[np.ndarray] = []
    served: list[np.ndarray] = []
    width = model.network.settings.max_length
    with torch.no_grad():
        for start in range(0, len(frame), batch_size):
            part = frame.iloc[start : start + batch_size]
            history = request_history(part, width).to(device)
            candidates = list(part[CANDIDATES])
            counts = [len(c) for c in candidates]
            padded = torch.from_numpy(pad_right(candidates, max(max(counts, default=0), 1))).to(device)
            out = model.score(history, padded).float().cpu().numpy()
            scores.extend(out[i, : counts[i]].astype(np.float32) for i in range(len(counts)))
            served.append(model.can_serve(history).cpu().numpy())
    return pd.DataFrame({SCORES: scores, SERVED: np.concatenate(served) if served else np.zeros(0, bool)})


MAX_REQUEST_ROWS = 10_000  # rows of one scoring request


def check_request(frame: pd.DataFrame, n_tracks: int, n_stations: int) -> None:
    """A served request's problem, as a ValueError naming the row and column: no rows, more than
    MAX_REQUEST_ROWS, a row with no candidates or more than the catalog holds, a track id outside
    1..n_tracks, a station outside 0..n_stations, a feedback code outside 0..N_FEEDBACK - 1, or
    lists of one row whose lengths differ. (score_frame scores what it is given.)"""
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        expected = ", ".join(INPUT_COLUMNS)
        raise ValueError(f"the request lacks column(s) {', '.join(missing)}; expected {expected}")
    if not 1 <= len(frame) <= MAX_REQUEST_ROWS:
        raise ValueError(f"a request holds 1 to {MAX_REQUEST_ROWS} rows, this one {len(frame)}")
    bounds = {
        HISTORY_TRACKS: (1, n_tracks),
        CANDIDATES: (1, n_tracks),
        HISTORY_STATIONS: (0, n_stations),
        HISTORY_FEEDBACK: (0, N_FEEDBACK - 1),
    }
    for i, row in enumerate(frame[list(INPUT_COLUMNS)].itertuples(index=False)):
        values = dict(zip(INPUT_COLUMNS, row, strict=True))
        count = len(values[CANDIDATES])
        if not 1 <= count <= n_tracks:
            raise ValueError(f"row {i}: {CANDIDATES} holds {count} ids; a row scores 1 to {n_tracks}")
        for column, (low, high) in bounds.items():
            ids = np.asarray(values[column], dtype=np.int64)
            if ids.size and (ids.min() < low or ids.max() > high):
                bad = int(ids[(ids < low) | (ids > high)][0])
                raise ValueError(f"row {i}: {column} holds {bad}, outside {low}..{high}")
        lengths = {len(values[c]) for c in HISTORY_INPUT[:3]}
        if len(lengths) > 1:
            raise ValueError(f"row {i}: {', '.join(HISTORY_INPUT[:3])} differ in length")
        station = values[STATION]
        if station is not None and station == station and not 0 <= int(station) <= n_stations:
            raise ValueError(f"row {i}: {STATION} {int(station)} is outside 0..{n_stations}")


def request_history(part: pd.DataFrame, width: int) -> History:
    """The History of request rows: their histories (each row's last `width - 1` plays; the query
    takes the last place) and query stations."""
    return history_tensors(
        list(part[HISTORY_TRACKS]),
        list(part[HISTORY_STATIONS]),
        list(part[HISTORY_FEEDBACK]),
        part[STATION].fillna(0).to_numpy(),
        width - 1,
    )


def recommend_frame(
    model: Recommender, frame: pd.DataFrame, top_k: int, *, batch_size: int = 256, device: str = "cpu"
) -> pd.DataFrame:
    """One row per input row: the `top_k` best-scoring catalog tracks (`top_track_ids`, track idx,
    best first; ties by the lower idx), their `scores`, and `served`. A row's `exclude_track_ids`
    are never among its tracks; a row the model cannot serve gets none."""
    missing = [c for c in (*HISTORY_INPUT, EXCLUDE) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"recommendation input lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join((*HISTORY_INPUT, EXCLUDE))}"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    model.eval()
    width = model.network.settings.max_length
    n = len(frame)
    tracks: list[np.ndarray] = [np.zeros(0, np.int64)] * n
    scores: list[np.ndarray] = [np.zeros(0, np.float32)] * n
    served = np.zeros(n, dtype=bool)
    # rows of like length batch together: a batch is as wide as its longest history
    lengths = np.fromiter((len(x) for x in frame[HISTORY_TRACKS]), dtype=np.int64, count=n)
    order = np.argsort(lengths, kind="stable")
    with torch.no_grad():
        for start in range(0, n, batch_size):
            at = order[start : start + batch_size]
            part = frame.iloc[at]
            history = request_history(part, width).to(device)
            full = model.score_all(history).float()  # (B, n_tracks + 1), padding column -inf
            excluded = [np.asarray(x, dtype=np.int64) for x in part[EXCLUDE]]
            rows = np.repeat(np.arange(len(excluded)), [len(x) for x in excluded])
            if len(rows):
                columns = np.concatenate(excluded)
                inside = (columns > 0) & (columns < full.shape[1])
                full[torch.from_numpy(rows[inside]), torch.from_numpy(columns[inside])] = float("-inf")
            k = min(top_k, full.shape[1] - 1)
            best_t, top_t = top_tracks(full, k)
            best, top = best_t.cpu().numpy(), top_t.cpu().numpy()
            ok = model.can_serve(history).cpu().numpy()
            served[at] = ok
            for i, row in enumerate(at):
                keep = np.isfinite(best[i]) if ok[i] else np.zeros(k, dtype=bool)
                tracks[row] = top[i][keep].astype(np.int64)
                scores[row] = best[i][keep].astype(np.float32)
    return pd.DataFrame({TOP_TRACKS: tracks, SCORES: scores, SERVED: served})


def top_tracks(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) best scores and their columns, best first, equal scores by the lower column: what a
    stable descending sort of every row gives, at the cost of a top-k (a full sort of a 20,000-track
    catalog costs more than the model). Rows with ties across the k-th place take the full sort."""
    values, columns = torch.topk(scores, k, dim=1)  # the k best, in some order among equals
    by_column = columns.argsort(dim=1)
    values, columns = values.gather(1, by_column), columns.gather(1, by_column)
    order = values.argsort(dim=1, descending=True, stable=True)  # equal values keep column order
    values, columns = values.gather(1, order), columns.gather(1, order)
    tied = (scores >= values[:, -1:]).sum(dim=1) > k  # the k-th place is shared with one left out
    if bool(tied.any()):
        exact_values, exact_columns = torch.sort(scores[tied], dim=1, descending=True, stable=True)
        values[tied], columns[tied] = exact_values[:, :k], exact_columns[:, :k]
    return values, columns


def catalog_fingerprint(track_ids: Iterable[str]) -> str:
    """A catalog's identity: the track ids in track_idx order (1..N), hashed. Two builds that give
    the same ids to the same tracks have the same fingerprint, whatever their table versions."""
    digest = hashlib.sha256()
    for track in track_ids:
        digest.update(track.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:16]


def tracks_fingerprint(tracks: TableSnapshot) -> str:
    """The catalog fingerprint of a gold/tracks snapshot (its track ids in track_idx order)."""
    ids = read_table(tracks, [TRACK_ID, TRACK_IDX]).sort_by(TRACK_IDX)[TRACK_ID].to_pylist()
    return catalog_fingerprint(ids)


def checkpoint_payload(model: Recommender, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to rebuild `model` elsewhere: architecture, vocabulary sizes, weights."""
    return {
        "model_name": model.name,
        "n_tracks": model.network.n_tracks,
        "n_stations": model.network.n_stations,
        "positive_feedback": list(model.positive_feedback),
        "model_settings": dataclasses.asdict(network_settings(model.network.settings)),
        # the architecture's own settings (config `model.<name>`); None for popularity
        "settings": None if model.settings is None else dataclasses.asdict(model.settings),
        "config": config or {},
        "state_dict": model.state_dict(),
    }


def model_from_payload(payload: dict[str, Any]) -> Recommender:
    """The model a checkpoint holds. One written before each architecture had settings of its own
    keeps them in a flat `train_settings` dict, read under their new names."""
    name = payload["model_name"]
    own = (
        payload["settings"]
        if "settings" in payload
        else own_settings_from_flat(name, payload["train_settings"])
    )
    settings = with_own_settings(name, payload["model_settings"], own)
    model = build_model(
        name, payload["n_tracks"], payload["n_stations"], settings, tuple(payload["positive_feedback"])
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def load_model(path: str | Path) -> Recommender:
    return model_from_payload(checkpoint.read(path))


def signature() -> Any:
    """The pyfunc's signature: list columns of ids in, a score per candidate out."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, DataType, Schema

    ids = Array(DataType.long)
    inputs = Schema(
        [
            ColSpec(ids, HISTORY_TRACKS),
            ColSpec(ids, HISTORY_STATIONS),
            ColSpec(ids, HISTORY_FEEDBACK),
            ColSpec(DataType.long, STATION),
            ColSpec(ids, CANDIDATES),
        ]
    )
    outputs = Schema([ColSpec(Array(DataType.float), SCORES), ColSpec(DataType.boolean, SERVED)])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(n_tracks: int) -> pd.DataFrame:
    """One request: an up, a skip and a down on station 1, scoring two candidates."""
    a, b = 1, min(2, n_tracks)
    return pd.DataFrame(
        {
            HISTORY_TRACKS: [[a, b, a]],
            HISTORY_STATIONS: [[1, 1, 0]],
            HISTORY_FEEDBACK: [[1, 3, 2]],
            STATION: [1],
            CANDIDATES: [[a, b]],
        }
    )


try:
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency; this keeps the module importable alone
    PythonModel = object  # type: ignore[assignment,misc]


class DownbeatPyfunc(PythonModel):
    """The MLflow pyfunc: loads the checkpoint artifact, scores frames on the CPU."""

    def load_context(self, context: Any) -> None:
        self.model = load_model(context.artifacts["checkpoint"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores; a malformed request is refused (MLflow's INVALID_PARAMETER_VALUE, a 400 when
        served) with the row and column at fault."""
        network = self.model.network
        try:
            check_request(model_input, network.n_tracks, network.n_stations)
        except ValueError as exc:
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        return score_frame(self.model, model_input)

    def recommend(self, frame: pd.DataFrame, top_k: int, batch_size: int = 256) -> pd.DataFrame:
        """The batch recommendation job's call: recommend_frame on the loaded model."""
        return recommend_frame(self.model, frame, top_k, batch_size=batch_size)
