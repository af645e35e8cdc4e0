"""The watcher's memory: a small SQLite ledger of studies (and the change-feed cursor).

One row per (study UID, model version): ``state`` is ``claimed`` (being analysed by ``owner``),
``done`` (SEG + SR stored), ``refused`` (the study cannot be analysed: not retried), or ``failed``
(a transient error: retried after ``next_try`` with exponential back-off). Claims are taken in one
``BEGIN IMMEDIATE`` transaction, so two watchers sharing a ledger file never claim the same study;
shards (:func:`in_shard`) keep watchers with separate ledgers apart. A watcher killed mid-study
leaves its claim; at start it takes back its own stale claims (same ``owner`` name) and redoes
them, and the archive side stays single because the results' UIDs are deterministic and a study
that already holds them is skipped (see ``results.py``).
"""
from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
  study_uid TEXT NOT NULL, model_version TEXT NOT NULL, state TEXT NOT NULL, owner TEXT,
  attempts INTEGER NOT NULL DEFAULT 0, runs INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0,
  last_error TEXT, result TEXT, updated REAL NOT NULL, PRIMARY KEY (study_uid, model_version));
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
BACKOFF_S, BACKOFF_MAX_S = 5.0, 600.0


def shard_of(study_uid: str, n: int) -> int:
    """A stable shard for a study: ``sha256(uid) mod n`` (same answer on every machine and run)."""
    return int.from_bytes(hashlib.sha256(study_uid.encode()).digest()[:8], "big") % n


def in_shard(study_uid: str, shard: tuple[int, int]) -> bool:
    k, n = shard
    return shard_of(study_uid, n) == k


def parse_shard(text: str) -> tuple[int, int]:
    """``"k/N"`` -> (k, N) with 0 <= k < N."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: write k/N, e.g. 0/2") from None
    if not (n >= 1 and 0 <= k < n):
        raise ValueError(f"--shard {text!r}: need 0 <= k < N")
    return k, n


class Ledger:
    def __init__(self, path: Path, owner: str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.owner = owner

    def state(self, study_uid: str, version: str) -> dict | None:
        row = self.db.execute("SELECT state, attempts, runs, next_try, last_error, owner FROM studies "
                              "WHERE study_uid=? AND model_version=?", (study_uid, version)).fetchone()
        return dict(zip(("state", "attempts", "runs", "next_try", "last_error", "owner"), row)) if row else None

    def claim(self, study_uid: str, version: str, force: bool = False) -> bool:
        """Take the study for analysis; False when it is done/refused, claimed by another owner, or backing off."""
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT state, owner, next_try FROM studies WHERE study_uid=? AND model_version=?",
                                  (study_uid, version)).fetchone()
            if row and not force:
                state, owner, next_try = row
                if state in ("done", "refused") or (state == "claimed" and owner != self.owner) \
                        or (state == "failed" and next_try > now):
                    self.db.execute("ROLLBACK")
                    return False
            self.db.execute(
                "INSERT INTO studies (study_uid, model_version, state, owner, updated) VALUES (?, ?, 'claimed', ?, ?) "
                "ON CONFLICT(study_uid, model_version) DO UPDATE SET state='claimed', owner=excluded.owner, "
                "updated=excluded.updated", (study_uid, version, self.owner, now))
            self.db.execute("COMMIT")
            return True
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def finish(self, study_uid: str, version: str, state: str, *, error: str | None = None, result: str | None = None,
               counted: bool = True) -> None:
        """Record the outcome: ``done`` / ``refused`` / ``failed`` (back-off doubles per attempt)."""
        now = time.time()
        with self.db:
            attempts = self.db.execute("SELECT attempts FROM studies WHERE study_uid=? AND model_version=?",
                                       (study_uid, version)).fetchone()[0] + 1
            delay = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** (attempts - 1)) if state == "failed" else 0.0
            self.db.execute("UPDATE studies SET state=?, attempts=?, runs=runs+?, next_try=?, last_error=?, result=?, "
                            "updated=? WHERE study_uid=? AND model_version=?",
                            (state, attempts, int(counted and state == "done"), now + delay, error, result, now,
                             study_uid, version))

    def enqueue(self, study_uid: str, version: str) -> bool:
        """Remember a study to analyse (``pending``) unless it is already known; True when new."""
        cur = self.db.execute("INSERT OR IGNORE INTO studies (study_uid, model_version, state, updated) "
                              "VALUES (?, ?, 'pending', ?)", (study_uid, version, time.time()))
        return cur.rowcount == 1

    def pending(self, version: str) -> list[str]:
        """Studies to work on now: stale claims of this owner, pending ones, failed ones whose back-off ended."""
        return [r[0] for r in self.db.execute(
            "SELECT study_uid FROM studies WHERE model_version=? AND ((state='claimed' AND owner=?) OR state='pending' "
            "OR (state='failed' AND next_try<=?)) ORDER BY updated", (version, self.owner, time.time()))]

    def stale_claims(self, version: str) -> list[str]:
        """Studies this owner claimed but never finished (the process was killed): to redo first."""
        return [r[0] for r in self.db.execute("SELECT study_uid FROM studies WHERE state='claimed' AND owner=? "
                                              "AND model_version=?", (self.owner, version))]

    def due_retries(self, version: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT study_uid FROM studies WHERE state='failed' AND model_version=? "
                                              "AND next_try<=?", (version, time.time()))]

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM studies GROUP BY state").fetchall())

    def get_cursor(self, name: str, default: str = "0") -> str:
        row = self.db.execute("SELECT value FROM cursor WHERE name=?", (name,)).fetchone()
        return row[0] if row else default

    def set_cursor(self, name: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO cursor (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                            (name, value))

    def close(self) -> None:
        self.db.close()
