"""What the consumers write to S3, read with the tools analysts and operators use: the AWS
CLI, boto3 and DuckDB (JSON Lines and Parquet), and the Athena queries of deploy/athena run
by DuckDB over both formats."""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote_plus

import duckdb
import duckdb_local
import pytest
from conftest import BUCKET, Run, aws, s3_client

DATA_KINDS = ("event_type=", "parquet/", "dead_letter/")


def boto3_keys(prefix: str) -> set[str]:
    """Every key under `prefix`, listed by boto3 (URL-encoded listing, decoded by boto3)."""
    pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def ledger_entries(run: Run) -> list[dict]:
    """Every ledger entry of both consumers, read with boto3."""
    s3 = s3_client()
    keys = sorted(k for k in boto3_keys(f"{run.prefix}/_ledger/") if not k.endswith("checkpoint.json"))
    return [json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys]


def promised_objects(run: Run) -> set[str]:
    """The data and dead-letter objects the ledger names: what must be in the bucket."""
    keys = set()
    for entry in ledger_entries(run):
        keys.update(k for k in (entry.get("data_key"), entry.get("parquet_key"), entry.get("dead_letter_key")) if k)
    return keys


def same_instant(event: dict) -> dict:
    return {**event, "ts": datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))}


def epoch_us(ts: str) -> int:
    """An event's `ts` as microseconds since the epoch (a time without a zone is UTC)."""
    instant = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    instant = instant if instant.tzinfo else instant.replace(tzinfo=timezone.utc)
    return (instant - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def revenue(events) -> float:
    return sum(e["price"] * e["qty"] * (1 - e["discount"] / 100) for e in events)


def test_the_consumers_own_audit_is_clean(run: Run):
    for name, audit in run.audits.items():
        assert audit.returncode == 0, f"{name} audit --deep:\n{audit.stdout}\n{audit.stderr}"


def test_aws_cli_lists_every_object_with_its_exact_key(run: Run):
    promised = promised_objects(run)
    assert any("+" in k and " " in k and "é" in k for k in promised), promised
    listing = aws("s3", "ls", "--recursive", f"s3://{BUCKET}/{run.prefix}/").stdout
    # `2026-11-26 18:00:00       1234 <key>`: the key is everything after the third field.
    listed = {line.split(maxsplit=3)[3] for line in listing.splitlines() if line.strip()}
    assert {k for k in listed if k.startswith(tuple(f"{run.prefix}/{d}" for d in DATA_KINDS))} == promised
    # The ledger too: one key per entry, and a checkpoint per consumer and partition.
    assert listed == boto3_keys(f"{run.prefix}/")
    assert len([k for k in listed if "/_ledger/" in k and not k.endswith("checkpoint.json")]) == len(ledger_entries(run))
    assert len([k for k in listed if k.endswith("/checkpoint.json")]) == 4


@pytest.mark.parametrize("encoding", ["url", None])
def test_boto3_lists_the_same_keys_with_and_without_url_encoding(run: Run, encoding):
    s3 = s3_client()
    extra = {"EncodingType": encoding} if encoding else {}
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{run.prefix}/", PaginationConfig={"PageSize": 7}, **extra
    ):
        # Asked for explicitly, the encoding is the caller's to undo (boto3 undoes its own).
        decode = unquote_plus if encoding else str
        keys.update(decode(item["Key"]) for item in page.get("Contents", []))
    assert promised_objects(run) <= keys
    for key in keys:  # each listed key is one the server answers for
        s3.head_object(Bucket=BUCKET, Key=key)


def test_aws_cli_copies_every_object_byte_for_byte(run: Run, copy: Path):
    s3 = s3_client()
    for key in promised_objects(run):
        local = copy / key.removeprefix(f"{run.prefix}/")
        assert local.is_file(), f"aws s3 cp did not download {key}"
        assert local.read_bytes() == s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), key


