"""The conditional-put log store against an S3 server, called the way the connector calls it.

python -m tests.jobs.log_store_probe URI [KEY=VALUE ...]

Starts a session with `delta.s3_log_store: conditional-put`, takes the log store the connector
uses for URI's scheme (the delegate its DelegatingLogStore picks) and writes URI three times
through it: new (lands), again without overwrite (must be refused: the file exists), again with
overwrite (replaces). Prints one JSON line: the store's class and, per write, "ok" or the class of
the Java exception it threw."""

from __future__ import annotations

import json
import sys

from downbeat.jobs.config import load_config
from downbeat.pipelines.spark import spark_session

WRITES = (("new", "first", False), ("again", "second", False), ("overwrite", "third", True))


def main(argv: list[str]) -> None:
    uri, settings = argv[0], argv[1:]
    cfg = load_config(None, ["delta.engine=spark", "delta.s3_log_store=conditional-put", *settings])
    spark = spark_session(cfg.spark, cfg.delta)
    jvm = spark.sparkContext._jvm
    hadoop = spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(uri)
    delegating = jvm.org.apache.spark.sql.delta.storage.DelegatingLogStore(hadoop)
    store = delegating.getDelegate(path).logStoreImpl()
    written = {}
    for name, line, overwrite in WRITES:
        actions = jvm.java.util.ArrayList()
        actions.add(json.dumps({"line": line}))
        try:
            store.write(path, actions.iterator(), overwrite, hadoop)
            written[name] = "ok"
        except Exception as exc:
            written[name] = exc.java_exception.getClass().getName()  # type: ignore[attr-defined]
    print(json.dumps({"store": store.getClass().getName(), **written}), flush=True)
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
