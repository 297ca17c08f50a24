"""One mixed run of the whole system against the local stack, shared by the interop tests.

The run sends events the way stores do (POST /v1/events, keyed, with headers) and the way
the original Lambda did (bare JSON through kcat: no key, no headers), bad events and records
that are not JSON, over several days, under an S3 prefix holding '+', a space and non-ASCII
letters. It waits until both consumers have committed every offset, stops everything, and
hands the tests what was sent, so they can check what landed in S3 with clients this
project did not write: the AWS CLI, boto3 and DuckDB.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "athena"))
sys.path.insert(0, str(REPO / "tests"))

from harness import (  # noqa: E402
    BUCKET,
    S3_ENDPOINT,
    Service,
    aws,
    build_binaries,
    metric_values,
    post_json,
    require,
    run_binary,
    s3_client,
)

KAFKA = "127.0.0.1:9092"
HOW_TO_START = "start the local stack with `make stack-up` (scripts/stack.sh up), or run everything with `make test`"
CATEGORIES = ["Books", "Games", "Mobiles", "Camera", "Cámaras", "Möbel", "家具"]
DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]


def make_event(rng: random.Random, event_type: str, day: str) -> dict:
    """An event like the producer's generator makes, stamped on `day`."""
    event = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_type": event_type,
        "store_id": rng.randint(1, 10),
        "cust_id": rng.randint(100, 999),
        "category": rng.choice(CATEGORIES),
        "sku": rng.randint(18_981, 18_999),
        "price": rng.randint(0, 10_000) / 100,
        "qty": rng.randint(1, 38),
        "discount": rng.randint(0, 200) / 10,
        "gift_wrap": rng.random() < 0.5,
        "variant": rng.choice(["black", "red"]),
        "priority_shipping": rng.random() < 0.5,
        "ts": f"{day}T{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}.{rng.randint(0, 999999):06}Z",
        "contact_me": "github.com/miztiik",
    }
    if rng.random() < 0.3:
        event["is_return"] = True
    if rng.random() < 0.1:
        event["loyalty_tier"] = "gold"  # a field the schema does not know: kept as received
    return event


@dataclass
class Run:
    """What one mixed run sent, and where it went."""

    topic: str
    prefix: str
    # Stored events, by event type: (the event as sent, the dt it must land under).
    stored: dict[str, list[tuple[dict, str]]] = field(default_factory=lambda: {"sale_event": [], "inventory_event": []})
    # Dead letters expected, counted by (consumer, dt, kind).
    dead_letters: Counter = field(default_factory=Counter)
    records: int = 0
    audits: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)
    # The SQL catalog (SQLite) of the consumers' Iceberg tables, and their environment.
    catalog_uri: str = ""
    consumer_env: dict[str, str] = field(default_factory=dict)

    def events(self, event_type: str) -> list[dict]:
        return [event for event, _ in self.stored[event_type]]