def test_boto3_reads_each_object_and_its_metadata(run: Run):
    s3 = s3_client()
    for entry in ledger_entries(run):
        for key, count in ((entry.get("data_key"), entry["stored"]), (entry.get("dead_letter_key"), entry["dead_lettered"])):
            if not key:
                continue
            obj = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
            assert obj["ContentType"] == "application/gzip", key
            if entry.get("parquet_key") and key == entry.get("data_key"):
                parquet = s3.head_object(Bucket=BUCKET, Key=entry["parquet_key"])
                assert parquet["ContentType"] == "application/vnd.apache.parquet"
                assert parquet["Metadata"] == obj["Metadata"], entry["parquet_key"]
            assert obj["Metadata"] == {
                "topic": run.topic,
                "partition": str(entry["partition"]),
                "first-offset": str(entry["first_offset"]),
                "last-offset": str(entry["next_offset"] - 1),
                "record-count": str(count),
            }, key
            lines = gzip.decompress(obj["Body"].read()).decode().splitlines()
            assert len(lines) == count, key
            assert key.endswith(f"+{entry['partition']}+{entry['first_offset']:020}.jsonl.gz"), key


def gzip_members(data: bytes) -> int:
    """The gzip members (RFC 1952, 2.2) `data` is made of, counted with zlib."""
    members = 0
    while data:
        decoder = zlib.decompressobj(wbits=31)
        decoder.decompress(data)
        assert decoder.eof, "a gzip member is cut short"
        data = decoder.unused_data
        members += 1
    return members


def test_objects_larger_than_a_gzip_member_are_read_whole(run: Run, copy: Path):
    """The consumers compress a batch as it fills, a gzip member per 128 KiB of lines: the
    readers here (gzip, DuckDB, the AWS CLI's copy) must see every member's lines."""
    multi = [path for path in copy.glob("event_type=*/dt=*/*.jsonl.gz") if gzip_members(path.read_bytes()) > 1]
    assert multi, "no object of several gzip members: the long events did not make one"
    for path in multi:
        lines = gzip.open(path, "rt").read().splitlines()
        assert any("note" in json.loads(line) for line in lines), path
        assert duckdb.sql(f"SELECT count(*) FROM read_json('{path.as_posix()}', format = 'newline_delimited')").fetchall() == [(len(lines),)]


def test_stored_events_are_exactly_the_events_sent(run: Run, copy: Path):
    for event_type in ("sale_event", "inventory_event"):
        stored = []
        for path in sorted(copy.glob(f"event_type={event_type}/dt=*/*.jsonl.gz")):
            stored.extend(json.loads(line) for line in gzip.open(path, "rt"))
        # Every event once, unknown fields and non-ASCII text as sent; `ts` the same instant
        # (the producer writes it in RFC 3339 with its zone).
        assert sorted(map(same_instant, stored), key=lambda e: e["request_id"]) == sorted(
            map(same_instant, run.events(event_type)), key=lambda e: e["request_id"]
        ), event_type


def parquet_rows(path: Path) -> list[dict]:
    """The rows of Parquet files (a glob), read by DuckDB, as the events they hold: nulls left
    out, the `extra` column's fields merged back in."""
    # `ts` as epoch microseconds (a timestamp with a zone would need pytz in Python); that
    # it is a UTC timestamp in the files is checked from their schema below.
    result = duckdb.sql(f"SELECT * REPLACE (epoch_us(ts) AS ts) FROM read_parquet('{path.as_posix()}', hive_partitioning = false)")
    names = [d[0] for d in result.description]
    events = []
    for row in result.fetchall():
        event = {n: v for n, v in zip(names, row) if v is not None and n != "extra"}
        extra = dict(zip(names, row)).get("extra")
        events.append({**event, **(json.loads(extra) if extra else {})})
    return events


def test_parquet_files_hold_exactly_the_events_sent(run: Run, copy: Path):
    """Typed columns (integers, doubles, booleans, ts a UTC timestamp) that equal what was
    sent, and the fields the contract does not name kept in `extra`, as DuckDB reads them."""
    for event_type in ("sale_event", "inventory_event"):
        rows = parquet_rows(copy / f"parquet/event_type={event_type}/dt=*/*.parquet")
        sent = [{**e, "ts": epoch_us(e["ts"])} for e in run.events(event_type)]
        key = lambda e: e["request_id"]  # noqa: E731
        assert sorted(rows, key=key) == sorted(sent, key=key), event_type
        assert any("note" in r for r in rows) or event_type == "inventory_event", "no long event kept its note"


