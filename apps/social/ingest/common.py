"""Shared pieces of every adapter: rejects, timestamp parsing, image checks, the streaming writer.

An adapter is a generator over one input file that yields ``(table, row)`` pairs for rows it
understood and :class:`Reject` for rows it could not use.  :class:`CanonicalWriter` buffers rows
and appends Parquet row groups every ``chunk_rows`` rows, so memory stays bounded by the chunk
size plus the sets of seen IDs (one string per post/user), however large the input is.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..schema import REJECTS, TABLES

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class Reject:
    line: int
    reason: str
    raw: str = ""
    file: str = ""


class RowError(ValueError):
    """A row cannot be used; the message is the reason written to the rejects file."""


def parse_time(value, field_name: str = "created_at") -> dt.datetime:
    """ISO-8601 strings (``Z`` or offset), epoch seconds (int/float/str), or datetimes -> aware UTC."""
    if value is None or value == "":
        raise RowError(f"missing required field '{field_name}'")
    if isinstance(value, dt.datetime):
        out = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return out.astimezone(dt.timezone.utc)
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp
        return parse_time(value.to_pydatetime(), field_name)
    if isinstance(value, bool):
        raise RowError(f"bad timestamp in '{field_name}': {value!r}")
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
            seconds = float(value)
            if not (0 <= seconds < 4.2e9):
                raise RowError(f"bad timestamp in '{field_name}': {value!r} is out of range")
            return EPOCH + dt.timedelta(seconds=seconds)
        text = str(value).strip().replace("Z", "+00:00")
        out = dt.datetime.fromisoformat(text)
    except (ValueError, OverflowError, TypeError) as exc:
        if isinstance(exc, RowError):
            raise
        raise RowError(f"bad timestamp in '{field_name}': {value!r}") from None
    if out.tzinfo is None:
        out = out.replace(tzinfo=dt.timezone.utc)
    return out.astimezone(dt.timezone.utc)


def require_str(row: dict, name: str) -> str:
    value = row.get(name)
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        raise RowError(f"missing required field '{name}'")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def opt_str(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value)


def check_image(path: Path) -> str:
    """'ok', 'missing' or 'unreadable' (decoded fully: a truncated file is caught here)."""
    if not path.is_file():
        return "missing"
    try:
        from PIL import Image

        with Image.open(path) as im:
            im.load()
        return "ok"
    except Exception:  # noqa: BLE001 - any decoder failure means unreadable
        return "unreadable"


@dataclass
class IngestStats:
    lines: int = 0
    rows: dict = field(default_factory=lambda: {t: 0 for t in TABLES})
    rejected: int = 0
    media_problems: int = 0
    duplicates: int = 0
    reasons: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "rows": dict(self.rows), "rejected": self.rejected,
                "media_problems": self.media_problems, "duplicates": self.duplicates,
                "reasons": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1]))}


class CanonicalWriter:
    """Streams canonical rows into ``out_dir/{posts,users,media,edges}.parquet`` and rejects."""

    def __init__(self, out_dir: str | Path, chunk_rows: int = 50_000) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = chunk_rows
        self.buffers: dict[str, list[dict]] = {t: [] for t in [*TABLES, "rejects"]}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.seen = {"posts": set(), "users": set(), "media": set()}
        self.stats = IngestStats()
        self._key = {"posts": "post_id", "users": "user_id", "media": "media_id"}

    def add(self, table: str, row: dict) -> bool:
        key = self._key.get(table)
        if key is not None:
            if row[key] in self.seen[table]:
                if table == "posts":
                    self.stats.duplicates += 1
                return False
            self.seen[table].add(row[key])
        self.buffers[table].append(row)
        self.stats.rows[table] += 1
        if len(self.buffers[table]) >= self.chunk_rows:
            self._flush(table)
        return True

    def reject(self, rej: Reject, media: bool = False) -> None:
        if media:
            self.stats.media_problems += 1
        else:
            self.stats.rejected += 1
        short = rej.reason.split(":")[0]
        self.stats.reasons[short] = self.stats.reasons.get(short, 0) + 1
        self.buffers["rejects"].append({"file": rej.file, "line": rej.line, "reason": rej.reason, "raw": rej.raw[:2000]})
        if len(self.buffers["rejects"]) >= self.chunk_rows:
            self._flush("rejects")

    def _flush(self, table: str) -> None:
        rows = self.buffers[table]
        schema = REJECTS if table == "rejects" else TABLES[table]
        if table not in self.writers:
            self.writers[table] = pq.ParquetWriter(self.out_dir / f".{table}.parquet.tmp", schema)
        if rows:
            self.writers[table].write_table(pa.Table.from_pylist(rows, schema=schema))
        self.buffers[table] = []

    def close(self) -> IngestStats:
        for table in self.buffers:
            self._flush(table)
            self.writers[table].close()
            (self.out_dir / f".{table}.parquet.tmp").replace(self.out_dir / f"{table}.parquet")
        if self.stats.rejected or self.stats.media_problems:
            import pyarrow.csv as pacsv

            pacsv.write_csv(pq.read_table(self.out_dir / "rejects.parquet"), self.out_dir / "rejects.csv")
        from mmcore.train import atomic_write_json

        atomic_write_json(self.out_dir / "ingest_report.json", self.stats.to_dict())
        return self.stats


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
