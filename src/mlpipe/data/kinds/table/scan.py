"""What download says of a table it fetched, read in bounded memory: rows, columns, schema.

The file is parsed (a CSV chunk by chunk, so a bad row fails the download) but never held whole:
at ten million rows the table would be gigabytes that download only counts. A Parquet file says
all of it in its footer: the row count, the column types and, per row group, the null counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlpipe.data.kinds.table.schema import merge_schemas, mlflow_schema
from mlpipe.data.tables import no_rows, reading

CHUNK_ROWS = 250_000


@dataclass(frozen=True)
class Scan:
    rows: int
    columns: list[str]
    schema: dict[str, Any]


def scan(path: Path, where: str) -> Scan:
    with reading(path, where) as fmt:
        found = _scan_csv(path) if fmt == "csv" else _scan_parquet(path)
    if found.rows == 0 or not found.columns:
        raise no_rows(path, where)
    return found


def _scan_csv(path: Path) -> Scan:
    rows, schema, columns = 0, None, []
    with pd.read_csv(path, low_memory=False, chunksize=CHUNK_ROWS) as chunks:
        for chunk in chunks:
            rows += len(chunk)
            columns = [str(c) for c in chunk.columns]
            part = mlflow_schema(chunk)
            schema = part if schema is None else merge_schemas(schema, part)
    return Scan(rows, columns, schema or {"mlflow_colspec": []})


def _scan_parquet(path: Path) -> Scan:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    empty = meta.schema.to_arrow_schema().empty_table().to_pandas()
    schema = mlflow_schema(empty)
    nulls = _null_counts(path, meta)
    for spec in schema["mlflow_colspec"]:
        spec["required"] = nulls[spec["name"]] == 0
    return Scan(meta.num_rows, [str(c) for c in empty.columns], schema)


def _null_counts(path: Path, meta: Any) -> dict[str, int]:
    """Nulls per top-level column, from the row groups' statistics; a column without them is read."""
    import pyarrow.parquet as pq

    counts: dict[str, int] = {}
    unknown: set[str] = set()
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for i in range(row_group.num_columns):
            column = row_group.column(i)
            name = column.path_in_schema.split(".")[0]
            stats = column.statistics
            if stats is None or not stats.has_null_count:
                unknown.add(name)
            else:
                counts[name] = counts.get(name, 0) + stats.null_count
    for name in unknown:
        counts[name] = pq.read_table(path, columns=[name]).column(0).null_count
    return counts
