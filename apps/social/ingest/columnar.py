"""The columnar writer of the fast ingest engine: Arrow tables in, canonical Parquet out, with the
deduplication rules of :class:`.common.CanonicalWriter` applied once, at the end, to key columns.

Every row carries ``_rec`` (a running record number over all input lines: file after file, line
after line) and ``_seq = _rec * 2**20 + position in the line``, so "the first occurrence" is the
smallest ``_seq``, exactly the order in which the streaming writer would have seen it.  Tables are
appended to hidden Parquet files one row group per block; :meth:`close` reads back only the key
columns to decide what to keep (posts/users/media: first occurrence of each ID; an owned edge:
only when its post's kept row came from the same line; an ownerless edge: first occurrence of its
whole key; a post first seen as ``referenced`` and later delivered as ``collected`` is re-marked),
then streams the row groups through that mask into the final files.  Memory is one block plus the
key columns, never the rows.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmcore.utils.io import atomic_path, atomic_write_json

from ..schema import REJECTS, TABLES
from .common import IngestStats, Reject, count_reject

POS_BITS = 20
KEYS = {"posts": "post_id", "users": "user_id", "media": "media_id"}
LOW_CARDINALITY = {"lang", "label", "source", "kind", "collection", "status", "src_type", "relation", "dst_type",
                   "verified", "default_profile", "reason", "file"}
EDGE_KEY = ["src_type", "src_id", "relation", "dst_type", "dst_id"]
# min/max statistics for times, counts and each table's own key: the columns a query filters on.
# Other strings and lists go without (no query bounds a text or a foreign ID by range; string
# statistics cost ~15 % of the Parquet write at 1M posts)
STATISTICS_STRINGS = {"post_id", "user_id", "media_id"}


def _with_statistics(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if f.name in STATISTICS_STRINGS
            or not (pa.types.is_string(f.type) or pa.types.is_list(f.type))]


def _extra(table: str) -> list[pa.Field]:
    out = [pa.field("_rec", pa.int64()), pa.field("_seq", pa.int64())]
    return out + ([pa.field("_of", pa.string())] if table == "edges" else [])


def first_occurrence(codes: np.ndarray) -> np.ndarray:
    """Where each dictionary code appears for the first time (codes numbered by first appearance)."""
    if not len(codes):
        return np.zeros(0, bool)
    prev_max = np.maximum.accumulate(np.r_[-1, codes[:-1]])
    return codes > prev_max


def _as_numbers(array: pa.Array) -> np.ndarray | None:
    """The IDs as uint64 when that is one-to-one on them (every ID 1-19 ASCII digits, no leading
    zero, none null: Twitter's numeric IDs), else None."""
    if array.type != pa.string() or array.null_count or not len(array):
        return None
    offsets = np.frombuffer(array.buffers()[1], np.int32, count=len(array) + 1, offset=4 * array.offset)
    length = np.diff(offsets)
    if length.min() < 1 or length.max() > 19:
        return None
    values = np.frombuffer(array.buffers()[2], np.uint8)[offsets[0]:offsets[-1]]
    if ((values[offsets[:-1] - offsets[0]] == 48) & (length > 1)).any():  # "07" and "7" are two IDs
        return None
    try:  # Arrow's cast reads digits only (no sign, no space): any other byte raises
        return pc.cast(array, pa.uint64()).to_numpy()
    except pa.ArrowInvalid:
        return None


def _codes(array, numbers: np.ndarray | None = None) -> np.ndarray:
    """A code per value, numbered by first appearance (equal values, equal codes); ``numbers``:
    :func:`_as_numbers` of ``array`` where the caller has it."""
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    numbers = _as_numbers(array) if numbers is None else numbers
    if numbers is None:
        return pc.dictionary_encode(array).indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # numeric IDs: a sort (near linear on IDs that grow with time) instead of hashing each string
    _, first, inverse = np.unique(numbers, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


class ColumnarWriter:
    """Same outputs and statistics as :class:`CanonicalWriter`; rows arrive as Arrow tables
    (:meth:`add_table`) or, for lines the fast path leaves to the row adapters, as row dicts
    (:meth:`add_line` after :meth:`begin_line`)."""

    def __init__(self, out_dir: str | Path, chunk_rows: int = 50_000, keep_owner: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.chunk_rows = chunk_rows
        self.keep_owner = keep_owner
        self.stats = IngestStats()
        self.schemas = {t: pa.schema(list(s) + _extra(t)) for t, s in TABLES.items()}
        self.writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}  # blocks: uncompressed Arrow IPC
        self.pending: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
        self.rows: dict[str, list[dict]] = {t: [] for t in TABLES}
        self.rejects: list[dict] = []
        self.reject_writer: pq.ParquetWriter | None = None
        self.rec = 0
        self.pos = 0
        self.rec_base = 0  # record numbers of the next file start after this one
        self.sources: dict[str, list[Path]] = {}  # block files, in input order (own, then adopted)
        self.reject_sources: list[Path] = []

    # -- input ---------------------------------------------------------------------------------
    def begin_line(self, rec: int) -> None:
        self.rec, self.pos = rec, 0

    def add_line(self, rows: list[tuple[str, dict]]) -> None:
        base = self.rec << POS_BITS
        for table, row in rows:
            row = dict(row)
            row["_rec"], row["_seq"] = self.rec, base + self.pos
            self.pos += 1
            if table != "edges":
                row.pop("_of", None)
            self.rows[table].append(row)

    def reject(self, rej: Reject, media: bool = False) -> None:
        self.rejects.append({**count_reject(self.stats, rej, media), "_seq": (self.rec << POS_BITS) + self.pos})
        self.pos += 1

    def add_table(self, table: str, data: pa.Table) -> None:
        self.pending[table].append(data.select(self.schemas[table].names).cast(self.schemas[table]))

    def end_block(self) -> None:
        """Write what the block produced, in line order (fast rows and adapter rows interleave)."""
        for table, schema in self.schemas.items():
            parts = self.pending[table]
            if self.rows[table]:
                parts.append(pa.Table.from_pylist(self.rows[table], schema=schema))
            self.pending[table], self.rows[table] = [], []
            if not parts:
                continue
            data = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
            seq = data["_seq"].to_numpy()
            if len(seq) > 1 and (np.diff(seq) < 0).any():  # the fast path writes each edge relation apart
                data = data.take(pa.array(np.argsort(seq, kind="stable")))
            if table not in self.writers:
                self.writers[table] = pa.ipc.new_file(self.out_dir / f".{table}.fast.tmp", schema)
            self.writers[table].write_table(data)
        if self.rejects:
            data = pa.Table.from_pylist(self.rejects).sort_by("_seq").drop(["_seq"]).cast(REJECTS)
            if self.reject_writer is None:
                self.reject_writer = pq.ParquetWriter(self.out_dir / ".rejects.fast.tmp", REJECTS)
            self.reject_writer.write_table(data)
            self.rejects = []

    # -- output --------------------------------------------------------------------------------
    def finish_blocks(self) -> None:
        """Close the block files without deduplicating: a partition of a parallel run, merged by
        :meth:`adopt` + :meth:`close` of another writer."""
        self.end_block()
        for w in [*self.writers.values(), *([self.reject_writer] if self.reject_writer else [])]:
            w.close()
        for table in self.writers:
            self.sources.setdefault(table, []).append(self.out_dir / f".{table}.fast.tmp")
        if self.reject_writer is not None:
            self.reject_sources.append(self.out_dir / ".rejects.fast.tmp")
        self.writers, self.reject_writer = {}, None

    def adopt(self, part_dir: str | Path, stats: dict) -> None:
        """Take the block files of a finished partition (in input order) and its counts."""
        part_dir = Path(part_dir)
        for table in TABLES:
            if (part_dir / f".{table}.fast.tmp").exists():
                self.sources.setdefault(table, []).append(part_dir / f".{table}.fast.tmp")
        if (part_dir / ".rejects.fast.tmp").exists():
            self.reject_sources.append(part_dir / ".rejects.fast.tmp")
        s = self.stats
        for key in ("lines", "rejected", "media_problems", "non_utf8_lines"):
            setattr(s, key, getattr(s, key) + stats[key])
        for key, n in stats["reasons"].items():
            s.reasons[key] = s.reasons.get(key, 0) + n
        s.file_errors += stats["file_errors"]
        s.truncated.update(stats["truncated"])

    def _batches(self, table: str):
        for path in self.sources.get(table, []):
            reader = pa.ipc.open_file(pa.memory_map(str(path)))
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)

    def _read(self, table: str, columns: list[str]) -> pa.Table:
        batches = [b.select(columns) for b in self._batches(table)]
        return pa.Table.from_batches(batches) if batches else self.schemas[table].empty_table().select(columns)

    def _keep_posts(self) -> tuple[np.ndarray, pa.Array, pa.Table, np.ndarray | None]:
        """(first occurrence of each post row, IDs re-marked ``collected``, the rows' ``post_id``/``_rec``,
        the IDs as numbers where they are numeric)."""
        t = self._read("posts", ["post_id", "collection", "_rec"])
        numbers = _as_numbers(t["post_id"].combine_chunks())
        codes = _codes(t["post_id"], numbers)
        first = first_occurrence(codes)
        collected = pc.not_equal(pc.fill_null(t["collection"], ""), "referenced").to_numpy(zero_copy_only=False)
        n_ids = int(codes.max()) + 1 if len(codes) else 0
        first_ref = np.zeros(n_ids, bool)
        first_ref[codes[first]] = ~collected[first]
        later_collected = np.bincount(codes[~first & collected], minlength=n_ids)
        promote = first_ref & (later_collected > 0)
        s = self.stats
        s.posts_collected = int((first & collected).sum() + promote.sum())
        s.posts_referenced = int((first & ~collected).sum() - promote.sum())
        s.duplicates = int(later_collected.sum() - promote.sum())
        ids = t["post_id"].combine_chunks()
        promoted = pc.filter(ids, pa.array(first & promote[codes])) if promote.any() else pa.array([], pa.string())
        return first, promoted, pa.table({"post_id": ids, "_rec": t["_rec"].combine_chunks()}), numbers

    def _keep_edges(self, first: np.ndarray, posts: pa.Table, post_num: np.ndarray | None) -> np.ndarray:
        """An owned edge is kept when the kept (first) row of its post came from the edge's line;
        an ownerless one when it is the first of its whole key."""
        t = self._read("edges", [*EDGE_KEY, "created_at", "_of", "_rec"])
        owned = pc.is_valid(t["_of"]).to_numpy(zero_copy_only=False)
        keep = np.zeros(len(owned), bool)
        edge_rec = t["_rec"].to_numpy()
        post_rec = posts["_rec"].to_numpy()
        rest = owned.copy()
        if len(post_rec) and len(edge_rec) and (np.diff(post_rec) >= 0).all():
            # Rows are in line order, so the first post row of the edge's line is found by
            # bisection; when it is the edge's post, the edge is kept iff that row is the post's
            # first occurrence (an earlier one is on an earlier line).  No hash of every post ID.
            row = np.minimum(np.searchsorted(post_rec, edge_rec), len(post_rec) - 1)
            same = owned & (post_rec[row] == edge_rec)
            hit = np.flatnonzero(same)
            owner = t["_of"].combine_chunks()
            owner_num = _as_numbers(owner) if post_num is not None and not owner.null_count else None
            if owner_num is not None:  # numeric IDs: compare numbers, no gather of 1M strings
                same[hit] = post_num[row[hit]] == owner_num[hit]
            else:
                same[hit] = pc.fill_null(pc.equal(pc.take(posts["post_id"], pa.array(row[hit])),
                                                  pc.take(owner, pa.array(hit))), False).to_numpy(zero_copy_only=False)
            keep[same] = first[row[same]]
            rest &= ~same
        if rest.any():  # any other owned edge: its post's kept row by ID
            kept = pa.array(first)
            at = np.flatnonzero(rest)
            idx = pc.index_in(pc.take(t["_of"], pa.array(at)), value_set=pc.filter(posts["post_id"], kept))
            owner_rec = pc.take(pc.filter(posts["_rec"], kept), idx)
            keep[at] = pc.fill_null(pc.equal(owner_rec, pa.array(edge_rec[at])), False).to_numpy(zero_copy_only=False)
        if (~owned).any():
            parts = [pc.fill_null(t[c], "\x00") for c in EDGE_KEY]
            parts.append(pc.fill_null(pc.cast(pc.cast(t["created_at"], pa.int64()), pa.string()), "\x00"))
            key = pc.binary_join_element_wise(*parts, "\x1f")
            codes = _codes(pc.filter(key, pa.array(~owned)))
            keep[~owned] = first_occurrence(codes)
        self.stats.duplicate_edges = int(len(keep) - keep.sum())
        return keep

    def close(self) -> IngestStats:
        self.end_block()
        self.finish_blocks()
        keep_posts, promoted, posts, post_num = self._keep_posts()
        masks = {"posts": keep_posts, "edges": self._keep_edges(keep_posts, posts, post_num)}
        for table in ("users", "media"):
            masks[table] = first_occurrence(_codes(self._read(table, [KEYS[table]])[KEYS[table]]))
        for table, schema in TABLES.items():
            out_schema = schema.append(pa.field("_of", pa.string())) if table == "edges" and self.keep_owner else schema
            self.stats.rows[table] = int(masks[table].sum())
            self._write_final(table, out_schema, masks[table], promoted if table == "posts" else None)
        with atomic_path(self.out_dir / "rejects.parquet") as tmp, pq.ParquetWriter(tmp, REJECTS) as out:
            out.write_table(REJECTS.empty_table())
            for path in self.reject_sources:
                out.write_table(pq.read_table(path))
                path.unlink()
        if self.stats.rejected or self.stats.media_problems:
            import pyarrow.csv as pacsv

            with atomic_path(self.out_dir / "rejects.csv") as tmp:
                pacsv.write_csv(pq.read_table(self.out_dir / "rejects.parquet"), tmp)
        atomic_write_json(self.out_dir / "ingest_report.json", self.stats.to_dict())
        return self.stats

    def _write_final(self, table: str, schema: pa.Schema, mask: np.ndarray, promoted) -> None:
        # dictionary pages only for the low-cardinality columns (IDs and texts are mostly distinct)
        small = [c for c in schema.names if c in LOW_CARDINALITY]
        stats = _with_statistics(schema)
        with atomic_path(self.out_dir / f"{table}.parquet") as tmp, \
                pq.ParquetWriter(tmp, schema, use_dictionary=small, write_statistics=stats) as out:
            out.write_table(schema.empty_table())
            offset = 0
            for batch in self._batches(table):
                group = pa.Table.from_batches([batch])
                sel = mask[offset:offset + group.num_rows]
                part = group if sel.all() else group.filter(pa.array(sel))  # most groups keep every row
                offset += group.num_rows
                if promoted is not None and len(promoted):
                    hit = pc.is_in(part["post_id"], value_set=promoted)
                    col = pc.if_else(hit, pa.scalar("collected"), part["collection"])
                    part = part.set_column(part.schema.get_field_index("collection"), "collection", col)
                out.write_table(part.select(schema.names).cast(schema))
        for path in self.sources.get(table, []):
            path.unlink()