def kafka_timestamps_of_keyless_records(topic: str, partition: int) -> list[str]:
    """The UTC dates of the keyless records of a partition, in offset order, read with kcat."""
    out = subprocess.run(
        ["kcat", "-C", "-b", KAFKA, "-t", topic, "-p", str(partition), "-o", "beginning", "-e", "-q", "-f", "%K %T\\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    dates = []
    for line in out.splitlines():
        key_length, millis = line.split()
        if key_length == "-1":
            dates.append(datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc).date().isoformat())
    return dates


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Run:
    require(KAFKA, "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    logs = tmp_path_factory.mktemp("logs")
    tag = uuid.uuid4().hex[:8]
    run = Run(topic=f"interop-{tag}", prefix=f"interop {tag}+é")
    rng = random.Random(20261126)
    common = {"STORE_EVENTS_TOPIC": run.topic, "S3_BUCKET": BUCKET, "S3_ENDPOINT": S3_ENDPOINT}

    producer = Service("producer", {**common, "GENERATOR_RATE": "0", "TOPIC_PARTITIONS": "2"}, logs)
    try:
        producer.wait_ready()
        # Stores: keyed events with headers, through the HTTP API, dated over three days.
        sent = [make_event(rng, rng.choice(["sale_event", "inventory_event"]), rng.choice(DAYS)) for _ in range(400)]
        for start in range(0, len(sent), 100):
            answer = post_json(f"{producer.url}/v1/events", sent[start : start + 100])
            assert answer["accepted"] == len(sent[start : start + 100]), answer
        for event in sent:
            run.stored[event["event_type"]].append((event, event["ts"][:10]))
        run.records += len(sent)
    finally:
        assert producer.stop() == 0, producer.log.read_text()[-3000:]

    # Other producers, like the original Lambda: bare JSON, no key, no headers; good events,
    # the original's bad events, and records no type can be claimed by.
    bare_good = [make_event(rng, t, DAYS[0]) for t in ["sale_event", "inventory_event"] * 15]
    # Some long events (a field the consumers keep as sent): their objects are larger than
    # a gzip member (128 KiB of lines), so the readers below read objects of several members.
    for event in bare_good[:16]:
        event["note"] = " ".join(f"{rng.randint(0, 10**6):x}" for _ in range(4_000))
    flagged = [{**make_event(rng, t, DAYS[0]), "bad_msg": True} for t in ["sale_event", "inventory_event"] * 3]
    for event in flagged:
        del event["store_id"]
    unattributable = {
        "this is not JSON": "not_json",
        "[1, 2, 3]": "not_an_object",
        '{"store_id": 4}': "missing_event_type",
        '{"event_type": "refund_event", "store_id": 4}': "unknown_event_type",
    }
    unattributable[b"\xff\xfe not UTF-8".decode("latin-1")] = "not_utf8"
    lines = [json.dumps(e, ensure_ascii=False) for e in bare_good + flagged] + list(unattributable)
    # Bytes as given: UTF-8 for the JSON, Latin-1 to keep the one value that is not UTF-8.
    payload = b"".join(
        (line.encode("latin-1") if kind == "not_utf8" else line.encode()) + b"\n"
        for line, kind in zip(lines, [None] * len(bare_good + flagged) + list(unattributable.values()))
    )
    subprocess.run(["kcat", "-P", "-b", KAFKA, "-t", run.topic, "-p", "0"], input=payload, check=True, timeout=60)
    run.records += len(lines)
    dates = kafka_timestamps_of_keyless_records(run.topic, 0)
    assert len(dates) == len(lines), f"kcat read back {len(dates)} keyless records, {len(lines)} were sent"
    for event, dt in zip(bare_good, dates):
        run.stored[event["event_type"]].append((event, dt))
    owner = {"sale_event": "sales-consumer", "inventory_event": "inventory-consumer"}
    for event, dt in zip(flagged, dates[len(bare_good) :]):
        run.dead_letters[(owner[event["event_type"]], dt, "flagged_bad")] += 1
    for kind, dt in zip(unattributable.values(), dates[len(bare_good) + len(flagged) :]):
        for consumer in owner.values():
            run.dead_letters[(consumer, dt, kind)] += 1

    # Both consumers, small batches so that every day and partition has several objects.
    consumer_env = {**common, "S3_PREFIX": run.prefix, "S3_FORCE_PATH_STYLE": "true"}
    consumer_env |= {"BATCH_MAX_EVENTS": "40", "BATCH_MAX_AGE": "1s", "CHECKPOINT_INTERVAL": "1s"}
    # Each batch as gzip JSON Lines, as Parquet and as rows of the Iceberg tables: the readers
    # below read all three.
    run.catalog_uri = f"sqlite:{tmp_path_factory.mktemp('iceberg') / 'catalog.db'}"
    consumer_env |= {"OUTPUT_FORMATS": "json,parquet,iceberg", "ICEBERG_CATALOG_URI": run.catalog_uri}
    consumer_env |= {"ICEBERG_COMMIT_INTERVAL": "1s"}
    run.consumer_env = consumer_env
    consumers = [Service(name, consumer_env, logs) for name in owner.values()]
    try:
        for consumer in consumers:
            consumer.wait_ready()
        deadline = time.monotonic() + 120
        for consumer in consumers:
            while True:
                committed = metric_values(consumer.metrics(), "consumer_committed_offset")
                if len(committed) == 2 and sum(committed.values()) == run.records:
                    break
                if time.monotonic() > deadline:
                    pytest.fail(f"{consumer.name} committed {committed}, not {run.records} offsets in all")
                time.sleep(0.5)
    finally:
        for consumer in consumers:
            assert consumer.stop() == 0, consumer.log.read_text()[-3000:]

    for name in owner.values():
        run.audits[name] = run_binary(name, consumer_env, "audit", "--deep")
    return run


@pytest.fixture(scope="session")
def copy(run: Run, tmp_path_factory) -> Path:
    """Everything the run wrote, downloaded with `aws s3 cp --recursive`."""
    target = tmp_path_factory.mktemp("copy")
    aws("s3", "cp", "--recursive", "--only-show-errors", f"s3://{BUCKET}/{run.prefix}/", str(target))
    return target