def test_parquet_files_are_zstd_typed_with_field_ids_and_statistics(copy: Path):
    files = sorted(copy.glob("parquet/event_type=*/dt=*/*.parquet"))
    assert files
    for path in files[:5]:
        schema = {r[0]: r for r in duckdb.sql(f"SELECT name, type, logical_type, field_id FROM parquet_schema('{path.as_posix()}')").fetchall()}
        assert schema["store_id"][1] == "INT64" and schema["price"][1] == "DOUBLE" and schema["gift_wrap"][1] == "BOOLEAN"
        assert "isAdjustedToUTC=1" in schema["ts"][2] and "MICROS" in schema["ts"][2], schema["ts"]
        assert schema["request_id"][3] == 1 and schema["extra"][3] == 16, "Iceberg maps columns by these field ids"
        chunks = duckdb.sql(
            f"SELECT path_in_schema, compression, stats_min, stats_max, encodings FROM parquet_metadata('{path.as_posix()}')"
        ).fetchall()
        assert {c[1] for c in chunks} == {"ZSTD"}, chunks
        stats = {c[0]: (c[2], c[3]) for c in chunks}
        assert stats["ts"][0] is not None and stats["store_id"][0] is not None, stats
        assert "RLE_DICTIONARY" in {c[0]: c[4] for c in chunks}["category"], chunks


def duckdb_counts(copy: Path, columns: str, files: str) -> dict[tuple, int]:
    """`count(*)` by `columns` over the gzip JSON Lines `files` of the copy, read by DuckDB
    with its Hive partitioning (the folders' `name=value` become columns)."""
    rows = duckdb.sql(
        f"SELECT {columns}, count(*) FROM read_json('{copy.as_posix()}/{files}', format = 'newline_delimited', "
        "hive_partitioning = true, hive_types = {'dt': 'VARCHAR'}) GROUP BY ALL"
    ).fetchall()
    return {row[:-1]: row[-1] for row in rows}


def test_duckdb_counts_the_events_per_type_and_date(run: Run, copy: Path):
    expected = Counter((t, dt) for t, pairs in run.stored.items() for _, dt in pairs)
    assert duckdb_counts(copy, "event_type, dt", "event_type=*/dt=*/*.jsonl.gz") == dict(expected)
    assert len({dt for _, dt in expected}) >= 3


def test_duckdb_counts_the_parquet_events_per_type_and_date(run: Run, copy: Path):
    expected = Counter((t, dt) for t, pairs in run.stored.items() for _, dt in pairs)
    rows = duckdb.sql(
        f"SELECT event_type, dt, count(*) FROM read_parquet('{copy.as_posix()}/parquet/event_type=*/dt=*/*.parquet', "
        "hive_partitioning = true, hive_types = {'dt': 'VARCHAR'}) GROUP BY ALL"
    ).fetchall()
    assert {row[:-1]: row[-1] for row in rows} == dict(expected)


def test_duckdb_counts_the_dead_letters_per_consumer_date_and_reason(run: Run, copy: Path):
    counts = duckdb_counts(copy, "consumer, dt, kind", "dead_letter/*/*/*.jsonl.gz")
    assert counts == dict(run.dead_letters)


def test_the_athena_tables_and_queries_parse():
    tables = duckdb_local.parse_tables(duckdb_local.TABLES.read_text())
    assert [t.name for t in tables] == ["sale_events", "inventory_events", "dead_letters"]
    assert {"dt"} == {n for n, _ in tables[0].partitions}
    parquet = duckdb_local.parse_tables(duckdb_local.TABLES_PARQUET.read_text())
    assert [(t.name, t.file_format) for t in parquet] == [("sale_events", "PARQUET"), ("inventory_events", "PARQUET")]
    # The same columns in both, plus `extra`: the teams' queries run on either.
    assert [n for n, _ in tables[0].columns] + ["extra"] == [n for n, _ in parquet[0].columns]
    assert len(duckdb_local.queries()) == 6
    for text in duckdb_local.queries().values():
        duckdb_local.to_duckdb(text)


def test_a_table_without_projection_is_refused_with_its_name():
    ddl = duckdb_local.TABLES.read_text().replace("'projection.dt.format' = 'yyyy-MM-dd',", "", 1)
    with pytest.raises(ValueError, match="table sale_events: projection.dt.format is missing"):
        duckdb_local.parse_tables(ddl)


