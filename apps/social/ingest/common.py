"""Shared pieces of every adapter: rejects, timestamp parsing, image checks, the streaming writer.

An adapter is a generator over one input file that yields ``(table, row)`` pairs for rows it
understood and :class:`Reject` for rows it could not use.  :class:`CanonicalWriter` buffers rows
and appends Parquet row groups every ``chunk_rows`` rows, so memory stays bounded by the chunk
size plus the sets of seen IDs (one string per post/user), however large the input is.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mmcore.utils.io import atomic_path, atomic_write_json, publish

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


def _type_name(value) -> str:
    return {bool: "boolean", list: "list", dict: "object", float: "number", int: "integer"}.get(type(value),
                                                                                               type(value).__name__)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip())


def id_str(value, name: str, required: bool = True, allow_int: bool = True) -> str | None:
    """An identifier (canonical type ``string``): a string, or an integer where ``allow_int``.

    Booleans, lists, objects and fractional numbers are rejected with the field's name, never
    turned into ``'True'`` or ``"['frank']"``; a float that holds an integer (CSV/pandas reading
    ``42`` as ``42.0``) is that integer."""
    if _missing(value):
        if required:
            raise RowError(f"missing required field '{name}'")
        return None
    if isinstance(value, str):
        return value
    if allow_int and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise RowError(f"bad type for '{name}': expected string, got {_type_name(value)} {value!r:.60}")


def require_str(row: dict, name: str) -> str:
    return id_str(row.get(name), name)


def text_str(value, name: str) -> str | None:
    """Free text (canonical type ``string``): strings only; blank is missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        raise RowError(f"bad type for '{name}': expected string, got {_type_name(value)} {value!r:.60}")
    return value if value.strip() else None


def opt_str(value, name: str = "value") -> str | None:
    """An optional short string field (lang, label, url, ...): strings or integers, nothing else."""
    return id_str(value, name, required=False)


