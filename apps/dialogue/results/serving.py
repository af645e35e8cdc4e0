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

Uploaded results (:mod:`.upload`): ``POST /v1/results`` with a zip/tar body stores a result under
the server's uploads folder; ``"context": {"upload": "up-..."}`` names it.

Client tools (OpenAI ``tools`` / ``tool_choice``, checked by :func:`check_tools`): the question is
parsed into a program as usual; when the program's function (``lesion.volume`` -> ``lesion_volume``)
is one of the client's tools, the answer is that tool call (``finish_reason: "tool_calls"``, the
program's arguments as JSON) for the client to run, not our own execution:

* ``"auto"`` (the default with tools): a call when the parsed function is among the client's tools,
  else our own answer;  ``"none"``: always our own answer;
* ``"required"``: a call, or 400 when the parsed function is not among the client's tools;
* ``{"type": "function", "function": {"name": N}}``: a call to N with the parsed arguments N takes;
  400 when N is not one of the result functions (we cannot fill its arguments) or lacks one it requires.

When the request ends with ``tool`` messages (the client ran the calls), the answer relays their
content (``"<function>: <content>"``): the parser-backed server does not rewrite a client's results.
A server started with a chat model (``--results-model``, :mod:`.llm`) offers the client's tools to
the model beside the result functions; a call to a client tool goes back to the client; when
``tool_choice`` requires a call the model did not make, 422.
"""
from __future__ import annotations

import base64
import json
import re
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from .context import ResultError, load_context
from .program import FUNCTIONS, Program, abstain
from .session import ResultSession, default_parser, execute
from .tools import REQUIRED

MAX_DEPTH = 3
MAX_TOOLS = 128
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OUR_TOOLS = {op.replace(".", "_"): op for op in FUNCTIONS if op != "abstain"}


class RequestError(ValueError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_tools(body: dict) -> tuple[list[dict] | None, object]:
    """``tools`` / ``tool_choice`` of a request -> (tools or None, choice), or RequestError 400 naming the field."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if body.get("parallel_tool_calls") is not None and not isinstance(body["parallel_tool_calls"], bool):
        raise RequestError(400, "'parallel_tool_calls' must be a boolean")
    if tools is None:
        if choice not in (None, "none"):
            raise RequestError(400, "'tool_choice' is only allowed when 'tools' are given")
        return None, "none"
    if not isinstance(tools, list) or not tools:
        raise RequestError(400, "'tools' must be a non-empty list of {\"type\": \"function\", \"function\": {\"name\": ...}}")
    if len(tools) > MAX_TOOLS:
        raise RequestError(400, f"'tools' holds {len(tools)} tools; at most {MAX_TOOLS}")
    names = set()
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(t.get("function"), dict):
            raise RequestError(400, f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{...}}}}")
        f = t["function"]
        name = f.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise RequestError(400, f"tools[{i}].function.name must be 1-64 letters, digits, '_' or '-'")
        if name in names:
            raise RequestError(400, f"tools[{i}].function.name '{name}' is given twice")
        names.add(name)
        if "description" in f and not isinstance(f["description"], str):
            raise RequestError(400, f"tools[{i}].function.description must be a string")
        params = f.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
            raise RequestError(400, f"tools[{i}].function.parameters must be a JSON schema object ({{\"type\": \"object\", ...}})")
    if choice is None:
        choice = "auto"
    elif isinstance(choice, dict):
        f = choice.get("function")
        if choice.get("type") != "function" or not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise RequestError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                    "{\"type\": \"function\", \"function\": {\"name\": ...}}")
        if f["name"] not in names:
            raise RequestError(400, f"'tool_choice' names '{f['name']}', which is not in 'tools'")
    elif choice not in ("none", "auto", "required"):
        raise RequestError(400, "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    return tools, choice


def trailing_tool_results(messages: list) -> list[tuple[str, str]]:
    """The (function name, content) of the ``tool`` messages that end a request (after the assistant's calls)."""
    names, out = {}, []
    for m in messages:
        for c in (m.get("tool_calls") or []) if m.get("role") == "assistant" else []:
            if isinstance(c, dict) and isinstance(c.get("function"), dict):
                names[c.get("id")] = c["function"].get("name")
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        out.append((str(m.get("name") or names.get(m.get("tool_call_id")) or "tool"), str(content or "")))
    return out[::-1]


def _delegate(program: Program, info: dict, tools: list[dict], choice) -> Program | None:
    """The program to hand to the client as a tool call, or None for our own answer (see the module doc)."""
    client = {t["function"]["name"] for t in tools}
    parsed = None if program.op == "abstain" or info.get("why") else program.op.replace(".", "_")
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        if name == parsed:
            return program
        if name not in OUR_TOOLS:
            raise RequestError(400, f"tool_choice '{name}' is not one of the result functions "
                                    f"({', '.join(sorted(OUR_TOOLS))}): this server cannot fill its arguments")
        op = OUR_TOOLS[name]
        args = {k: v for k, v in program.args if k in FUNCTIONS[op][1]} if parsed else {}
        missing = [k for k in REQUIRED.get(op, []) if k not in args]
        if missing:
            raise RequestError(400, f"tool_choice '{name}' needs {', '.join(missing)}, which the question does not give "
                                    f"(it parsed to {program})")
        return Program.make(op, **{k: list(v) if isinstance(v, tuple) else v for k, v in args.items()})
    if parsed in client:
        return program
    if choice == "required":
        raise RequestError(400, f"tool_choice 'required': the question parsed to {program}, "
                                + (f"and none of the given tools is named {parsed}" if parsed else "which no tool answers"))
    return None


def _arguments(program: Program) -> str:
    return json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in program.args})


