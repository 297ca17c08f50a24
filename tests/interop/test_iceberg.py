"""The consumers' Apache Iceberg tables, read with tools this project did not write:
pyiceberg over the same SQL catalog and DuckDB's iceberg extension (both from PyPI, in
their own environment: scripts/py.sh --iceberg), and the teams' Athena queries for Iceberg
(deploy/athena/queries-iceberg) run by that DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import REPO, Run
from harness import LOCAL_ENV, S3_ENDPOINT
from test_readers import Expected, epoch_us, ledger_entries, same_rows

TABLES = {"sale_event": "sale_events", "inventory_event": "inventory_events"}
QUERIES = sorted((REPO / "deploy" / "athena" / "queries-iceberg").glob("*.sql"))


@pytest.fixture(scope="session")
def iceberg(run: Run) -> dict:
    """Everything iceberg_local.py reads of the run's tables: descriptions, every row through
    pyiceberg and through DuckDB, and each Iceberg team query's result."""
    env = {**os.environ, **LOCAL_ENV, "S3_ENDPOINT": S3_ENDPOINT, "S3_FORCE_PATH_STYLE": "true"}
    command = [str(REPO / "scripts" / "py.sh"), "--iceberg", "python", str(REPO / "deploy" / "iceberg" / "iceberg_local.py")]
    command += ["--catalog", run.catalog_uri, "--dump"] + [arg for q in QUERIES for arg in ("--query", str(q))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def as_sent(events: list[dict]) -> list[dict]:
    return sorted(({**e, "ts": epoch_us(e["ts"])} for e in events), key=lambda e: e["request_id"])


def as_events(rows: list[dict]) -> list[dict]:
    """Rows as the events they hold: nulls left out, `extra`'s fields merged back in."""
    events = []
    for row in rows:
        event = {k: v for k, v in row.items() if v is not None and k != "extra"}
        events.append({**event, **(json.loads(row["extra"]) if row.get("extra") else {})})
    return sorted(events, key=lambda e: e["request_id"])


@pytest.mark.parametrize("reader", ["pyiceberg", "duckdb"])
def test_each_table_holds_exactly_the_events_sent(run: Run, iceberg: dict, reader: str):
    for event_type, table in TABLES.items():
        rows = iceberg["tables"][table][reader]
        assert len(rows) == len(run.events(event_type)), f"{reader}: {table} has {len(rows)} rows"
        assert as_events(rows) == as_sent(run.events(event_type)), f"{reader}: {table}"


def test_the_tables_are_typed_with_field_ids_and_partitioned_by_day_of_ts(iceberg: dict):
    for table in TABLES.values():
        info = iceberg["tables"][table]
        schema = {name: (field_id, kind) for field_id, name, kind, _ in info["schema"]}
        assert schema["request_id"][0] == 1 and schema["extra"][0] == 16, schema
        assert schema["store_id"][1] == "long" and schema["price"][1] == "double", schema
        assert schema["ts"] == (13, "timestamptz"), schema
        assert info["spec"] == [["ts_day", "day", 13]], info["spec"]
        assert info["properties"].get("write.parquet.compression-codec") == "zstd", info["properties"]


def test_the_snapshots_hold_each_ledger_entry_once_and_name_its_offsets(run: Run, iceberg: dict):
    """Every entry the consumers wrote is in exactly one snapshot summary of its table, and the
    newest snapshot's offsets are the ledger's end per partition."""
    by_table = {}
    for table in TABLES.values():
        snapshots = iceberg["tables"][table]["snapshots"]
        assert snapshots, f"{table} has no snapshot"
        listed = [r for s in snapshots for r in s["summary"].get("store-events.entries", "").split(",") if r]
        assert len(listed) == len(set(listed)), f"{table}: an entry is in two snapshots: {listed}"
        by_table[table] = listed
        newest = next(s for s in snapshots if not any(o["parent"] == s["id"] for o in snapshots))
        offsets = json.loads(newest["summary"][f"store-events.offsets.{run.topic}"])
        ends = defaultdict(int)
        for entry in ledger_entries(run):
            ends[str(entry["partition"])] = max(ends[str(entry["partition"])], entry["next_offset"])
        assert offsets == dict(ends), f"{table}: offsets {offsets}, ledger ends {dict(ends)}"
    assert by_table["sale_events"] and by_table["inventory_events"]


def test_a_filter_on_ts_reads_only_that_days_files_and_finds_all_its_rows(run: Run, iceberg: dict):
    """pyiceberg prunes files by the day(ts) partition each was committed with: a wrong
    partition value would lose rows here."""
    for event_type, table in TABLES.items():
        sent = defaultdict(int)
        for event in run.events(event_type):
            sent[event["ts"][:10]] += 1
        assert len(sent) >= 3, "the run spans several days"
        assert iceberg["tables"][table]["per_day"] == dict(sent), table


ICEBERG_EXPECTED = {
    # The Iceberg queries group by the day of ts (the event's own time), not dt.
    "sales_revenue_by_day_store_category": lambda x: x.by_ts_day().sales_revenue_by_day_store_category(),
    "sales_returns_by_day_store": lambda x: x.by_ts_day().sales_returns_by_day_store(),
    "sales_top_skus": lambda x: x.sales_top_skus(),
    "warehouse_units_by_sku_store": lambda x: x.warehouse_units_by_sku_store(),
    "warehouse_movements_by_day": lambda x: x.by_ts_day().warehouse_movements_by_day(),
}


class ByTsDay(Expected):
    """The teams' numbers with each event's day taken from its ts (UTC)."""

    def __init__(self, run: Run):
        super().__init__(run)
        self.sales = [(e, e["ts"][:10]) for e, _ in self.sales]
        self.inventory = [(e, e["ts"][:10]) for e, _ in self.inventory]


@pytest.mark.parametrize("name", sorted(ICEBERG_EXPECTED))
def test_each_teams_iceberg_query_gives_the_numbers_of_what_was_sent(run: Run, iceberg: dict, name: str):
    columns, rows = iceberg["queries"][name]
    expected = ICEBERG_EXPECTED[name](_Numbers(run))
    assert expected, f"the run sent nothing {name} would count"
    rows = [tuple(str(v) if columns[i] == "day" else v for i, v in enumerate(row)) for row in rows]
    assert same_rows(rows, expected), f"{name} ({columns}):\n got {rows[:5]}...\nwant {expected[:5]}..."


class _Numbers(Expected):
    def __init__(self, run: Run):
        super().__init__(run)
        self.run = run

    def by_ts_day(self) -> ByTsDay:
        return ByTsDay(self.run)
