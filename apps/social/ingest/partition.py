"""Canonical tables as hive-partitioned Parquet datasets: ``posts.parquet/day=2024-03-01/part-0.parquet``.

A month of a stream is easier to query, copy and extend a day at a time: DuckDB, polars, Spark
and pyarrow prune the days a query does not touch, and a new day is a new folder.  ``posts`` and
``edges`` are partitioned by the UTC day of ``created_at`` (``day=unknown`` where a row has no
time); ``users`` and ``media`` stay single files.  The partition column is not stored in the
files (hive style): :func:`apps.social.dataset.load_tables` drops it again, so every reader sees
the same columns as with single files.  Rows keep their order inside each day.

The conversion streams row groups (memory: one batch per open day file) into a temporary folder
and publishes it in place of the single file (:func:`mmcore.utils.io.publish_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mmcore.utils.io import publish_dir

PARTITIONED = ("posts", "edges")
DAY = pa.schema([("day", pa.string())])


def _with_day(source: ds.Dataset, batch_rows: int):
    for batch in source.to_batches(batch_size=batch_rows):
        day = pc.fill_null(pc.strftime(batch.column("created_at"), format="%Y-%m-%d"), "unknown")
        yield batch.append_column("day", day)


def partition_by_day(out_dir: str | Path, tables=PARTITIONED, batch_rows: int = 100_000) -> dict:
    """Rewrite ``out_dir/<table>.parquet`` of each table as a dataset partitioned by day; return
    ``{table: number of days}``.  A table already partitioned is left as it is."""
    out_dir = Path(out_dir)
    days = {}
    for table in tables:
        path = out_dir / f"{table}.parquet"
        if not path.is_file():
            continue
        source = ds.dataset(path, format="parquet")
        tmp = out_dir / f".{table}.parquet.partitioning-{os.getpid()}"
        ds.write_dataset(_with_day(source, batch_rows), tmp, schema=source.schema.append(pa.field("day", pa.string())),
                         format="parquet", partitioning=ds.partitioning(DAY, flavor="hive"),
                         basename_template="part-{i}.parquet", max_partitions=1 << 20, max_open_files=256,
                         max_rows_per_group=batch_rows, preserve_order=True, existing_data_behavior="delete_matching")
        days[table] = sum(1 for p in tmp.iterdir() if p.name.startswith("day="))
        publish_dir(tmp, path)
    return days
