"""Settings the job tests share: a tiny network trained for two epochs, and splits short enough
for a few weeks of synthetic listening (`--set` values)."""

TINY_TRAINING = (
    "model.dim=16",
    "model.layers=1",
    "train.batch_size=16",
    "train.max_epochs=2",
    "train.eval_batch_size=64",
)
SHORT_SPLITS = ("split.test_days=14", "split.validation_days=14", "sequences.validation_percent=30")
