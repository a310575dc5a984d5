"""Thin entry points: parse flags and config, build Spark, call one pipeline, write through the lakehouse."""
