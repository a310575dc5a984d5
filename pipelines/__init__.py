"""Spark feature pipelines: pure DataFrame transforms, the session factory and the Delta table layer."""
