"""The consumers' Iceberg tables in an Amazon S3 Tables table bucket (ICEBERG_CATALOG=s3tables),
read with boto3's S3 Tables client (the tables and their metadata locations, which Athena
reaches through the Glue Data Catalog's s3tablescatalog) and pyiceberg and DuckDB (the rows,
from the metadata file S3 Tables points at).

No S3 Tables runs here: the table bucket is moto's server (PyPI `moto[server]`, in the
Iceberg readers' environment), which speaks the S3 Tables API on 127.0.0.1, keeps a table's
files in an S3 bucket of its own, as AWS does, refuses an UpdateTableMetadataLocation whose
version token is not the table's current one, and serves S3 too: the consumers' ledger is
in a bucket of the same server, as it would be in the same region's S3.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from aws_catalogs import audit_line_counts_every_row, moto_server, read_tables, run_both_consumers
from conftest import REPO
from harness import local_client
from test_iceberg import TABLES, as_events, as_sent


@pytest.fixture(scope="module")
def s3tables(tmp_path_factory) -> dict:
    """One run of both consumers into a table bucket: what was sent, the endpoint, the
    bucket's ARN, the consumers' environment, their audits and what the readers read."""
    logs = tmp_path_factory.mktemp("s3tables-logs")
    with moto_server(logs) as endpoint:
        ledger = f"ledger-{uuid.uuid4().hex[:8]}"
        local_client("s3", endpoint).create_bucket(Bucket=ledger)
        arn = local_client("s3tables", endpoint).create_table_bucket(name=f"lake-{uuid.uuid4().hex[:8]}")["arn"]
        env = {"S3_BUCKET": ledger, "S3_ENDPOINT": endpoint, "ICEBERG_CATALOG": "s3tables"}
        env |= {"ICEBERG_S3TABLES_BUCKET_ARN": arn, "ICEBERG_S3TABLES_ENDPOINT": endpoint}
        run = run_both_consumers("s3tables", env, logs, seed=20261208)
        yield {**run, "endpoint": endpoint, "arn": arn, "read": read_tables(f"s3tables:{arn}", run["env"])}


def test_pyiceberg_and_duckdb_read_exactly_the_events_sent_through_s3_tables(s3tables: dict):
    for event_type, table in TABLES.items():
        events = [e for e in s3tables["sent"] if e["event_type"] == event_type]
        for reader in ("pyiceberg", "duckdb"):
            rows = s3tables["read"][table][reader]
            assert as_events(rows) == as_sent(events), f"{table} by {reader}: {len(rows)} rows, {len(events)} sent"


def test_the_tables_are_where_s3_tables_put_them_with_their_offsets_in_the_snapshots(s3tables: dict):
    """Each table is in the bucket's namespace, located in the storage S3 Tables gave it
    (not under the consumers' ICEBERG_WAREHOUSE), its current metadata the one the API
    names, and its last snapshot holds every offset of the topic."""
    topic = s3tables["env"]["STORE_EVENTS_TOPIC"]
    client = local_client("s3tables", s3tables["endpoint"])
    assert ["store_events"] in [n["namespace"] for n in client.list_namespaces(tableBucketARN=s3tables["arn"])["namespaces"]]
    for table in TABLES.values():
        found = client.get_table(tableBucketARN=s3tables["arn"], namespace="store_events", name=table)
        read = s3tables["read"][table]
        assert found["format"] == "ICEBERG", found
        assert found["metadataLocation"] == read["metadata_location"], (found, read["metadata_location"])
        assert read["location"].rstrip("/") == found["warehouseLocation"].rstrip("/"), (read["location"], found)
        assert read["snapshots"], f"{table} has no snapshot"
        # The metadata lists snapshots in no particular order.
        (current,) = [s for s in read["snapshots"] if s["id"] == read["current_snapshot"]]
        offsets = json.loads(current["summary"][f"store-events.offsets.{topic}"])
        assert sum(offsets.values()) == len(s3tables["sent"]), offsets


def test_the_audit_reads_the_tables_through_s3_tables_and_finds_them_whole(s3tables: dict):
    for name, audit in s3tables["audits"].items():
        audit_line_counts_every_row(name, audit, s3tables["sent"])


def test_racing_writers_and_replicas_creating_the_table_meet_in_s3_tables_as_in_the_sql_catalog(s3tables: dict):
    """The store-lake race tests (two writers appending the same ledger entries at once: each
    entry's file in the table once; six replicas creating the table at once: one table),
    run against the table bucket: S3 Tables' version tokens fence them as the SQL catalog's
    checks do."""
    env = {
        **os.environ,
        "STORE_EVENTS_TEST_S3TABLES_ARN": s3tables["arn"],
        "STORE_EVENTS_TEST_S3TABLES_ENDPOINT": s3tables["endpoint"],
    }
    command = ["cargo", "test", "--workspace", "--test", "race", "--", "--nocapture"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "test result: ok. 2 passed" in done.stdout, done.stdout[-3000:]
    client = local_client("s3tables", s3tables["endpoint"])
    namespaces = [n["namespace"][0] for n in client.list_namespaces(tableBucketARN=s3tables["arn"])["namespaces"]]
    for test in ("race", "create"):
        (namespace,) = [n for n in namespaces if n.startswith(f"{test}_")]
        tables = client.list_tables(tableBucketARN=s3tables["arn"], namespace=namespace)["tables"]
        assert [t["name"] for t in tables] == ["sale_events"], tables
