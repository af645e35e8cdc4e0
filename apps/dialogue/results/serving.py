"""Result conversations behind the OpenAI-compatible server (``context`` extension of
``POST /v1/chat/completions``).

The server is started with an allowed root (``mm dialogue serve --results-root DIR``); a request
names a result folder *under* that root::

    {"messages": [{"role": "user", "content": "where is the lesion?"}],
     "context": {"kind": "medical", "path": "studies/s01"}}        # or "context": "studies/s01"

Paths are resolved (symlinks too) and must stay inside the root: absolute paths, ``..`` and links
pointing out are refused (400), so a client can never make the server read an arbitrary folder.
The answer carries the program it ran (``program``), the machine-readable value, and pictures as
``data:image/png;base64`` URLs (``images``).  Conversations get a ``res-`` id, kept in SQLite
(context + history), so follow-ups send only the new question with ``conversation_id``.
"""
from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from .context import ResultError, load_context
from .session import ResultSession, default_parser

MAX_DEPTH = 3


class RequestError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ResultChats:
    def __init__(self, root: str | Path, db_path: str | Path, parser=None, max_sessions: int = 256) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ResultError(f"{root}: the results root is not a folder")
        self.parser = parser
        self.db_path = str(db_path)
        self._local = threading.local()
        self.lock = threading.Lock()
        self.sessions: OrderedDict[str, ResultSession] = OrderedDict()
        self.contexts: OrderedDict[str, object] = OrderedDict()
        self.max_sessions = max_sessions
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS result_conversations (id TEXT PRIMARY KEY, created REAL, "
                       "context TEXT NOT NULL, history TEXT NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
            db = self._local.db = sqlite3.connect(self.db_path, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    @staticmethod
    def owns(cid) -> bool:
        return isinstance(cid, str) and cid.startswith("res-")

    # ---------------------------------------------------------------- contexts
    def resolve(self, spec) -> tuple[Path, str | None]:
        """A ``context`` value -> (folder inside the root, kind or None); RequestError 400 otherwise."""
        kind = None
        if isinstance(spec, dict):
            kind, spec = spec.get("kind"), spec.get("path")
            if kind not in (None, "medical", "social"):
                raise RequestError(400, "context.kind must be 'medical' or 'social'")
        if not isinstance(spec, str) or not spec.strip():
            raise RequestError(400, "context must be a path (string) under the server's results root, or "
                                    "{\"kind\": ..., \"path\": ...}")
        rel = Path(spec)
        if rel.is_absolute() or ".." in rel.parts:
            raise RequestError(400, "context path must be relative to the server's results root, without '..'")
        folder = (self.root / rel).resolve()
        if folder != self.root and self.root not in folder.parents:
            raise RequestError(400, "context path leads outside the server's results root")
        if not folder.is_dir():
            raise RequestError(404, f"no result folder '{spec}' under the server's results root")
        return folder, kind

    def _context(self, folder: Path, kind: str | None):
        key = f"{folder}|{kind}"
        with self.lock:
            if key in self.contexts:
                self.contexts.move_to_end(key)
                return self.contexts[key]
        try:
            ctx = load_context(folder, kind)
        except ResultError as exc:       # name the folder relative to the root, never the server's own paths
            raise RequestError(400, str(exc).replace(str(self.root) + "/", "")) from None
        with self.lock:
            self.contexts[key] = ctx
            while len(self.contexts) > 32:
                self.contexts.popitem(last=False)
        return ctx

    def listing(self) -> list[dict]:
        """Result folders under the root, at most ``MAX_DEPTH`` levels down (for the web page's picker)."""
        out, level = [], [self.root]
        for _ in range(MAX_DEPTH + 1):
            nxt = []
            for p in level:
                if (p / "findings.json").exists():
                    out.append({"path": str(p.relative_to(self.root)), "kind": "medical"})
                elif (p / "user_analytics.parquet").exists():
                    out.append({"path": str(p.relative_to(self.root)), "kind": "social"})
                else:
                    nxt += sorted(q for q in p.iterdir() if q.is_dir() and not q.is_symlink())
            level = nxt
        return sorted(out, key=lambda d: d["path"])

    # ---------------------------------------------------------------- turns
    def _session(self, cid: str | None, spec, turns: list[tuple[str, str]]) -> tuple[str, ResultSession, list, str]:
        if cid:
            row = self._db().execute("SELECT context, history FROM result_conversations WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise RequestError(404, f"unknown conversation id '{cid}'")
            stored = json.loads(row[0])
            if spec is not None and self.resolve(spec)[0] != self.root / stored["path"]:
                raise RequestError(400, "a conversation keeps its context: start a new conversation for another result")
            history = json.loads(row[1])
            with self.lock:
                chat = self.sessions.get(cid)
                if chat is not None:
                    self.sessions.move_to_end(cid)
            if chat is None:              # evicted or after a restart: rebuild the dialogue state from the history
                chat = ResultSession(self._context(self.root / stored["path"], stored["kind"]), self.parser or default_parser())
                chat.replay([(q, a) for q, a in history])
            return cid, chat, history, stored["path"]
        if spec is None:
            raise RequestError(400, "give 'context' (a result folder under the server's results root) or a "
                                    "'conversation_id' of a result conversation")
        folder, kind = self.resolve(spec)
        ctx = self._context(folder, kind)
        chat = ResultSession(ctx, self.parser or default_parser())
        history = []
        pending = None
        for role, text in turns[:-1]:      # earlier user/assistant pairs in the request build the state
            if role == "user":
                pending = text
            elif pending is not None:
                history.append([pending, text])
                pending = None
        chat.replay([(q, a) for q, a in history])
        cid = "res-" + uuid.uuid4().hex[:16]
        rel = str(folder.relative_to(self.root))
        with self._db() as db:
            db.execute("INSERT INTO result_conversations VALUES (?, ?, ?, ?)",
                       (cid, time.time(), json.dumps({"path": rel, "kind": ctx.kind}), json.dumps(history)))
        return cid, chat, history, rel

    def complete(self, body: dict, turns: list[tuple[str, str]], question: str, model_name: str) -> dict:
        cid, chat, history, rel = self._session(body.get("conversation_id"), body.get("context"), turns)
        with self.lock:
            self.sessions[cid] = chat
            self.sessions.move_to_end(cid)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        answer = chat.ask(question)
        history = [*history, [question, answer.text]]
        with self._db() as db:
            db.execute("UPDATE result_conversations SET history = ? WHERE id = ?", (json.dumps(history), cid))
        images = []
        if answer.image_png is not None:
            images.append({"type": "image_url", "caption": answer.image_caption,
                           "image_url": {"url": "data:image/png;base64," + base64.b64encode(answer.image_png).decode()}})
        rid = "chatcmpl-" + uuid.uuid4().hex[:20]
        return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model_name,
                "conversation_id": cid, "context": {"path": rel, "kind": chat.ctx.kind},
                "program": str(answer.program), "result": answer.to_dict() | {"intent": answer.extra.get("intent"),
                                                                              "confidence": answer.extra.get("confidence")},
                "images": images,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": len(answer.text.split()), "total_tokens": 0}}
