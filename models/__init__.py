"""PyTorch models, losses, data loading and tracking. Never imports pyspark."""
