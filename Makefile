# downbeat: `make test` and `make demo` are the two commands a fresh clone needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

AIRFLOW_VENV := .venv-airflow
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
RECTOOLS_VENV := .venv-rectools
RECTOOLS_STAMP := $(RECTOOLS_VENV)/.installed

.PHONY: test test-integration test-deploy demo lint typecheck-links prereqs lock clean rectools-venv \
	gpu-check gpu-check-data

test: $(STAMP) typecheck-links
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest
	$(MAKE) test-deploy

# The jobs through spark-submit on a local-cluster master, the faults they survive, object storage
# (pytest's `integration` marker; 10-17 minutes here). .ci/run runs it after `make test`.
# hadoop-aws (for s3:// roots; with the AWS SDK bundle, 560 MB) is resolved into the jar cache once.
HADOOP_AWS := org.apache.hadoop:hadoop-aws:3.4.1
test-integration: $(STAMP)
	$(BIN)/python -m downbeat.pipelines.connector --packages $(HADOOP_AWS) --log-store
	$(BIN)/pytest -m integration

# deploy/airflow's DAG as Airflow's DagBag loads it, in a venv of its own (Airflow's dependencies
# do not fit downbeat's lock): about two minutes to install once, seconds to run.
test-deploy: $(AIRFLOW_STAMP)
	$(AIRFLOW_VENV)/bin/python -m pytest -q -p no:cacheprovider deploy/tests

$(AIRFLOW_STAMP): deploy/requirements-airflow.lock | prereqs
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --no-warn-script-location -r deploy/requirements-airflow.lock
	@touch $@

# RecTools, the peer tests/benchmarks/bench_ml1m.py runs beside downbeat's models (--rectools
# .venv-rectools/bin/python), in a venv of its own: its pins are not downbeat's. Not needed by any test.
rectools-venv: $(RECTOOLS_STAMP)

$(RECTOOLS_STAMP): tests/benchmarks/requirements-rectools.lock | prereqs
	rm -rf $(RECTOOLS_VENV)
	$(PYTHON) -m venv $(RECTOOLS_VENV)
	$(RECTOOLS_VENV)/bin/pip install --quiet --no-warn-script-location -r tests/benchmarks/requirements-rectools.lock
	@touch $@

# Synthetic log -> bronze -> silver -> gold -> baseline and hybrid models in MLflow -> comparison
# table, all in a scratch folder (demo/: lakehouse, mlruns.db, mlartifacts, checkpoints).
DEMO_ROOT ?= demo
demo: $(STAMP)
	rm -rf $(DEMO_ROOT)
	$(BIN)/downbeat --conf conf/demo.yaml demo --root $(DEMO_ROOT)

# The GPU check (scripts/gpu_check.py): `make gpu-check-data` here writes a small build's
# gold/training_sequences as plain Parquet (.gpu-check/data, git-ignored, a few MiB); `make gpu-check`
# runs on a GPU machine with its own Python and CUDA torch (no venv, Spark or Java there; carry
# .gpu-check/data), one line per figure and one JSON ($OUT/gpu_check.json, or .gpu-check/).
# GPU_CHECK_ARGS adds options (e.g. "--device cpu --steps 2 --epochs 1" to try it here).
GPU_CHECK := .gpu-check
GPU_BUILD := --conf conf/demo.yaml --set lakehouse.root=$(GPU_CHECK)/build/lakehouse \
  --set sequences.max_length=200 --set spark.log_level=ERROR
gpu-check-data: $(STAMP)
	rm -rf $(GPU_CHECK)/build $(GPU_CHECK)/data
	$(BIN)/downbeat $(GPU_BUILD) synth --users 2000 --days 49 --out $(GPU_CHECK)/build/raw
	$(BIN)/downbeat $(GPU_BUILD) ingest --format events --input $(GPU_CHECK)/build/raw
	$(BIN)/downbeat $(GPU_BUILD) build
	$(BIN)/python scripts/gpu_check.py export --lakehouse $(GPU_CHECK)/build/lakehouse --out $(GPU_CHECK)/data
	rm -rf $(GPU_CHECK)/build

GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
gpu-check:
	$(GPU_PYTHON) scripts/gpu_check.py run --data $(GPU_CHECK)/data --json $${OUT:-$(GPU_CHECK)}/gpu_check.json \
	  $(GPU_CHECK_ARGS)

lint: $(STAMP) typecheck-links
	$(BIN)/ruff check .
	$(BIN)/mypy

# mypy reads the code under the names it is imported by (downbeat.pipelines, ...): links to the
# folders, as the installed package maps them (pyproject.toml's package-dir).
typecheck-links:
	mkdir -p .typecheck/downbeat
	for p in pipelines models jobs; do ln -sfn ../../$$p .typecheck/downbeat/$$p; done

# One line per missing prerequisite, naming what to install.
prereqs:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	if [ -z "$$v" ]; then echo "downbeat needs Python 3.11: '$(PYTHON)' does not run; install Python 3.11 (e.g. 'apt-get install python3.11') or run 'make PYTHON=/path/to/python3.11'"; exit 2; fi; \
	if [ "$$v" != 3.11 ]; then echo "downbeat needs Python 3.11, but '$(PYTHON)' is Python $$v: install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 2; fi
	@command -v java >/dev/null 2>&1 || { echo "downbeat needs Java 17 for Spark: install it (e.g. 'apt-get install openjdk-17-jre-headless') and put java on PATH"; exit 2; }
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	[ "$$v" = 17 ] || [ "$$v" = 21 ] || { echo "downbeat needs Java 17 (or 21) for Spark 4, but java is version '$$v': install openjdk-17-jre-headless and put it first on PATH"; exit 2; }

# The venv, then the Delta Spark connector's jars (Maven Central, once) into $(VENV)/share/downbeat/jars.
$(STAMP): requirements.lock pyproject.toml | prereqs
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	set -o pipefail; $(BIN)/pip install --quiet --no-warn-script-location -r requirements.lock 2>&1 \
	  | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m downbeat.pipelines.connector
	@touch $@

# Re-resolve the pinned direct dependencies into requirements.lock (needs the package registry).
lock: prereqs
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet ".[dev]"
	{ sed -n '1,3p' requirements.lock; .lock-venv/bin/pip freeze --all --exclude-editable \
	  | grep -v -E '^(pip|downbeat)==' | sed 's/^torch==\([0-9.]*\)+.*$$/torch==\1/'; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf .lock-venv

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) $(RECTOOLS_VENV) .pytest_cache .ruff_cache .mypy_cache .typecheck
