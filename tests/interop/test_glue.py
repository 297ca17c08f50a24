"""The consumers' Iceberg tables in an AWS Glue Data Catalog (ICEBERG_CATALOG=glue), read
the way Athena finds them: boto3's Glue client (the table's type and metadata location,
which Athena reads) and pyiceberg's GlueCatalog (the rows).

No Glue runs here: the catalog is moto's server (PyPI `moto[server]`, in the Iceberg
readers' environment), which speaks Glue's API on 127.0.0.1; the data files and metadata
are on the local S3 server as always. moto does not check UpdateTable's VersionId, so racing
members are tested on the SQL catalog (cargo test --workspace --test race), and on Glue
rest on its ConcurrentModificationException (README, Iceberg tables).
"""

from __future__ import annotations

import uuid

import pytest
from aws_catalogs import audit_line_counts_every_row, moto_server, read_tables, run_both_consumers
from harness import BUCKET, S3_ENDPOINT, Service, local_client
from test_iceberg import TABLES, as_events, as_sent


@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> dict:
    """One run of both consumers into a Glue catalog: what was sent, the Glue endpoint, the
    consumers' environment and their audits."""
    logs = tmp_path_factory.mktemp("glue-logs")
    with moto_server(logs) as endpoint:
        env = {"S3_BUCKET": BUCKET, "S3_ENDPOINT": S3_ENDPOINT, "ICEBERG_CATALOG": "glue", "ICEBERG_GLUE_ENDPOINT": endpoint}
        run = run_both_consumers("glue", env, logs, seed=20261207)
        yield {**run, "endpoint": endpoint, "logs": logs, "read": read_tables(f"glue:{endpoint}", run["env"])}


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
        audit_line_counts_every_row(name, audit, glue["sent"])


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
