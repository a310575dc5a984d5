"""Checkpoint files: written whole, the newest found, read as data only."""

import pickle

import pytest
import torch

from downbeat.models import checkpoint


class PlantsAFile:
    """Unpickling this object (were code allowed to run) creates a file."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_the_newest_epoch_is_found_and_reads_back_as_written(tmp_path):
    for epoch in (0, 1, 9):
        weights = {"w": torch.full((2,), epoch)}
        checkpoint.write(checkpoint.epoch_path(tmp_path, epoch), {"state_dict": weights})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-001.pt", "epoch-002.pt", "epoch-010.pt"]
    newest = checkpoint.latest(tmp_path)
    assert newest.name == "epoch-010.pt" and checkpoint.latest(newest) == newest
    assert checkpoint.read(newest)["state_dict"]["w"].tolist() == [9, 9]


def test_a_folder_without_checkpoints_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no checkpoint epoch-NNN.pt in {tmp_path}"):
        checkpoint.latest(tmp_path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"not a checkpoint\n", "is not a downbeat checkpoint"),
        (b"", "is not a downbeat checkpoint"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_refused_by_name(tmp_path, content, reason):
    path = tmp_path / "epoch-001.pt"
    path.write_bytes(content)
    with pytest.raises(checkpoint.NotACheckpoint, match=f"^{path} {reason}") as caught:
        checkpoint.read(path)
    assert "\n" not in str(caught.value)


def test_a_torch_file_without_model_weights_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(checkpoint.NotACheckpoint, match="no state_dict in it"):
        checkpoint.read(path)


def test_a_pickle_carrying_code_is_refused_without_running_it(tmp_path):
    planted = tmp_path / "planted"
    carrier = {"state_dict": PlantsAFile(planted)}
    torch.save(carrier, tmp_path / "torch.pt")
    (tmp_path / "plain.pt").write_bytes(pickle.dumps(carrier, protocol=2))
    for path in (tmp_path / "torch.pt", tmp_path / "plain.pt"):
        with pytest.raises(checkpoint.NotACheckpoint, match=f"^{path} is not a downbeat checkpoint"):
            checkpoint.read(path)
    assert not planted.exists()
