"""Reads the consumers' Apache Iceberg tables with tools this project did not write:
pyiceberg over the same catalog (the SQL catalog's SQLite file, AWS Glue, or an Amazon S3
Tables table bucket), and DuckDB's iceberg extension over the table's current metadata file. Run it with
`scripts/py.sh --iceberg python deploy/iceberg/iceberg_local.py`.

    source scripts/local.env    # the local S3 server's endpoint and keys
    iceberg_local.py --catalog sqlite:.local/iceberg-catalog.db            # tables, snapshots, rows
    iceberg_local.py --catalog glue                                       # AWS Glue (AWS_REGION, keys)
    iceberg_local.py --catalog glue:http://127.0.0.1:5000                 # a Glue endpoint of its own
    iceberg_local.py --catalog s3tables:arn:aws:s3tables:...:bucket/NAME   # S3 Tables (ICEBERG_S3TABLES_ENDPOINT)
    iceberg_local.py --catalog ... --query deploy/athena/queries-iceberg/sales_top_skus.sql
    iceberg_local.py --catalog ... --dump                                 # everything, as JSON (tests)

S3 settings come from the consumers' variables: S3_ENDPOINT, S3_FORCE_PATH_STYLE,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import sqlglot
from pyiceberg.catalog import Catalog
from pyiceberg.catalog.sql import SqlCatalog

NAMESPACE = "store_events"


def file_io_properties() -> dict[str, str]:
    """pyiceberg's S3 properties from the consumers' environment variables."""
    props = {}
    pairs = [
        ("S3_ENDPOINT", "s3.endpoint"),
        ("AWS_REGION", "s3.region"),
        ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
    ]
    for variable, prop in pairs:
        if os.environ.get(variable):
            props[prop] = os.environ[variable]
    if os.environ.get("S3_FORCE_PATH_STYLE", "").lower() in ("1", "true", "yes"):
        props["s3.path-style-access"] = "true"
    return props


def glue_catalog(endpoint: str) -> Catalog:
    """The Glue Data Catalog (ICEBERG_CATALOG=glue), at `endpoint` when one is given."""
    from pyiceberg.catalog.glue import GlueCatalog

    props = file_io_properties()
    for variable, prop in [
        ("AWS_REGION", "glue.region"),
        ("AWS_ACCESS_KEY_ID", "glue.access-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "glue.secret-access-key"),
        ("ICEBERG_GLUE_CATALOG_ID", "glue.id"),
    ]:
        if os.environ.get(variable):
            props[prop] = os.environ[variable]
    if endpoint:
        props["glue.endpoint"] = endpoint
    return GlueCatalog("glue", **props)


class S3TablesBucket:
    """The tables of an S3 Tables table bucket (ICEBERG_CATALOG=s3tables), read-only: each
    table's current metadata file from the S3 Tables API (boto3), read by pyiceberg as a
    StaticTable. (pyiceberg reaches S3 Tables as a catalog only through its Iceberg REST
    endpoint, which servers other than AWS's do not offer; this works against both.)"""

    def __init__(self, arn: str, endpoint: str):
        import boto3

        self.arn = arn
        self.region = arn.split(":")[3]
        keys = {k.lower(): os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if os.environ.get(k)}
        self.client = boto3.client("s3tables", region_name=self.region, endpoint_url=endpoint or None, **keys)

    def list_tables(self, namespace: str) -> list[tuple[str, str]]:
        pages = self.client.get_paginator("list_tables").paginate(tableBucketARN=self.arn, namespace=namespace)
        return [(namespace, table["name"]) for page in pages for table in page["tables"]]

    def load_table(self, ident: tuple[str, str]):
        from pyiceberg.table import StaticTable

        namespace, name = ident
        found = self.client.get_table_metadata_location(tableBucketARN=self.arn, namespace=namespace, name=name)
        return StaticTable.from_metadata(found["metadataLocation"], {**file_io_properties(), "s3.region": self.region})


def default_catalog() -> str:
    """--catalog from the consumers' own variables."""
    if os.environ.get("ICEBERG_CATALOG") == "glue":
        return "glue:" + os.environ.get("ICEBERG_GLUE_ENDPOINT", "")
    if os.environ.get("ICEBERG_CATALOG") == "s3tables":
        return "s3tables:" + os.environ.get("ICEBERG_S3TABLES_BUCKET_ARN", "")
    return os.environ.get("ICEBERG_CATALOG_URI", "sqlite:.local/iceberg-catalog.db")


def catalog(uri: str) -> Catalog | S3TablesBucket:
    """The catalog the consumers write: `sqlite:<path>` (ICEBERG_CATALOG_URI), `glue[:<endpoint>]`
    or `s3tables:<table bucket ARN>` (at ICEBERG_S3TABLES_ENDPOINT when it is set)."""
    if uri == "glue" or uri.startswith("glue:"):
        return glue_catalog(uri.removeprefix("glue").removeprefix(":"))
    if uri.startswith("s3tables:arn:"):
        return S3TablesBucket(uri.removeprefix("s3tables:"), os.environ.get("ICEBERG_S3TABLES_ENDPOINT", ""))
    if not uri.startswith("sqlite:"):
        raise SystemExit(f"{uri!r} is not a catalog: use sqlite:<path>, glue, glue:<endpoint> or s3tables:<table bucket ARN>")
    path = Path(uri.removeprefix("sqlite:").split("?")[0]).resolve()
    if not path.exists():
        raise SystemExit(f"no catalog at {path}: start the consumers with OUTPUT_FORMATS including iceberg first")
    warehouse = os.environ.get("ICEBERG_WAREHOUSE", "s3://store-events/iceberg")
    return SqlCatalog("store_events", uri=f"sqlite:///{path}", warehouse=warehouse, **file_io_properties())


def duckdb_connect(cat: Catalog, namespace: str = NAMESPACE) -> duckdb.DuckDBPyConnection:
    """DuckDB with the iceberg extension (from its PyPI package, offline) and one view per
    table of `namespace`, reading the table's current metadata file."""
    con = duckdb.connect()
    # As Athena: a timestamptz's date is its UTC date.
    con.execute("SET TimeZone = 'UTC'")
    # avro first: the iceberg extension would otherwise try to download it.
    for name in ("httpfs", "avro", "iceberg"):
        package = __import__(f"duckdb_extension_{name}")
        (extension,) = Path(package.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension")
        con.execute(f"LOAD '{extension.as_posix()}'")
    endpoint = os.environ.get("S3_ENDPOINT", "")
    secret = [
        "TYPE s3",
        f"KEY_ID '{os.environ.get('AWS_ACCESS_KEY_ID', '')}'",
        f"SECRET '{os.environ.get('AWS_SECRET_ACCESS_KEY', '')}'",
        f"REGION '{os.environ.get('AWS_REGION', 'us-east-1')}'",
    ]
    if endpoint:
        secret += [
            f"ENDPOINT '{endpoint.split('://', 1)[-1]}'",
            f"USE_SSL {str(endpoint.startswith('https://')).lower()}",
            "URL_STYLE 'path'",
        ]
    con.execute(f"CREATE SECRET store_events_s3 ({', '.join(secret)})")
    for (_, table_name) in cat.list_tables(namespace):
        table = cat.load_table((namespace, table_name))
        con.execute(f"CREATE VIEW {table_name} AS SELECT * FROM iceberg_scan('{table.metadata_location}')")
    return con


def pyiceberg_rows(cat: Catalog, name: str) -> list[dict]:
    """Every row of a table through pyiceberg's own scan, `ts` as microseconds since the epoch."""
    arrow = cat.load_table((NAMESPACE, name)).scan().to_arrow()
    ts = arrow.column("ts").cast("int64")
    arrow = arrow.set_column(arrow.schema.get_field_index("ts"), "ts", ts)
    return arrow.to_pylist()


def rows_per_day(cat: Catalog, name: str) -> dict[str, int]:
    """Rows per UTC day of `ts`, each day counted by its own filtered pyiceberg scan (which
    reads only the files whose day(ts) partition can match)."""
    table = cat.load_table((NAMESPACE, name))
    ts = table.scan(selected_fields=("ts",)).to_arrow().column("ts").to_pylist()
    days = sorted({t.astimezone(timezone.utc).date() for t in ts})
    counts = {}
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        end = start + timedelta(days=1)
        where = f"ts >= '{start.isoformat()}' AND ts < '{end.isoformat()}'"
        counts[day.isoformat()] = table.scan(row_filter=where, selected_fields=("request_id",)).to_arrow().num_rows
    return counts


def duckdb_rows(con: duckdb.DuckDBPyConnection, name: str) -> list[dict]:
    """Every row of a table through DuckDB's iceberg_scan, `ts` as microseconds since the epoch."""
    result = con.execute(f"SELECT * REPLACE (epoch_us(ts) AS ts) FROM {name}")
    columns = [d[0] for d in result.description]
    return [dict(zip(columns, row)) for row in result.fetchall()]


def run_query(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple]]:
    """An Athena (Trino) query in DuckDB's dialect over the tables' views."""
    (statement,) = sqlglot.transpile(query, read="athena", write="duckdb")
    result = con.execute(statement)
    return [d[0] for d in result.description], result.fetchall()


def describe(cat: Catalog, name: str) -> dict:
    """What pyiceberg says of a table: schema (with field ids), partition spec, snapshots."""
    table = cat.load_table((NAMESPACE, name))
    return {
        "location": table.location(),
        "metadata_location": table.metadata_location,
        "schema": [(f.field_id, f.name, str(f.field_type), f.required) for f in table.schema().fields],
        "spec": [(f.name, str(f.transform), f.source_id) for f in table.spec().fields],
        "properties": dict(table.properties),
        "current_snapshot": table.current_snapshot().snapshot_id if table.current_snapshot() else None,
        "snapshots": [
            {"id": s.snapshot_id, "parent": s.parent_snapshot_id, "summary": s.summary.additional_properties}
            for s in table.snapshots()
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", default=default_catalog(), help="sqlite:<path>, glue, glue:<endpoint> or s3tables:<ARN>")
    parser.add_argument("--query", action="append", default=[], help="an Athena query file to run in DuckDB")
    parser.add_argument("--dump", action="store_true", help="print every table's description and rows as JSON")
    parser.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for a snapshot in every table")
    args = parser.parse_args()
    cat = catalog(args.catalog)
    names = [name for (_, name) in cat.list_tables(NAMESPACE)]
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and not all(cat.load_table((NAMESPACE, n)).current_snapshot() for n in names):
        time.sleep(1)
        names = [name for (_, name) in cat.list_tables(NAMESPACE)]
    con = duckdb_connect(cat)
    if args.dump:
        out = {
            name: {
                **describe(cat, name),
                "pyiceberg": pyiceberg_rows(cat, name),
                "duckdb": duckdb_rows(con, name),
                "per_day": rows_per_day(cat, name),
            }
            for name in names
        }
        queries = {Path(q).stem: run_query(con, Path(q).read_text()) for q in args.query}
        json.dump({"tables": out, "queries": queries}, sys.stdout, default=str)
        return 0
    if args.query:
        for query in args.query:
            columns, rows = run_query(con, Path(query).read_text())
            print(f"-- {query}")
            print(" | ".join(columns))
            for row in rows:
                print(" | ".join(str(v) for v in row))
        return 0
    for name in names:
        info = describe(cat, name)
        (count,) = con.execute(f"SELECT count(*) FROM {name}").fetchone()
        print(f"{NAMESPACE}.{name}: {count} rows, {len(info['snapshots'])} snapshots, at {info['location']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
