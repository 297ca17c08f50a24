"""An Iceberg table of sale events, read with pyiceberg for `make bench` (issue #23): ours and
the one Apache Iceberg's Kafka Connect sink writes, both measured the same way by a reader that
is none of either's code. Run in `scripts/py.sh --iceberg`.

    iceberg_table.py create URI FROM_URI LOCATION  # a table like FROM_URI's, for the sink
    iceberg_table.py wait URI ROWS TIMEOUT_S [LOG...]  # until the current snapshot holds ROWS rows
    iceberg_table.py check URI EXPECT.json KIND    # what the table holds against the topic
    iceberg_table.py latency URI                   # event ts -> visible in a snapshot

URI is a SQL catalog on SQLite (`sqlite:PATH`) holding `store_events.sale_events` in the
catalog named `store_events` (the sink's JDBC catalog is given the same name).

`wait` looks at the catalog's row for the table (SQLite, every 0.1 s: a light load beside the
writer being measured) and reads the metadata only when it changed; it fails at once when a LOG
(a Kafka Connect worker's) says a task died.

`check` reads the table through its current snapshot (so files a crashed writer left behind
and never committed do not count) and prints the same fields as delivery.py's check, rows
compared as delivery.py compares them (`objects` are the live data files, `lines` the rows),
with `snapshots` and `unmatched` (rows equal to no record of the topic) added.

`latency`: for each live data file, the commit time of the snapshot that added it minus the
`ts` of each of its rows (the generator stamps `ts` when it makes the event, just before it is
produced). Prints: events p50_seconds p99_seconds snapshots_with_data.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery import micros, object_key  # noqa: E402

IDENTIFIER = ("store_events", "sale_events")


def catalog(uri: str) -> SqlCatalog:
    path = Path(uri.removeprefix("sqlite:")).resolve()
    props = {
        "s3.endpoint": os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"),
        "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
        "s3.path-style-access": "true",
    }
    return SqlCatalog("store_events", uri=f"sqlite:///{path}", **props)


def create(uri: str, from_uri: str, location: str) -> None:
    ours = catalog(from_uri).load_table(IDENTIFIER)
    target = catalog(uri)
    target.create_namespace_if_not_exists(IDENTIFIER[0])
    target.create_table(
        IDENTIFIER, schema=ours.schema(), partition_spec=ours.spec(), location=location, properties=ours.properties
    )


def metadata_location(path: Path) -> str | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute(
                "SELECT metadata_location FROM iceberg_tables WHERE table_namespace = ? AND table_name = ?", IDENTIFIER
            ).fetchone()
    except sqlite3.OperationalError:  # no catalog yet
        return None
    return row[0] if row else None


def rows_of(uri: str) -> int:
    snapshot = catalog(uri).load_table(IDENTIFIER).current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.additional_properties.get("total-records", 0))


DEAD = ("Task threw an uncaught and unrecoverable exception", "Stopping after connector error", "Stopping due to error")


def wait(uri: str, rows: int, timeout: float, logs: list[str]) -> None:
    path = Path(uri.removeprefix("sqlite:")).resolve()
    deadline = time.monotonic() + timeout
    seen, last = 0, None
    while seen < rows:
        for log in logs:
            text = Path(log).read_text(errors="replace") if Path(log).exists() else ""
            if any(line in text for line in DEAD):
                why = [line for line in text.splitlines() if "ERROR" in line or "Caused by" in line][:12]
                sys.exit(f"a task died ({log}):\n" + "\n".join(why))
        if time.monotonic() > deadline:
            sys.exit(f"the table holds {seen} rows of {rows} after {timeout:.0f} s")
        location = metadata_location(path)
        if location is not None and location != last:
            seen, last = rows_of(uri), location
        time.sleep(0.1)


def row_objects(table):
    """Each row as the object it holds: nulls left out, `extra`'s fields merged back, `ts` in
    epoch microseconds (what delivery.py's keys use)."""
    for batch in table.scan().to_arrow().to_batches():
        for row in batch.to_pylist():
            extra = row.pop("extra", None)
            value = {k: v for k, v in row.items() if v is not None}
            if "ts" in value:
                value["ts"] = micros(value["ts"])
            yield {**value, **(json.loads(extra) if extra else {})}


def check(uri: str, expected_file: str, kind: str) -> None:
    with open(expected_file) as f:
        expected = json.load(f)
    every, wanted = Counter(expected["all"]), Counter(expected[kind])
    table = catalog(uri).load_table(IDENTIFIER)
    stored = Counter(object_key(value) for value in row_objects(table))
    files = table.inspect.files()
    print(
        json.dumps(
            {
                "objects": files.num_rows,
                "lines": sum(stored.values()),
                "data_bytes": sum(files.column("file_size_in_bytes").to_pylist()),
                "dead_letters": 0,
                "expected": sum(wanted.values()),
                "missing": sum(max(0, n - stored[k]) for k, n in wanted.items()),
                "duplicates": sum(max(0, n - every[k]) for k, n in stored.items() if k in every),
                "unmatched": sum(n for k, n in stored.items() if k not in every),
                "snapshots": len(table.snapshots()),
            }
        )
    )


def latency(uri: str) -> None:
    table = catalog(uri).load_table(IDENTIFIER)
    committed = {s.snapshot_id: s.timestamp_ms for s in table.snapshots()}
    entries = table.inspect.entries().to_pylist()
    latencies, snapshots = [], set()
    for entry in entries:
        if entry["status"] == 2 or entry["snapshot_id"] not in committed:  # deleted, or expired
            continue
        visible_us = committed[entry["snapshot_id"]] * 1000
        snapshots.add(entry["snapshot_id"])
        with table.io.new_input(entry["data_file"]["file_path"]).open() as f:
            ts = pq.read_table(f, columns=["ts"]).column("ts").to_pylist()
        latencies.extend((visible_us - micros(t)) / 1e6 for t in ts)
    if not latencies:
        sys.exit("no committed row found")
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(f"{len(latencies)} {pick(0.5):.2f} {pick(0.99):.2f} {len(snapshots)}")


if __name__ == "__main__":
    command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if command == "create" and len(args) == 3:
        create(*args)
    elif command == "wait" and len(args) >= 3:
        wait(args[0], int(args[1]), float(args[2]), args[3:])
    elif command == "check" and len(args) == 3:
        check(*args)
    elif command == "latency" and len(args) == 1:
        latency(args[0])
    else:
        sys.exit(__doc__)
