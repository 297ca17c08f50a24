"""Produce-to-visible latency of an Iceberg table: for every sale event in the committed
ledger ranges of the table's snapshots, the time from its Kafka record timestamp (the
generator's ts) to the commit of the first snapshot that holds its range. Reads the
snapshots with pyiceberg (run in scripts/py.sh --iceberg) and the record timestamps with
kcat. Prints: events p50_seconds p99_seconds snapshots.

    iceberg_latency.py CATALOG_URI TOPIC
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pyiceberg.catalog.sql import SqlCatalog


def main(uri: str, topic: str) -> None:
    path = Path(uri.removeprefix("sqlite:")).resolve()
    props = {
        "s3.endpoint": os.environ.get("S3_ENDPOINT", "http://127.0.0.1:9000"),
        "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
        "s3.path-style-access": "true",
    }
    table = SqlCatalog("store_events", uri=f"sqlite:///{path}", **props).load_table(("store_events", "sale_events"))
    # Per partition, the committed ranges and when each became visible.
    ranges: dict[int, list[tuple[int, int, int]]] = {}
    snapshots = 0
    for snapshot in table.snapshots():
        entries = snapshot.summary.additional_properties.get("store-events.entries", "")
        if entries:
            snapshots += 1
        for item in filter(None, entries.split(",")):
            partition, span = item.split(":")
            first, following = span.split("-")
            ranges.setdefault(int(partition), []).append((int(first), int(following), snapshot.timestamp_ms))
    out = subprocess.run(
        ["kcat", "-C", "-b", "127.0.0.1:9092", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %o %T %h\\n"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    latencies = []
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or "sale_event" not in parts[3]:
            continue
        partition, offset, produced = int(parts[0]), int(parts[1]), int(parts[2])
        for first, following, visible in ranges.get(partition, []):
            if first <= offset < following:
                latencies.append((visible - produced) / 1000)
                break
    latencies.sort()
    if not latencies:
        sys.exit("no committed sale event found")
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(f"{len(latencies)} {pick(0.5):.2f} {pick(0.99):.2f} {snapshots}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
