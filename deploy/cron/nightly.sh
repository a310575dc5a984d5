#!/usr/bin/env bash
# downbeat's nightly chain for hosts without Airflow: ingest the day's files, rebuild that day's
# range, train (which moves the champion alias only for a better validation figure), evaluate the
# candidate, then compare it with the champion for the record (the champion gate's report).
# Each step is one `spark-submit jobs/<name>.py ... --json`; the first failure stops the chain
# with that step's exit code (2: bad input, named on stderr; 1: anything else), and every step is
# safe to rerun (ingest merges on event ids, build rewrites the day's range; see the Airflow DAG).
#
#   nightly.sh [DAY]            DAY = YYYY-MM-DD, default yesterday (UTC)
#
# Environment (defaults in brackets):
#   DOWNBEAT_HOME     the checkout holding jobs/ and conf/          [this script's ../..]
#                     (downbeat itself is installed in the Python spark-submit runs: `pip install .`)
#   DOWNBEAT_CONF     config file                                   [$DOWNBEAT_HOME/conf/cluster.yaml]
#   DOWNBEAT_LANDING  the day's files are in $DOWNBEAT_LANDING/DAY  [/data/landing]
#   DOWNBEAT_FORMAT   ingest --format                               [events]
#   DOWNBEAT_MODEL    train --model                                 [hybrid]
#   DOWNBEAT_REGISTERED_MODEL  the registry name of the config     [downbeat]
#   DOWNBEAT_LOGS     each step's stdout, stderr and JSON summary   [$DOWNBEAT_HOME/logs]
#   SPARK_SUBMIT      spark-submit and its options, e.g. "spark-submit --master yarn --packages
#                     io.delta:delta-spark_2.13:4.0.1,org.apache.hadoop:hadoop-aws:3.4.1"  [spark-submit]
#
# crontab, 02:30 UTC every night:
#   30 2 * * * /opt/downbeat/deploy/cron/nightly.sh >> /var/log/downbeat-nightly.log 2>&1
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${DOWNBEAT_HOME:-$(cd "$here/../.." && pwd)}"
conf="${DOWNBEAT_CONF:-$home/conf/cluster.yaml}"
landing="${DOWNBEAT_LANDING:-/data/landing}"
format="${DOWNBEAT_FORMAT:-events}"
model="${DOWNBEAT_MODEL:-hybrid}"
registered="${DOWNBEAT_REGISTERED_MODEL:-downbeat}"
logs="${DOWNBEAT_LOGS:-$home/logs}"
read -r -a submit <<< "${SPARK_SUBMIT:-spark-submit}"

day="${1:-$(date -u -d yesterday +%F)}"
if ! [[ "$day" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]] || ! date -u -d "$day" +%F > /dev/null 2>&1; then
    echo "nightly.sh: error: DAY must be YYYY-MM-DD, got '$day'" >&2
    exit 2
fi
if [[ ! -d "$landing/$day" ]]; then
    echo "nightly.sh: error: no files for $day: $landing/$day is not a folder" >&2
    exit 2
fi
if [[ -z "$(find "$landing/$day" -mindepth 1 -type f -print -quit)" ]]; then
    echo "nightly.sh: error: no files for $day: $landing/$day is empty" >&2
    exit 2
fi
mkdir -p "$logs"
exec 9> "$logs/nightly.lock"
if ! flock -n 9; then
    echo "nightly.sh: error: another nightly run holds $logs/nightly.lock" >&2
    exit 2
fi

step() {  # step NAME JOB ARGS...: one job; stdout in $logs/DAY.NAME.out, stderr in .err, summary in .json
    local name="$1" job="$2"
    shift 2
    local out="$logs/$day.$name.out" err="$logs/$day.$name.err"
    echo "$(date -u +%FT%TZ) $name: started"
    local code=0
    "${submit[@]}" "$home/jobs/$job.py" --conf "$conf" "$@" > "$out" 2> "$err" || code=$?
    if [[ $code -ne 0 ]]; then
        # the job's own one-line error, not the JVM's shutdown logging after it: spark-submit
        # merges a Python job's stderr into its stdout, so the line is in either file
        local why
        why="$(awk '/^[a-z_-]+: error: /{print; exit}' "$out" "$err")"
        [[ -n "$why" ]] || why="$(tail -n 1 "$err")"
        echo "$(date -u +%FT%TZ) $name: failed with exit $code: $why" >&2
        exit "$code"
    fi
    tail -n 1 "$out" > "$logs/$day.$name.json"
    echo "$(date -u +%FT%TZ) $name: done: $(cat "$logs/$day.$name.json")"
}

step ingest ingest --format "$format" --input "$landing/$day" --json
step build build --from-date "$day" --to-date "$day" --json
step train train --model "$model" --json
step evaluate evaluate --model-uri "models:/$registered@candidate" --json
step champion_gate compare --model-uri "models:/$registered@candidate" --model-uri "models:/$registered@champion" --json
