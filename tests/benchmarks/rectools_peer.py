"""RecTools' SASRec on the training rows downbeat trained on, scored by downbeat's metric code.

Run by tests/benchmarks/bench_ml1m.py with the RecTools environment's python (`make rectools-venv`;
its dependencies are not downbeat's) and PYTHONPATH at a folder holding downbeat/models, so that
`downbeat.models.metrics` (numpy only) ranks RecTools' scores exactly as downbeat's own models
are ranked. Nothing of RecTools is copied: it is used through its public API.

Input folder (bench_ml1m.export_for_peer): train.parquet (user_id, item_id = downbeat's track idx,
position), validation.parquet and test.parquet (user_id, track_idx = the target, history_track_ids,
exclude_track_ids), items.json. The model trains one epoch at a time (`fit_partial`), is ranked on
the validation targets after each (NDCG@10, full catalog, the user's rated items excluded, ties
against the target), stops after `--patience` epochs without a better figure (at most
`--max-epochs`), and the best epoch's model ranks the test targets from each user's training rows
plus the validation target. Writes JSON: per-user test ranks, epochs, the learning curve, settings.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.item_net import IdEmbeddingsItemNet

from downbeat.models import metrics as M

K = 10


def interactions(rows: pd.DataFrame) -> pd.DataFrame:
    """RecTools' interactions from (user_id, item_id, position): the order is the rows' order."""
    return pd.DataFrame(
        {
            Columns.User: rows["user_id"].to_numpy(),
            Columns.Item: rows["item_id"].to_numpy(),
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(rows["position"].to_numpy(), unit="s"),
        }
    )


def ranks(model: SASRecModel, dataset: Dataset, targets: pd.DataFrame, n_items: int) -> np.ndarray:
    """Each target's rank among the whole catalog (downbeat's models.metrics.target_ranks): RecTools'
    scores of every item it knows, the user's excluded items and the items it never saw at -inf."""
    users = targets["user_id"].to_numpy()
    known = int(dataset.item_id_map.size)
    reco = model.recommend(users=users, dataset=dataset, k=known, filter_viewed=False)
    scores = np.full((len(users), n_items + 1), -np.inf)
    row_of = {u: i for i, u in enumerate(users)}
    rows = reco[Columns.User].map(row_of).to_numpy()
    scores[rows, reco[Columns.Item].to_numpy().astype(np.int64)] = reco[Columns.Score].to_numpy()
    for i, excluded in enumerate(targets["exclude_track_ids"]):
        scores[i, np.asarray(excluded, dtype=np.int64)] = -np.inf
    catalog = scores[:, 1:]  # column j is track idx j + 1, as in models/evaluation.py
    return M.target_ranks(catalog, targets["track_idx"].to_numpy(dtype=np.int64) - 1)


def ndcg(rank: np.ndarray) -> float:
    return float(np.where(rank <= K, 1.0 / np.log2(rank + 1.0), 0.0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--loss", choices=["softmax", "gBCE", "BCE"], default="softmax")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    torch.manual_seed(7)
    n_items = json.loads((args.data / "items.json").read_text())["items"]
    train_rows = pd.read_parquet(args.data / "train.parquet")
    validation = pd.read_parquet(args.data / "validation.parquet").sort_values("user_id", ignore_index=True)
    test = pd.read_parquet(args.data / "test.parquet").sort_values("user_id", ignore_index=True)
    train = Dataset.construct(interactions(train_rows))
    last = train_rows.groupby("user_id")["position"].max()
    with_validation = pd.concat(  # each user's validation target after their training rows
        [
            train_rows,
            pd.DataFrame(
                {
                    "user_id": validation["user_id"],
                    "item_id": validation["track_idx"],
                    "position": validation["user_id"].map(last).fillna(-1).to_numpy() + 1,
                }
            ),
        ],
        ignore_index=True,
    )
    settings = {  # downbeat's defaults (conf/base.yaml) where RecTools has the same knob
        "n_blocks": 2,
        "n_heads": 2,
        "n_factors": 64,
        "dropout_rate": 0.1,
        "session_max_len": 200,
        "lr": 0.001,
        "batch_size": args.batch_size,
        "loss": args.loss,
        **({"n_negatives": 256, "gbce_t": 0.75} if args.loss == "gBCE" else {}),
    }
    model = SASRecModel(
        **settings, epochs=1, deterministic=True, item_net_block_types=(IdEmbeddingsItemNet,), verbose=0
    )
    best, best_value, best_epoch, stale, curve = None, -1.0, 0, 0, []
    for epoch in range(args.max_epochs):
        started = time.perf_counter()
        model.fit_partial(train, min_epochs=1, max_epochs=1)
        seconds = time.perf_counter() - started
        value = ndcg(ranks(model, train, validation, n_items))
        curve.append({"epoch": float(epoch + 1), "val_ndcg@10": value, "train_seconds": seconds})
        print(
            f"rectools {args.loss} epoch {epoch + 1}: validation NDCG@10 {value:.4f} ({seconds:.0f} s)",
            flush=True,
        )
        if value > best_value:
            # the network's weights only: a deep copy of the RecTools model goes through its
            # checkpoint, which leaves the copied trainer unable to fit another epoch
            best = copy.deepcopy(model.lightning_model.state_dict())
            best_value, best_epoch, stale = value, epoch + 1, 0
        else:
            stale += 1
            if stale >= args.patience:
                break
    assert best is not None
    model.lightning_model.load_state_dict(best)
    test_ranks = ranks(model, Dataset.construct(interactions(with_validation)), test, n_items)
    args.out.write_text(
        json.dumps(
            {
                "users": test["user_id"].tolist(),
                "ranks": test_ranks.tolist(),
                "epochs": len(curve),
                "best_epoch": best_epoch,
                "curve": curve,
                "settings": settings,
            }
        )
    )


if __name__ == "__main__":
    main()
