"""The Athena tables and queries of this folder, run by DuckDB over a local copy of the bucket.

One source: the tables come from `tables.sql` (gzip JSON Lines) or `tables-parquet.sql`
(Parquet; `--parquet`), parsed with sqlglot, the columns, partitions and location templates
taken from them, and the queries from `queries/*.sql`, written in Athena's dialect and
turned into DuckDB's by sqlglot. So what analysts run in Athena and what the tests check
locally cannot drift apart.

    scripts/aws s3 cp --recursive s3://store-events/ copy/     # or aws s3 sync
    scripts/py.sh python deploy/athena/duckdb_local.py copy/   # every query, as tables
    scripts/py.sh python deploy/athena/duckdb_local.py --parquet copy/ queries/sales_top_skus.sql
    scripts/py.sh python deploy/athena/duckdb_local.py --check # the DDL's own checks

ROOT is the folder that holds what the consumers wrote under S3_PREFIX (the folders
`event_type=...`, `parquet/` and `dead_letter/`).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import sqlglot
from sqlglot import exp

HERE = Path(__file__).resolve().parent
TABLES = HERE / "tables.sql"
TABLES_PARQUET = HERE / "tables-parquet.sql"
QUERIES = HERE / "queries"

# The SerDes a table may name: both read one JSON object per line, gzip by file ending.
SERDES = {"org.apache.hive.hcatalog.data.JsonSerDe", "org.openx.data.jsonserde.JsonSerDe"}


@dataclass
class Table:
    """One CREATE EXTERNAL TABLE of tables.sql."""

    name: str
    columns: list[tuple[str, exp.DataType]]
    partitions: list[tuple[str, exp.DataType]]
    serde: str
    location: str
    properties: dict[str, str]
    file_format: str = "TEXTFILE"

    @property
    def suffix(self) -> str:
        return ".parquet" if self.file_format == "PARQUET" else ".jsonl.gz"

    @property
    def template(self) -> str:
        return self.properties["storage.location.template"]

    def relative_glob(self, bucket_root: str) -> str:
        """The template as a glob under the bucket root: `event_type=sale_event/dt=*/*.jsonl.gz`."""
        return re.sub(r"\$\{[a-z_]+\}", "*", self.template.removeprefix(bucket_root)) + "*" + self.suffix


def parse_tables(text: str) -> list[Table]:
    """The tables of a DDL file, with the first problem found raised as ValueError."""
    tables = []
    for statement in sqlglot.parse(text, read="athena"):
        if statement is None:
            continue
        if not isinstance(statement, exp.Create):
            raise ValueError(f"not a CREATE statement: {statement.sql('athena')[:80]}")
        if statement.args.get("kind") != "TABLE":
            continue
        tables.append(_table(statement))
    if not tables:
        raise ValueError("no CREATE TABLE statement")
    return tables


def _table(create: exp.Create) -> Table:
    schema = create.this
    name = schema.this.name
    columns = [(c.name, c.args["kind"]) for c in schema.expressions]
    properties, partitions, serde, location, file_format = {}, [], None, None, "TEXTFILE"
    for prop in create.args["properties"].expressions:
        if isinstance(prop, exp.PartitionedByProperty):
            partitions = [(c.name, c.args["kind"]) for c in prop.this.expressions]
        elif isinstance(prop, exp.RowFormatSerdeProperty):
            serde = prop.this.name
        elif isinstance(prop, exp.FileFormatProperty):
            file_format = prop.this.name.upper()
        elif isinstance(prop, exp.LocationProperty):
            location = prop.this.name
        elif type(prop) is exp.Property:  # TBLPROPERTIES ('name' = 'value')
            properties[prop.name] = prop.args["value"].name
    table = Table(name, columns, partitions, serde or "", location or "", properties, file_format)
    _check(table)
    return table


def _check(table: Table) -> None:
    """What Athena would only say at query time: a SerDe it cannot read with, a projection
    that does not cover every partition column, a template that is not under LOCATION."""
    where = f"table {table.name}"
    if table.file_format == "PARQUET":
        if table.serde:
            raise ValueError(f"{where}: STORED AS PARQUET takes no ROW FORMAT SERDE (found {table.serde!r})")
    elif table.serde not in SERDES:
        raise ValueError(f"{where}: ROW FORMAT SERDE {table.serde!r} is not one of {sorted(SERDES)}")
    if not table.columns or not table.partitions:
        raise ValueError(f"{where}: needs columns and PARTITIONED BY")
    names = [n for n, _ in table.columns + table.partitions]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: a column is declared twice: {names}")
    if not table.location.startswith("s3://") or not table.location.endswith("/"):
        raise ValueError(f"{where}: LOCATION {table.location!r} must be an s3:// folder ending in /")
    if table.properties.get("projection.enabled") != "true":
        raise ValueError(f"{where}: partition projection is not enabled")
    template = table.properties.get("storage.location.template", "")
    if not template.startswith(table.location):
        raise ValueError(f"{where}: storage.location.template {template!r} is not under LOCATION")
    placeholders = re.findall(r"\$\{([a-z_]+)\}", template)
    partition_names = [n for n, _ in table.partitions]
    if placeholders != partition_names:
        raise ValueError(f"{where}: the template names {placeholders}, the partitions are {partition_names}")
    for name, kind in table.partitions:
        if not kind.is_type(exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR):
            raise ValueError(f"{where}: partition {name} must be STRING for date or enum projection")
        projection = table.properties.get(f"projection.{name}.type")
        if projection == "date":
            for key in ("format", "range", "interval", "interval.unit"):
                if f"projection.{name}.{key}" not in table.properties:
                    raise ValueError(f"{where}: projection.{name}.{key} is missing")
        elif projection == "enum":
            if not table.properties.get(f"projection.{name}.values"):
                raise ValueError(f"{where}: projection.{name}.values is missing")
        else:
            raise ValueError(f"{where}: partition {name} has no projection type (date or enum)")


def bucket_root(tables: list[Table]) -> str:
    """The `s3://bucket/prefix/` every LOCATION starts with."""
    roots = {re.match(r"s3://[^/]+/", t.location).group(0) for t in tables}
    if len(roots) != 1:
        raise ValueError(f"the tables are in more than one bucket: {sorted(roots)}")
    return roots.pop()


def connect(root: Path, ddl: str | None = None, parquet: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table, reading the copy of the bucket in `root`;
    with `parquet`, the event tables are those of tables-parquet.sql (dead letters stay JSON)."""
    tables = parse_tables(ddl if ddl is not None else TABLES.read_text())
    if parquet:
        typed = {t.name: t for t in parse_tables(TABLES_PARQUET.read_text())}
        tables = [typed.get(t.name, t) for t in tables]
    base = bucket_root(tables)
    con = duckdb.connect()
    for table in tables:
        pattern = (root / table.relative_glob(base)).as_posix()
        columns = ", ".join(f"'{name}': '{kind.sql('duckdb')}'" for name, kind in table.columns)
        hive_types = ", ".join(f"'{name}': 'VARCHAR'" for name, _ in table.partitions)
        # A table with no object yet is empty, as in Athena, rather than an error.
        if not list(root.glob(table.relative_glob(base))):
            select = ", ".join(f"NULL::{k.sql('duckdb')} AS {n}" for n, k in table.columns + table.partitions)
            con.execute(f"CREATE VIEW {table.name} AS SELECT {select} WHERE FALSE")
            continue
        if table.file_format == "PARQUET":
            # As Athena reads Parquet: columns by name, as the table declares them.
            select = ", ".join(f"CAST({n} AS {k.sql('duckdb')}) AS {n}" for n, k in table.columns + table.partitions)
            con.execute(
                f"CREATE VIEW {table.name} AS SELECT {select} FROM read_parquet('{pattern}', "
                f"hive_partitioning = true, hive_types = {{{hive_types}}})"
            )
            continue
        con.execute(
            f"CREATE VIEW {table.name} AS SELECT * FROM read_json('{pattern}', "
            f"format = 'newline_delimited', compression = 'gzip', columns = {{{columns}}}, "
            f"hive_partitioning = true, hive_types = {{{hive_types}}})"
        )
    return con


