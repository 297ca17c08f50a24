"""The consumers' Iceberg tables in an AWS Glue Data Catalog (ICEBERG_CATALOG=glue), read
the way Athena finds them: boto3's Glue client (the table's type and metadata location,
which Athena reads) and pyiceberg's GlueCatalog (the rows).

No Glue runs here: the catalog is moto's server (PyPI `moto[server]`, in the Iceberg
readers' environment), which speaks Glue's API on 127.0.0.1; the data files and metadata
are on the local S3 server as always. moto does not check UpdateTable's VersionId, so racing
members are tested on the SQL catalog (cargo test -p store-lake --test race), and on Glue
rest on its ConcurrentModificationException (README, Iceberg tables).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
import uuid

import pytest
from conftest import DAYS, HOW_TO_START, KAFKA, REPO, make_event
from harness import LOCAL_ENV, S3_ENDPOINT, BUCKET, Service, build_binaries, free_port, local_client, metric_values, post_json, require, run_binary
from test_iceberg import TABLES, as_events, as_sent

PY = str(REPO / "scripts" / "py.sh")


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> dict:
    """One run of both consumers into a Glue catalog: what was sent, the Glue endpoint, the
    consumers' environment and their audits."""
    require(KAFKA, "Apache Kafka", HOW_TO_START)
    require("127.0.0.1:9000", "The S3 server", HOW_TO_START)
    build_binaries()
    logs = tmp_path_factory.mktemp("glue-logs")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(logs / "moto.log", "wb") as out:
        moto = subprocess.Popen([PY, "--iceberg", "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        # First use installs the Iceberg readers' environment: minutes, not seconds.
        deadline = time.monotonic() + 600
        while not reachable(port):
            assert moto.poll() is None, f"moto's server exited: {(logs / 'moto.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "moto's server did not listen within 600 s"
            time.sleep(0.5)
        yield run_into_glue(endpoint, logs)
    finally:
        moto.terminate()
        moto.wait(timeout=30)


def reachable(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def run_into_glue(endpoint: str, logs) -> dict:
    tag = uuid.uuid4().hex[:8]
    topic, prefix = f"glue-{tag}", f"glue-{tag}"
    rng = random.Random(20261207)
    sent = [make_event(rng, rng.choice(list(TABLES)), rng.choice(DAYS)) for _ in range(300)]
    common = {"STORE_EVENTS_TOPIC": topic, "S3_BUCKET": BUCKET, "S3_ENDPOINT": S3_ENDPOINT}
    producer = Service("producer", {**common, "GENERATOR_RATE": "0", "TOPIC_PARTITIONS": "2"}, logs)
    try:
        producer.wait_ready()
        for start in range(0, len(sent), 100):
            answer = post_json(f"{producer.url}/v1/events", sent[start : start + 100])
            assert answer["accepted"] == 100, answer
    finally:
        assert producer.stop() == 0, producer.log.read_text()[-3000:]

    env = {**common, "S3_PREFIX": prefix, "S3_FORCE_PATH_STYLE": "true", "OUTPUT_FORMATS": "iceberg"}
    env |= {"ICEBERG_CATALOG": "glue", "ICEBERG_GLUE_ENDPOINT": endpoint, "ICEBERG_COMMIT_INTERVAL": "1s"}
    env |= {"BATCH_MAX_EVENTS": "30", "BATCH_MAX_AGE": "1s", "CHECKPOINT_INTERVAL": "1s"}
    # Both consumers start together: both find the Glue database missing and create it.
    consumers = [Service(name, env, logs) for name in ("sales-consumer", "inventory-consumer")]
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
    read_env = {**os.environ, **LOCAL_ENV, **env}
    command = [PY, "--iceberg", "python", str(REPO / "deploy" / "iceberg" / "iceberg_local.py")]
    done = subprocess.run(command + ["--catalog", f"glue:{endpoint}", "--dump"], env=read_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = json.loads(done.stdout)["tables"]
    return {"sent": sent, "endpoint": endpoint, "env": env, "logs": logs, "audits": audits, "read": tables}


def glue_client(endpoint: str):
    return local_client("glue", endpoint)


def test_pyiceberg_reads_exactly_the_events_sent_through_glue(glue: dict):
    for event_type, table in TABLES.items():
        events = [e for e in glue["sent"] if e["event_type"] == event_type]
        rows = glue["read"][table]["pyiceberg"]
        assert as_events(rows) == as_sent(events), f"{table}: {len(rows)} rows, {len(events)} sent"


def test_the_glue_tables_are_what_athena_reads_as_iceberg(glue: dict):
    """Athena queries a Glue table as Iceberg when its table_type parameter is ICEBERG, and
    reads the table at its metadata_location."""
    client = glue_client(glue["endpoint"])
    assert "store_events" in [d["Name"] for d in client.get_databases()["DatabaseList"]]
    for table in TABLES.values():
        found = client.get_table(DatabaseName="store_events", Name=table)["Table"]
        assert found["Parameters"]["table_type"].upper() == "ICEBERG", found["Parameters"]
        assert found["Parameters"]["metadata_location"] == glue["read"][table]["metadata_location"], found["Parameters"]
        assert found["Parameters"]["metadata_location"].startswith(f"s3://{BUCKET}/glue-"), found["Parameters"]
        assert found["StorageDescriptor"]["Location"] == glue["read"][table]["location"]
        columns = [c["Name"] for c in found["StorageDescriptor"]["Columns"]]
        assert columns == [name for _, name, _, _ in glue["read"][table]["schema"]], columns


def test_the_audit_reads_the_tables_through_glue_and_finds_them_whole(glue: dict):
    for name, audit in glue["audits"].items():
        assert audit.returncode == 0, f"{name} audit:\n{audit.stdout[-3000:]}\n{audit.stderr[-3000:]}"
        table = TABLES["sale_event" if name == "sales-consumer" else "inventory_event"]
        line = next((line for line in audit.stdout.splitlines() if line.startswith("iceberg table ")), "")
        rows = len([e for e in glue["sent"] if e["event_type"] + "s" == table])
        assert line.startswith(f"iceberg table store_events.{table}: ") and f" {rows} rows;" in line, audit.stdout[-3000:]
        assert " 0 entries waiting" in line, line


def test_a_consumer_refuses_a_glue_table_of_its_name_that_is_not_iceberg(glue: dict):
    """Athena's JSON DDL (deploy/athena/tables.sql) makes Glue tables named like the Iceberg
    ones: a consumer pointed at one stops at once and says which, rather than retrying."""
    client = glue_client(glue["endpoint"])
    database = f"json_{uuid.uuid4().hex[:8]}"
    client.create_database(DatabaseInput={"Name": database})
    client.create_table(
        DatabaseName=database,
        TableInput={
            "Name": "sale_events",
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {"classification": "json"},
            "StorageDescriptor": {
                "Columns": [{"Name": "request_id", "Type": "string"}],
                "Location": f"s3://{BUCKET}/event_type=sale_event/",
                "SerdeInfo": {"SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe"},
            },
        },
    )
    env = {**glue["env"], "ICEBERG_NAMESPACE": database, "CONSUMER_GROUP_ID": f"glue-json-{database}"}
    consumer = Service("sales-consumer", env, glue["logs"], label=f"sales-consumer-{database}")
    try:
        code = consumer.process.wait(timeout=60)
    finally:
        consumer.stop()
    log = consumer.log.read_text()
    assert code != 0, log[-3000:]
    assert f"{database}.sale_events exists in the catalog but is not an Iceberg table" in log, log[-3000:]
    assert "ICEBERG_NAMESPACE" in log, log[-3000:]