class Expected:
    """The teams' numbers, computed here from the events that were sent."""

    def __init__(self, run: Run):
        self.sales = run.stored["sale_event"]
        self.inventory = run.stored["inventory_event"]

    def sales_revenue_by_day_store_category(self):
        groups = defaultdict(list)
        for e, dt in self.sales:
            if not e.get("is_return"):
                groups[(dt, e["store_id"], e["category"])].append(e)
        return [(*k, len(v), sum(e["qty"] for e in v), revenue(v)) for k, v in sorted(groups.items())]

    def sales_returns_by_day_store(self):
        groups = defaultdict(list)
        for e, dt in self.sales:
            if e.get("is_return"):
                groups[(dt, e["store_id"])].append(e)
        return [(*k, len(v), sum(e["qty"] for e in v), revenue(v)) for k, v in sorted(groups.items())]

    def sales_top_skus(self):
        groups = defaultdict(list)
        for e, _ in self.sales:
            if not e.get("is_return"):
                groups[e["sku"]].append(e)
        rows = [(sku, len(v), sum(e["qty"] for e in v), revenue(v)) for sku, v in groups.items()]
        return sorted(rows, key=lambda r: (-round(r[3], 2), r[0]))[:10]

    def warehouse_units_by_sku_store(self):
        groups = defaultdict(lambda: [0, 0])
        for e, _ in self.inventory:
            groups[(e["sku"], e["store_id"])][1 if e.get("is_return") else 0] += e["qty"]
        return [(*k, out, back, back - out) for k, (out, back) in sorted(groups.items())]

    def warehouse_movements_by_day(self):
        groups = defaultdict(lambda: [0, 0, 0])
        for e, dt in self.inventory:
            g = groups[(dt, e["category"])]
            g[0] += 1
            g[2 if e.get("is_return") else 1] += e["qty"]
        return [(*k, *v) for k, v in sorted(groups.items())]


def same_rows(actual, expected) -> bool:
    """Equal row by row; money compared to the cent (sums of doubles in another order)."""
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        if len(a) != len(e):
            return False
        for x, y in zip(a, e):
            if isinstance(y, float) and not isinstance(x, str):
                if abs(x - y) > 0.011:
                    return False
            elif x != y:
                return False
    return True


@pytest.mark.parametrize(
    "name",
    [
        "sales_revenue_by_day_store_category",
        "sales_returns_by_day_store",
        "sales_top_skus",
        "warehouse_units_by_sku_store",
        "warehouse_movements_by_day",
    ],
)
@pytest.mark.parametrize("parquet", [False, True], ids=["json", "parquet"])
def test_each_teams_query_gives_the_numbers_of_what_was_sent(run: Run, copy: Path, name, parquet):
    con = duckdb_local.connect(copy, parquet=parquet)
    columns, rows = duckdb_local.run(con, duckdb_local.queries()[name])
    expected = getattr(Expected(run), name)()
    assert expected, f"the run sent nothing {name} would count"
    assert same_rows(rows, expected), f"{name} ({columns}):\n got {rows[:5]}...\nwant {expected[:5]}..."


def test_the_operations_query_counts_dead_letters_by_day_consumer_and_reason(run: Run, copy: Path):
    con = duckdb_local.connect(copy)
    columns, rows = duckdb_local.run(con, duckdb_local.queries()["operations_dead_letters_by_day_reason"])
    assert columns == ["day", "consumer", "kind", "records", "example"]
    counts = {(c, day, k): n for day, c, k, n, _ in rows}
    assert counts == dict(run.dead_letters)
    examples = {k: example for _, _, k, _, example in rows}
    assert examples["flagged_bad"].startswith("bad_msg: ") or "bad_msg" in examples["flagged_bad"], examples
    assert examples["not_json"].startswith("not JSON: "), examples
    # A value that is not UTF-8 is kept as {"base64": ...}; the table gives it as JSON text.
    ((value,),) = con.execute("SELECT DISTINCT value FROM dead_letters WHERE kind = 'not_utf8'").fetchall()
    assert json.loads(value) == {"base64": "//4gbm90IFVURi04"}