class ResultChats:
    def __init__(self, root: str | Path, db_path: str | Path, parser=None, max_sessions: int = 256,
                 llm=None, uploads=None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ResultError(f"{root}: the results root is not a folder")
        self.parser = parser
        self.llm = llm                   # a ChatLLM (--results-model): it answers instead of the parser
        self.uploads = uploads           # an UploadStore, or None
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
        if isinstance(spec, dict) and "upload" in spec:
            if self.uploads is None:
                raise RequestError(400, "this server takes no uploads")
            from .upload import UploadError

            try:
                folder, meta = self.uploads.folder(spec["upload"])
            except UploadError as exc:
                raise RequestError(exc.status, exc.message) from None
            return folder, meta["kind"]
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
            if self.uploads is not None and self.uploads.root in folder.parents:
                from .upload import UploadError, confine

                try:
                    confine(ctx, folder)
                except UploadError as exc:
                    raise RequestError(exc.status, exc.message) from None
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
        out = sorted(out, key=lambda d: d["path"])
        if self.uploads is not None:
            out += [{"upload": m["id"], "kind": m["kind"], "name": m["name"]} for m in self.uploads.listing()]
        return out

    def delete_upload(self, uid) -> None:
        """Remove an uploaded result, and the contexts and conversations held in memory for it."""
        folder = self.resolve({"upload": uid})[0]
        self.uploads.delete(uid)
        with self.lock:
            for key in [k for k in self.contexts if k.startswith(f"{folder}|")]:
                del self.contexts[key]
            for cid in [c for c, chat in self.sessions.items() if chat.ctx.folder == folder]:
                del self.sessions[cid]

    def _where(self, folder: Path, kind: str) -> dict:
        """How the database names a context: a path under the root or an upload id."""
        if self.uploads is not None and self.uploads.root in folder.parents:
            return {"upload": folder.parent.name, "kind": kind}
        return {"path": str(folder.relative_to(self.root)), "kind": kind}

    def _folder(self, stored: dict) -> Path:
        if "upload" in stored:
            return self.resolve({"upload": stored["upload"]})[0]
        return self.root / stored["path"]

    def _new_session(self, ctx):
        if self.llm is not None:
            from .llm import ToolSession

            return ToolSession(ctx, self.llm)
        return ResultSession(ctx, self.parser or default_parser())

    # ---------------------------------------------------------------- turns
    def _session(self, cid: str | None, spec, turns: list[tuple[str, str]]) -> tuple[str, ResultSession, list, dict]:
        if cid:
            row = self._db().execute("SELECT context, history FROM result_conversations WHERE id = ?", (cid,)).fetchone()
            if row is None:
                raise RequestError(404, f"unknown conversation id '{cid}'")
            stored = json.loads(row[0])
            if spec is not None and self.resolve(spec)[0] != self._folder(stored):
                raise RequestError(400, "a conversation keeps its context: start a new conversation for another result")
            history = json.loads(row[1])
            with self.lock:
                chat = self.sessions.get(cid)
                if chat is not None:
                    self.sessions.move_to_end(cid)
            if chat is None:              # evicted or after a restart: rebuild the dialogue state from the history
                chat = self._new_session(self._context(self._folder(stored), stored["kind"]))
                chat.replay([(q, a) for q, a in history])
            return cid, chat, history, stored
        if spec is None:
            raise RequestError(400, "give 'context' (a result folder under the server's results root) or a "
                                    "'conversation_id' of a result conversation")
        folder, kind = self.resolve(spec)
        ctx = self._context(folder, kind)
        chat = self._new_session(ctx)
        history = []
        pending = None
        for role, text in turns[:-1]:      # earlier user/assistant pairs in the request build the state
            if role == "user":
                pending = text
            elif role == "assistant" and pending is not None:
                history.append([pending, text])
                pending = None
        chat.replay([(q, a) for q, a in history])
        cid = "res-" + uuid.uuid4().hex[:16]
        where = self._where(folder, ctx.kind)
        with self._db() as db:
            db.execute("INSERT INTO result_conversations VALUES (?, ?, ?, ?)",
                       (cid, time.time(), json.dumps(where), json.dumps(history)))
        return cid, chat, history, where

    def complete(self, body: dict, turns: list[tuple[str, str]], question: str | None, model_name: str) -> dict:
        """One turn.  ``question`` None: the request ends with ``tool`` messages (the client's results)."""
        tools, choice = check_tools(body)
        if question is None:                 # the last user question, before the assistant's calls
            turns = [t for t in turns if t[0] != "tool"]
            users = [i for i, t in enumerate(turns) if t[0] == "user"]
            if not users:
                raise RequestError(400, "the request ends with tool results but holds no user question")
            turns = turns[:users[-1] + 1]
            question = turns[-1][1]
            relayed = trailing_tool_results(body.get("messages") or [])
        else:
            relayed = None
        cid, chat, history, where = self._session(body.get("conversation_id"), body.get("context"), turns)
        with self.lock:
            self.sessions[cid] = chat
            self.sessions.move_to_end(cid)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        head = {"id": "chatcmpl-" + uuid.uuid4().hex[:20], "object": "chat.completion", "created": int(time.time()),
                "model": model_name, "conversation_id": cid, "context": where}
        if relayed is not None:
            text = " ".join(f"{name}: {content}" for name, content in relayed)
            replace = bool(history) and history[-1][0] == question
            if not replace:                  # a question this conversation has not seen: into the dialogue state
                chat.replay([(question, text)])
            self._save(cid, history, question, text, replace=replace)
            return head | {"program": None, "result": None, "images": [], **_choice({"content": text}, "stop", text)}
        answer = None
        if tools is not None and choice != "none":
            program, calls, answer = self._tool_turn(chat, question, tools, choice)
            if calls:
                note = "(asked the client to run " + ", ".join(f"{c['function']['name']}({c['function']['arguments']})"
                                                              for c in calls) + ")"
                self._save(cid, history, question, note)
                return head | {"program": program, "result": None, "images": [],
                               **_choice({"content": None, "tool_calls": calls}, "tool_calls", "")}
        if answer is None:
            answer = chat.ask(question)
        self._save(cid, history, question, answer.text)
        return head | self._answer_fields(answer)

    def _save(self, cid: str, history: list, question: str, text: str, replace: bool = False) -> None:
        history = [*history[:-1], [question, text]] if replace else [*history, [question, text]]
        with self._db() as db:
            db.execute("UPDATE result_conversations SET history = ? WHERE id = ?", (json.dumps(history), cid))

    def _tool_turn(self, chat, question: str, tools: list[dict], choice) -> tuple[str | None, list[dict] | None, object]:
        """(program text, OpenAI tool_calls, None) when the turn goes to the client; (None, None, our Answer)
        otherwise."""
        if self.llm is not None:
            offered = tools if not isinstance(choice, dict) else \
                [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
            answer = chat.ask(question, client_tools=offered)
            calls = answer.extra.get("client_tool_calls")
            if not calls:
                if choice != "auto":
                    raise RequestError(422, "the model did not call the tool that 'tool_choice' requires")
                return None, None, answer
            return None, [{"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                        for c in calls], None
        program, info = chat.parse(question)
        target = _delegate(program, info, tools, choice)
        if target is None:
            answer = abstain(program, info["why"]) if info.get("why") else execute(chat.ctx, program)
            answer.extra.update(info)
            chat.history.append({"question": question, "program": str(program), "answer": answer.text})
            return None, None, answer
        call = {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
                "function": {"name": target.op.replace(".", "_"), "arguments": _arguments(target)}}
        return str(target), [call], None

    @staticmethod
    def _answer_fields(answer) -> dict:
        images = []
        if answer.image_png is not None:
            images.append({"type": "image_url", "caption": answer.image_caption,
                           "image_url": {"url": "data:image/png;base64," + base64.b64encode(answer.image_png).decode()}})
        program = "; ".join(answer.extra["programs"]) if "programs" in answer.extra else str(answer.program)
        out = {"program": program, "result": answer.to_dict() | {"intent": answer.extra.get("intent"),
                                                                  "confidence": answer.extra.get("confidence")},
               "images": images, **_choice({"content": answer.text}, "stop", answer.text)}
        if "tool_calls" in answer.extra:        # the chat model's own calls (--results-model), for the record
            out["result"] |= {"tool_calls": answer.extra["tool_calls"], "tool_errors": answer.extra["errors"]}
        return out


def _choice(message: dict, finish: str, text: str) -> dict:
    return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0}}