def int_field(value, name: str) -> int | None:
    """Canonical ``int64``: an integer, an integral float, or a numeric string; never a boolean."""
    if _missing(value):
        return None
    if isinstance(value, bool) or isinstance(value, (list, dict)):
        raise RowError(f"bad type for '{name}': expected integer, got {_type_name(value)} {value!r:.60}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RowError(f"bad integer in '{name}': {value!r:.60}") from None
    if not number.is_integer():
        raise RowError(f"bad integer in '{name}': {value!r:.60}")
    out = int(value) if isinstance(value, int) else int(number)
    if not -(1 << 63) <= out < (1 << 63):  # the column is int64
        raise RowError(f"integer out of range in '{name}': {value!r:.60}")
    return out


def bool_field(value, name: str) -> bool | None:
    """Canonical ``bool``: a boolean, 0/1, or true/false/yes/no/t/f/y/n/1/0 as text."""
    if _missing(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "t", "y", "0", "false", "no", "f", "n"):
        return value.strip().lower() in ("1", "true", "yes", "t", "y")
    raise RowError(f"bad type for '{name}': expected boolean, got {_type_name(value)} {value!r:.60}")


def str_list(value, name: str, split=None) -> list[str]:
    """Canonical ``list<string>``: a list of strings/integers, or a delimited string (``split``)."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    if isinstance(value, str) and split is not None:
        return [v for v in split(value) if v]
    if not isinstance(value, (list, tuple)):
        raise RowError(f"bad type for '{name}': expected list, got {_type_name(value)} {value!r:.60}")
    return [id_str(v, f"{name}[{i}]") for i, v in enumerate(value)]


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
    """Counts of one ingestion; ``reasons`` is a histogram keyed by the reason (not the row).

    ``posts_collected`` / ``posts_referenced``: posts the input delivered as results vs posts only
    seen because a result cites them (Twitter ``includes.tweets``, embedded tweets).
    ``non_utf8_lines``: lines whose bytes were not valid UTF-8 (kept, decoded with U+FFFD).
    ``file_errors``: one line per input file that could not be read (missing, empty, corrupt);
    ``truncated``: file -> lines read before a compressed stream ended early (those lines are kept).
    """

    lines: int = 0
    rows: dict = field(default_factory=lambda: {t: 0 for t in TABLES})
    rejected: int = 0
    media_problems: int = 0
    duplicates: int = 0
    duplicate_edges: int = 0
    posts_collected: int = 0
    posts_referenced: int = 0
    non_utf8_lines: int = 0
    reasons: dict = field(default_factory=dict)
    file_errors: list = field(default_factory=list)
    truncated: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"lines": self.lines, "rows": dict(self.rows), "rejected": self.rejected,
                "media_problems": self.media_problems, "duplicates": self.duplicates,
                "duplicate_edges": self.duplicate_edges, "posts_collected": self.posts_collected,
                "posts_referenced": self.posts_referenced, "non_utf8_lines": self.non_utf8_lines,
                "reasons": dict(sorted(self.reasons.items(), key=lambda kv: -kv[1])),
                "file_errors": list(self.file_errors), "truncated": dict(self.truncated)}


def reason_key(reason: str) -> str:
    """The histogram key of a reject reason: its text before the first ':' (the detail follows),
    without a trailing ``[at data[3]]`` location."""
    return re.sub(r"\s*\[at [^\s]*\]$", "", reason.split(":")[0]).strip()


def _edge_key(row: dict) -> int:
    t = row.get("created_at")
    return hash((row["src_type"], row["src_id"], row["relation"], row["dst_type"], row["dst_id"],
                 t.timestamp() if t is not None else None))


def count_reject(stats: IngestStats, rej: Reject, media: bool = False) -> dict:
    """Count ``rej`` in ``stats`` (a media problem or a rejected row, and its reason) and return its
    rejects-table record (the raw line cut to 2,000 characters)."""
    if media:
        stats.media_problems += 1
    else:
        stats.rejected += 1
    key = reason_key(rej.reason)
    stats.reasons[key] = stats.reasons.get(key, 0) + 1
    return {"file": rej.file, "line": rej.line, "reason": rej.reason, "raw": rej.raw[:2000]}


class CanonicalWriter:
    """Streams canonical rows into ``out_dir/{posts,users,media,edges}.parquet`` and rejects.

    Duplicates: a post/user/media ID is written once.  An edge row may carry ``_of`` = the post
    it belongs to (the authored/reply/quote/mention/repost edges of that post): it is written
    only when that post's row is, so a duplicated line adds no edge twice.  Edges that belong to
    no post row (follows, an edges table, an anonymous repost) are deduplicated by their whole
    key (a 64-bit hash per edge).  A post first written as ``referenced`` and later delivered as
    ``collected`` is re-marked ``collected`` when the writer closes.
    """

    def __init__(self, out_dir: str | Path, chunk_rows: int = 50_000, keep_owner: bool = False) -> None:
        """``keep_owner``: write each edge's owning post as an extra ``_of`` column (partitions of a
        parallel run, so the merge can drop the edges of posts another partition already holds)."""
        self.out_dir = Path(out_dir)
        self.keep_owner = keep_owner
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = chunk_rows
        self.buffers: dict[str, list[dict]] = {t: [] for t in [*TABLES, "rejects"]}
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.seen = {"posts": set(), "users": set(), "media": set()}
        self.referenced: set = set()     # posts written as 'referenced' so far
        self.promote: set = set()        # ... and later delivered as 'collected'
        self.edge_keys: set = set()
        self.written_posts_this_line: set = set()
        self.stats = IngestStats()
        self._key = {"posts": "post_id", "users": "user_id", "media": "media_id"}

    def add_line(self, rows: list[tuple[str, dict]]) -> None:
        """Write the rows of one input line: posts first, then each edge only with its post."""
        fresh_posts = set()
        for table, row in rows:
            if table == "posts" and self.add("posts", row):
                fresh_posts.add(row["post_id"])
        for table, row in rows:
            if table == "posts":
                continue
            if table == "edges":
                owner = row.pop("_of", None)
                if self.keep_owner:
                    row["_of"] = owner
                if owner is not None:
                    if owner not in fresh_posts:
                        self.stats.duplicate_edges += 1
                        continue
                else:
                    key = _edge_key(row)
                    if key in self.edge_keys:
                        self.stats.duplicate_edges += 1
                        continue
                    self.edge_keys.add(key)
            self.add(table, row)

    def add(self, table: str, row: dict) -> bool:
        key = self._key.get(table)
        if key is not None:
            if row[key] in self.seen[table]:
                if table == "posts":
                    self._repeat_post(row)
                return False
            self.seen[table].add(row[key])
        if table == "posts":
            if row.get("collection") == "referenced":
                self.stats.posts_referenced += 1
                self.referenced.add(row["post_id"])
            else:
                self.stats.posts_collected += 1
        self.buffers[table].append(row)
        self.stats.rows[table] += 1
        if len(self.buffers[table]) >= self.chunk_rows:
            self._flush(table)
        return True

    def _repeat_post(self, row: dict) -> None:
        if row.get("collection") == "referenced":
            return  # cited again: not a duplicate of the input
        if row["post_id"] in self.referenced and row["post_id"] not in self.promote:
            self.promote.add(row["post_id"])
            self.stats.posts_referenced -= 1
            self.stats.posts_collected += 1
            return
        self.stats.duplicates += 1

    def reject(self, rej: Reject, media: bool = False) -> None:
        self.buffers["rejects"].append(count_reject(self.stats, rej, media))
        if len(self.buffers["rejects"]) >= self.chunk_rows:
            self._flush("rejects")

    def _flush(self, table: str) -> None:
        rows = self.buffers[table]
        schema = REJECTS if table == "rejects" else TABLES[table]
        if table == "edges" and self.keep_owner:
            schema = schema.append(pa.field("_of", pa.string()))
        if table not in self.writers:
            self.writers[table] = pq.ParquetWriter(self.out_dir / f".{table}.parquet.tmp", schema)
        if rows:
            self.writers[table].write_table(pa.Table.from_pylist(rows, schema=schema))
        self.buffers[table] = []

    def _promote_posts(self) -> None:
        """Re-mark posts delivered as results after being cited (streamed row group by row group)."""
        import pyarrow.compute as pc

        src = self.out_dir / ".posts.parquet.tmp"
        with atomic_path(src) as tmp:
            reader = pq.ParquetFile(src)
            with pq.ParquetWriter(tmp, TABLES["posts"]) as out:
                for i in range(reader.num_row_groups):
                    group = reader.read_row_group(i)
                    hit = pc.is_in(group["post_id"], pa.array(sorted(self.promote), pa.string()))
                    col = pc.if_else(hit, pa.scalar("collected"), group["collection"])
                    out.write_table(group.set_column(group.schema.get_field_index("collection"), "collection", col))

    def close(self) -> IngestStats:
        for table in self.buffers:
            self._flush(table)
            self.writers[table].close()
        if self.promote:
            self._promote_posts()
        for table in self.buffers:
            publish(self.out_dir / f".{table}.parquet.tmp", self.out_dir / f"{table}.parquet")
        if self.stats.rejected or self.stats.media_problems:
            import pyarrow.csv as pacsv

            with atomic_path(self.out_dir / "rejects.csv") as tmp:
                pacsv.write_csv(pq.read_table(self.out_dir / "rejects.parquet"), tmp)
        atomic_write_json(self.out_dir / "ingest_report.json", self.stats.to_dict())
        return self.stats


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str)
