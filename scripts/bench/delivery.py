"""Delivery check for `make bench`: what a tool stored in S3 against what the topic holds.

    delivery.py expect OUT.json < values      # kcat -f '%s\\n' of the whole backlog
    delivery.py check EXPECT.json PREFIX KIND # KIND: sale_event, inventory_event or all

`expect` reads the backlog's record values, one per line, and writes three multisets: every
record, and for each type the records a filter on `event_type` keeps (a JSON object with
that field, whatever else it holds). Records are compared by their JSON, keys sorted (a
tool may write the same object with other spacing or key order), `ts` as the instant it
names (in microseconds) and integral numbers as integers, so that a typed copy (a Parquet
row: `ts` a timestamp, `price` a double) compares equal to the JSON it came from; a value
that is not JSON is compared as text. These are counts, not sets: a backlog may hold a
record twice.

`check` reads every object under PREFIX (gzip or not; `_ledger/` skipped), takes each
line, for a dead-letter object of the consumers (`dead_letter/` in its key) the record's
`value`, and for a Parquet file (read with DuckDB) each row as the object it holds (nulls
left out, the `extra` column's JSON fields merged back), and prints one JSON object:

- `objects`, `lines` (records stored as kept, dead letters apart in `dead_letters`),
  `data_bytes` (the stored size of the objects holding kept records);
- `missing`: records of KIND that are in the topic and in neither the kept lines nor the
  dead letters; `duplicates`: copies of a record beyond the number the topic holds.

It is deliberately none of the project's code: Python and boto3 reading what S3 holds.
S3 settings come from the services' variables (S3_ENDPOINT, S3_BUCKET, AWS_*).
"""

import gzip
import hashlib
import json
import os
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone

import boto3
from botocore.config import Config


def micros(ts: datetime) -> int:
    ts = ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    return (ts - datetime(1970, 1, 1, tzinfo=timezone.utc)) // datetime.resolution


def normal(value):
    """The object with `ts` as epoch microseconds and integral floats as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        out = {k: normal(v) for k, v in value.items()}
        ts = out.get("ts")
        if isinstance(ts, str):
            try:
                out["ts"] = micros(datetime.fromisoformat(ts.replace("Z", "+00:00")))
            except ValueError:
                pass
        elif isinstance(ts, datetime):
            out["ts"] = micros(ts)
        return out
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def canonical_object(value) -> str:
    return json.dumps(normal(value), sort_keys=True, separators=(",", ":"))


def canonical(text: str) -> str:
    try:
        return canonical_object(json.loads(text))
    except ValueError:
        return text


def key(text: str) -> str:
    return hashlib.blake2b(canonical(text).encode(), digest_size=10).hexdigest()


def object_key(value: dict) -> str:
    return hashlib.blake2b(canonical_object(value).encode(), digest_size=10).hexdigest()


def parquet_rows(body: bytes):
    """The rows of a Parquet file as the objects they hold, read by DuckDB."""
    import duckdb

    with tempfile.NamedTemporaryFile(suffix=".parquet") as f:
        f.write(body)
        f.flush()
        # `ts` as epoch microseconds: a timestamp with a zone would need pytz in Python.
        result = duckdb.sql(f"SELECT * REPLACE (epoch_us(ts) AS ts) FROM read_parquet('{f.name}', hive_partitioning = false)")
        names = [d[0] for d in result.description]
        for row in result.fetchall():
            value = {n: v for n, v in zip(names, row) if v is not None and n != "extra"}
            extra = dict(zip(names, row)).get("extra")
            yield {**value, **(json.loads(extra) if extra else {})}


TYPES = ("sale_event", "inventory_event")


def event_type(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get("event_type") if isinstance(value, dict) else None


def expect(out: str) -> None:
    every, typed, seen = Counter(), {t: Counter() for t in TYPES}, {}
    for raw in sys.stdin.buffer:
        line = raw.rstrip(b"\n").decode("utf-8", errors="replace")
        if line not in seen:  # judge each distinct record once
            seen[line] = (key(line), event_type(line))
        k, kind = seen[line]
        every[k] += 1
        if kind in typed:
            typed[kind][k] += 1
    with open(out, "w") as f:
        json.dump({"all": every, **typed}, f)
    counts = ", ".join(f"{sum(c.values())} {t}" for t, c in typed.items())
    print(f"{sum(every.values())} records: {counts}", file=sys.stderr)


def check(expected_file: str, prefix: str, kind: str) -> None:
    with open(expected_file) as f:
        expected = json.load(f)
    every, wanted = Counter(expected["all"]), Counter(expected[kind])
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
    )
    bucket = os.environ.get("S3_BUCKET", "store-events")
    kept, dead = Counter(), Counter()
    objects = data_bytes = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            name = item["Key"]
            # The ledger, and an Iceberg table's metadata (manifests, snapshots): not events.
            if "/_ledger/" in f"/{name}" or "/metadata/" in name:
                continue
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
            letters = "dead_letter/" in name
            if not letters:
                data_bytes += len(body)
            if name.endswith(".parquet"):
                for row in parquet_rows(body):
                    kept[object_key(row)] += 1
                continue
            if body[:2] == b"\x1f\x8b":
                body = gzip.decompress(body)
            for line in body.decode("utf-8", errors="replace").splitlines():
                if letters:
                    value = json.loads(line).get("value")
                    text = value if isinstance(value, str) else json.dumps(value)
                    dead[key(text)] += 1
                else:
                    kept[key(line)] += 1
    stored = kept + dead
    print(
        json.dumps(
            {
                "objects": objects,
                "lines": sum(kept.values()),
                "data_bytes": data_bytes,
                "dead_letters": sum(dead.values()),
                "expected": sum(wanted.values()),
                "missing": sum(max(0, n - stored[k]) for k, n in wanted.items()),
                "duplicates": sum(max(0, n - every[k]) for k, n in stored.items()),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "expect":
        expect(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