def to_duckdb(query: str) -> str:
    """An Athena (Trino) query in DuckDB's dialect."""
    statements = sqlglot.transpile(query, read="athena", write="duckdb")
    if len(statements) != 1:
        raise ValueError(f"expected one statement, found {len(statements)}")
    return statements[0]


def run(con: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple]]:
    """Runs an Athena query in DuckDB: its column names and rows."""
    result = con.execute(to_duckdb(query))
    return [d[0] for d in result.description], result.fetchall()


def queries() -> dict[str, str]:
    """Every shipped query by file name without `.sql`."""
    return {path.stem: path.read_text() for path in sorted(QUERIES.glob("*.sql"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, help="local copy of the bucket (under S3_PREFIX)")
    parser.add_argument("queries", nargs="*", type=Path, help="query files (default: every one in queries/)")
    parser.add_argument("--check", action="store_true", help="check both DDL files and the queries' syntax, then exit")
    parser.add_argument("--parquet", action="store_true", help="the Parquet tables (tables-parquet.sql)")
    args = parser.parse_args()
    try:
        for ddl in (TABLES, TABLES_PARQUET):
            tables = parse_tables(ddl.read_text())
            if args.check:
                print(f"{ddl.name}: {len(tables)} tables valid")
        for text in queries().values():
            to_duckdb(text)
        if args.check:
            print(f"{len(queries())} queries parse")
            return 0
        if args.root is None or not args.root.is_dir():
            parser.error("ROOT must be a folder holding a copy of the bucket")
        con = connect(args.root, parquet=args.parquet)
        chosen = {p.stem: p.read_text() for p in args.queries} if args.queries else queries()
        for name, text in chosen.items():
            columns, rows = run(con, text)
            print(f"-- {name}: {len(rows)} rows")
            print("\t".join(columns))
            for row in rows:
                print("\t".join("" if v is None else str(v) for v in row))
            print()
    except (ValueError, sqlglot.errors.ParseError, duckdb.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
