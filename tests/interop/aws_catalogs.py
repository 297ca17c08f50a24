"""What the tests of the consumers' AWS catalogs share (test_glue.py: AWS Glue;
test_s3tables.py: Amazon S3 Tables): moto's server, which speaks both APIs (and S3) on
127.0.0.1, and one run of both consumers into a catalog there."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import time
import uuid
from pathlib import Path

from conftest import DAYS, HOW_TO_START, KAFKA, REPO, make_event
from harness import LOCAL_ENV, Service, build_binaries, free_port, metric_values, post_json, require, run_binary
from test_iceberg import TABLES

PY = str(REPO / "scripts" / "py.sh")


@contextlib.contextmanager
def moto_server(logs: Path):
    """moto's server (PyPI `moto[server]`, in the Iceberg readers' environment; started by
    moto_server.py, which corrects one of its S3 Tables answers) on a free port of
    127.0.0.1: yields its endpoint."""
    require(KAFKA, "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    port = free_port()
    with open(logs / "moto.log", "wb") as out:
        moto = subprocess.Popen([PY, "--iceberg", "python", str(Path(__file__).with_name("moto_server.py")), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        # First use installs the Iceberg readers' environment: minutes, not seconds.
        deadline = time.monotonic() + 600
        while not reachable(port):
            assert moto.poll() is None, f"moto's server exited: {(logs / 'moto.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "moto's server did not listen within 600 s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_both_consumers(name: str, env: dict[str, str], logs: Path, seed: int) -> dict:
    """Sends 300 events of both types over three days to a topic of the run's own through the
    producer, runs both consumers with `env` (their catalog and S3 settings) until each has
    committed every offset, and audits them: what was sent, the consumers' environment and
    their audits."""
    tag = uuid.uuid4().hex[:8]
    topic = f"{name}-{tag}"
    rng = random.Random(seed)
    sent = [make_event(rng, rng.choice(list(TABLES)), rng.choice(DAYS)) for _ in range(300)]
    producer = Service("producer", {"STORE_EVENTS_TOPIC": topic, "GENERATOR_RATE": "0", "TOPIC_PARTITIONS": "2"}, logs)
    try:
        producer.wait_ready()
        for start in range(0, len(sent), 100):
            answer = post_json(f"{producer.url}/v1/events", sent[start : start + 100])
            assert answer["accepted"] == 100, answer
    finally:
        assert producer.stop() == 0, producer.log.read_text()[-3000:]

    env = {"STORE_EVENTS_TOPIC": topic, "S3_PREFIX": f"{name}-{tag}", "S3_FORCE_PATH_STYLE": "true", "OUTPUT_FORMATS": "iceberg", **env}
    env |= {"ICEBERG_COMMIT_INTERVAL": "1s", "BATCH_MAX_EVENTS": "30", "BATCH_MAX_AGE": "1s", "CHECKPOINT_INTERVAL": "1s"}
    # Both consumers start together: both find the namespace missing and create it.
    consumers = [Service(consumer, env, logs) for consumer in ("sales-consumer", "inventory-consumer")]
    try:
        for consumer in consumers:
            consumer.wait_ready()
        deadline = time.monotonic() + 120
        for consumer in consumers:
            while sum(metric_values(consumer.metrics(), "consumer_committed_offset").values()) != len(sent):
                assert time.monotonic() < deadline, f"{consumer.name} did not commit {len(sent)} offsets"
                time.sleep(0.5)
    finally:
        for consumer in consumers:
            assert consumer.stop() == 0, consumer.log.read_text()[-3000:]
    audits = {c.name: run_binary(c.name, env, "audit") for c in consumers}
    return {"sent": sent, "env": env, "audits": audits}


def read_tables(catalog: str, env: dict[str, str]) -> dict:
    """Every table of the catalog as deploy/iceberg/iceberg_local.py --dump reads it
    (pyiceberg and DuckDB), with the consumers' environment."""
    read_env = {**os.environ, **LOCAL_ENV, **env}
    command = [PY, "--iceberg", "python", str(REPO / "deploy" / "iceberg" / "iceberg_local.py"), "--catalog", catalog, "--dump"]
    done = subprocess.run(command, env=read_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["tables"]


def audit_line_counts_every_row(name: str, audit: subprocess.CompletedProcess, sent: list[dict]) -> None:
    """`name`'s audit passed and its table line counts the rows of its type sent, none waiting."""
    assert audit.returncode == 0, f"{name} audit:\n{audit.stdout[-3000:]}\n{audit.stderr[-3000:]}"
    table = TABLES["sale_event" if name == "sales-consumer" else "inventory_event"]
    line = next((line for line in audit.stdout.splitlines() if line.startswith("iceberg table ")), "")
    rows = len([e for e in sent if e["event_type"] + "s" == table])
    assert line.startswith(f"iceberg table store_events.{table}: ") and f" {rows} rows;" in line, audit.stdout[-3000:]
    assert " 0 entries waiting" in line, line
