"""HTTP server: an OpenAI-compatible chat endpoint, conversations kept in SQLite, and a web page.

==========================  ==========================================================
route                       what
==========================  ==========================================================
``GET /``                   the chat page (upload an image, ask, read the answers)
``GET /health``             ``{"status": "ok", "model": ...}``
``GET /v1/models``          the one model served, OpenAI list format
``POST /v1/chat/completions``  OpenAI chat completions; images as ``image_url`` parts with
                            ``data:`` URLs (base64); ``stream: true`` answers as server-sent
                            events.  Extension: ``conversation_id`` continues a stored
                            conversation (send only the new user message); every answer
                            returns its ``conversation_id``.
``GET /v1/conversations/{id}``  a stored conversation's history
``GET /v1/results``         with ``results_root``: the result folders a ``context`` may name
``POST /v1/results``        upload a result (zip/tar body; ``?name=``) -> ``{"id": "up-..."}``
``DELETE /v1/results/{id}``  remove an uploaded result
==========================  ==========================================================

Extension ``context`` (servers started with ``results_root``, :mod:`.results.serving`): a result
folder under that root (a ``mm medical analyze`` or ``mm social analyze`` output); the question is
parsed into a program, run over the result's files, and the response carries ``program``,
``result`` (value, unit, abstained) and ``images`` (PNG data URLs).  Paths outside the root -> 400.
``{"upload": "up-..."}`` names an uploaded result; ``tools``/``tool_choice`` follow OpenAI's
semantics there (see :mod:`.results.serving` for what the parser-backed server calls).

Bad input never reaches the model as an exception: malformed JSON, bad base64, non-image or
corrupt uploads, empty or over-long questions -> 400; unknown conversation ids -> 404;
bodies over ``max_body_bytes`` or images over ``max_pixels`` (decompression bombs) -> 413;
more turns waiting for the model than the batch policy's ``max_queue`` -> 503.

Speed (``serve``): the embedded backend keeps each conversation's keys/values and mention memory
(:mod:`.kv_cache`, ``cache_bytes``) and answers the turns of concurrent requests in one forward
pass (:mod:`.batching`); each request still streams its own answer.  Requests run in the thread
pool, so concurrent ones meet in the backend's batcher.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import sqlite3
import threading
import time
import uuid
import warnings
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from .batching import Overloaded
from .prompt import MAX_QUESTION_CHARS, BadInput, check_question

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
PAGE = Path(__file__).with_name("web.html")


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# ----------------------------------------------------------------------------- storage
class ConversationStore:
    """Conversations by id in SQLite (image as PNG bytes, history as JSON): they survive restarts.

    Write-ahead log with ``synchronous=NORMAL`` and one connection per thread: a turn's commit
    does not wait for an fsync (measured here: ~40 ms per update with the default rollback journal
    on a busy disk, ~0.05 ms in WAL).  The database stays consistent through crashes; a power cut
    can lose the last turns' commits.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, created REAL, "
                       "image BLOB, history TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=30)
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def create(self, image_png: bytes | None) -> str:
        cid = "conv-" + uuid.uuid4().hex[:16]
        with self._connect() as db:
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (cid, time.time(), image_png, "[]"))
        return cid

    def get(self, cid: str) -> tuple[bytes | None, list[list[str]]]:
        with self._connect() as db:
            row = db.execute("SELECT image, history FROM conversations WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise HTTPError(404, f"unknown conversation id '{cid}'")
        return row[0], json.loads(row[1])

    def update(self, cid: str, image_png: bytes | None, history: list) -> None:
        with self._connect() as db:
            db.execute("UPDATE conversations SET image = ?, history = ? WHERE id = ?", (image_png, json.dumps(history), cid))

    def update_history(self, cid: str, history: list) -> None:
        """The history only (the stored image is unchanged: no PNG to encode again)."""
        with self._connect() as db:
            db.execute("UPDATE conversations SET history = ? WHERE id = ?", (json.dumps(history), cid))


# ----------------------------------------------------------------------------- parsing
def decode_image(url: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """A ``data:image/...;base64,`` URL (or bare base64) -> RGB image, or HTTPError 400/413."""
    if not isinstance(url, str) or not url:
        raise HTTPError(400, "image_url.url must be a non-empty string")
    if url.startswith("http://") or url.startswith("https://"):
        raise HTTPError(400, "remote image URLs are not fetched; send the image inline as a data: URL")
    payload = url.split(",", 1)[1] if url.startswith("data:") and "," in url else url
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPError(400, "image_url is not valid base64") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(raw))
            w, h = img.size
            if w * h > max_pixels:
                raise HTTPError(413, f"image is {w}x{h} pixels; at most {max_pixels} pixels are accepted")
            img.load()
            return img.convert("RGB")
    except HTTPError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise HTTPError(413, "image is too large (decompression bomb guard)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise HTTPError(400, f"image_url does not hold a readable image ({type(exc).__name__})") from None


def parse_messages(messages, allow_tool: bool = False) -> tuple[list[tuple[str, str | None]], Image.Image | None]:
    """OpenAI messages -> [(role, text)], the last image. System messages are ignored; ``tool``
    messages (results of a client's tool calls) only with ``allow_tool``, and may then end the list."""
    if not isinstance(messages, list) or not messages:
        raise HTTPError(400, "'messages' must be a non-empty list")
    turns, image = [], None
    for i, m in enumerate(messages):
        if isinstance(m, dict) and m.get("role") == "tool" and not allow_tool:
            raise HTTPError(400, f"messages[{i}]: tool messages belong to result conversations ('context')")
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool"):
            raise HTTPError(400, f"messages[{i}] must be an object with role system, user, assistant or tool")
        content = m.get("content")
        texts = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "image_url":
                    spec = part.get("image_url")
                    image = decode_image(spec.get("url") if isinstance(spec, dict) else spec)
                else:
                    raise HTTPError(400, f"messages[{i}].content[{j}] must be a text or image_url part")
        elif content is not None:
            raise HTTPError(400, f"messages[{i}].content must be a string or a list of parts")
        if m["role"] != "system":
            turns.append((m["role"], " ".join(texts)))
    if not turns:
        raise HTTPError(400, "'messages' holds no user message (system messages alone ask nothing)")
    if turns[-1][0] != "user" and not (allow_tool and turns[-1][0] == "tool"):
        raise HTTPError(400, "the last message must come from the user" + (" (or be tool results)" if allow_tool else ""))
    return turns, image


def _png(image: Image.Image | None) -> bytes | None:
    if image is None:
        return None
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- app
def create_app(backend, db_path: str | Path, max_body_bytes: int = MAX_BODY_BYTES, max_pixels: int = MAX_PIXELS,
               results_root: str | Path | None = None, results_llm=None, uploads_dir: str | Path | None = None,
               max_upload_bytes: int | None = None):
    """``results_llm``: a :class:`.results.llm.ChatLLM` answering result conversations instead of the
    parser; ``uploads_dir``: where uploaded results are kept (default: ``result-uploads`` beside the
    database; uploads need ``results_root``)."""
    app = FastAPI(title="mmcore dialogue", version="1")
    store = ConversationStore(db_path)
    results = None
    if results_root is not None:
        from .results.serving import ResultChats
        from .results.upload import MAX_BYTES, UploadStore

        uploads = UploadStore(uploads_dir or Path(db_path).parent / "result-uploads", max_upload_bytes or MAX_BYTES)
        results = ResultChats(results_root, db_path, llm=results_llm, uploads=uploads)
    upload_cap = results.uploads.max_bytes if results is not None else max_body_bytes

    def error(status: int, message: str) -> JSONResponse:
        kind = {400: "invalid_request_error", 404: "not_found_error", 413: "request_too_large",
                422: "invalid_request_error", 503: "overloaded_error", 507: "insufficient_storage"}.get(status, "server_error")
        return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status_code=status)

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        return error(exc.status, exc.message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):  # the server keeps serving whatever happens
        return error(500, f"internal error: {type(exc).__name__}")

    @app.middleware("http")
    async def _cap_body(request: Request, call_next):
        length = request.headers.get("content-length")
        cap = upload_cap if request.method == "POST" and request.url.path == "/v1/results" else max_body_bytes
        if length is not None and (not length.isdigit() or int(length) > cap):
            return error(413, f"request body over {cap} bytes")
        return await call_next(request)

    async def read_body(request: Request, cap: int) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise HTTPError(413, f"request body over {cap} bytes")
        return bytes(body)

    async def read_json(request: Request) -> dict:
        body = await read_body(request, max_body_bytes)
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HTTPError(400, "request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "request body must be a JSON object")
        return data

    @app.get("/", response_class=HTMLResponse)
    def page():
        return PAGE.read_text()

    @app.get("/health")
    def health():
        return {"status": "ok", "model": backend.name}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": backend.name, "object": "model", "created": 0, "owned_by": "mmcore"}]}

    @app.get("/v1/results")
    def result_folders():
        if results is None:
            raise HTTPError(404, "this server has no results root (start it with --results-root DIR)")
        return {"object": "list", "data": results.listing()}

    @app.post("/v1/results", status_code=201)
    async def upload_result(request: Request):
        from .results.upload import UploadError

        if results is None:
            raise HTTPError(404, "this server has no results root (start it with --results-root DIR)")
        data = await read_body(request, upload_cap)
        try:
            meta = await run_in_threadpool(results.uploads.add, data, request.query_params.get("name"))
        except UploadError as exc:
            raise HTTPError(exc.status, exc.message) from None
        return JSONResponse(meta | {"object": "result", "context": {"upload": meta["id"]}}, status_code=201)

    @app.delete("/v1/results/{uid}")
    def delete_result(uid: str):
        from .results.serving import RequestError

        if results is None:
            raise HTTPError(404, "this server has no results root (start it with --results-root DIR)")
        try:
            results.delete_upload(uid)
        except RequestError as exc:
            raise HTTPError(exc.status, exc.message) from None
        return {"id": uid, "object": "result", "deleted": True}

    async def result_turn(body: dict, stream: bool):
        """A turn of a result conversation (``context`` / a ``res-`` conversation id)."""
        from .results.serving import RequestError

        turns, _ = await run_in_threadpool(parse_messages, body.get("messages"), True)
        try:
            question = None if turns[-1][0] == "tool" else check_question(turns[-1][1])
        except BadInput as exc:
            raise HTTPError(400, str(exc)) from None
        try:
            out = await run_in_threadpool(results.complete, body, turns, question, backend.name)
        except RequestError as exc:
            raise HTTPError(exc.status, exc.message) from None
        if not stream:
            return out
        head = {k: out[k] for k in ("id", "created", "model", "conversation_id")}
        message, finish_reason = out["choices"][0]["message"], out["choices"][0]["finish_reason"]
        body_delta = ({"tool_calls": [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]}
                      if message.get("tool_calls") else {"content": message["content"]})

        def events():
            for delta, finish, extra in (({"role": "assistant"}, None, {}),
                                         (body_delta, None, {}),
                                         ({}, finish_reason, {k: out[k] for k in ("program", "result", "images", "context")})):
                yield "data: " + json.dumps({**head, "object": "chat.completion.chunk", **extra,
                                             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Conversation-Id": out["conversation_id"]})

    @app.get("/v1/conversations/{cid}")
    def conversation(cid: str):
        image, history = store.get(cid)
        return {"id": cid, "has_image": image is not None, "history": history}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_json(request)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise HTTPError(400, f"'stream' must be a JSON boolean (true or false), got {json.dumps(stream)}")
        if body.get("context") is not None or str(body.get("conversation_id") or "").startswith("res-"):
            if results is None:
                raise HTTPError(400, "this server has no results root: start it with --results-root DIR to talk about "
                                     "results")
            return await result_turn(body, stream)
        from .results.serving import RequestError, check_tools

        try:
            _, tool_choice = check_tools(body)
        except RequestError as exc:
            raise HTTPError(exc.status, exc.message) from None
        if tool_choice not in ("none", "auto"):
            raise HTTPError(400, "this model calls tools only in result conversations ('context'): "
                                 "'tool_choice' must be \"none\" or \"auto\" here")
        turns, image = await run_in_threadpool(parse_messages, body.get("messages"))
        cid = body.get("conversation_id")
        if cid is not None and not isinstance(cid, str):
            raise HTTPError(400, "conversation_id must be a string")
        new_image = image is not None
        if cid:
            stored_png, stored = await run_in_threadpool(store.get, cid)
            # a new image starts a new scene context (as the CLI's :image does): the old rounds were about another picture
            history = [tuple(x) for x in stored] if image is None else []
            if image is None and stored_png is not None:
                image = await run_in_threadpool(lambda: Image.open(io.BytesIO(stored_png)).convert("RGB"))
            new_turns = turns
        else:
            history, new_turns = [], turns
        # earlier user/assistant pairs in the request extend the history; the last user turn is the question
        pending = None
        for role, text in new_turns[:-1]:
            if role == "user":
                pending = text
            elif pending is not None:
                history.append((pending, text))
                pending = None
        try:
            question = check_question(new_turns[-1][1])
        except BadInput as exc:
            raise HTTPError(400, str(exc)) from None
        if image is None and backend.needs_image:
            raise HTTPError(400, "this model answers questions about an image: add an image_url part")
        if not cid:
            cid = await run_in_threadpool(store.create, _png(image))
            new_image = False
        created, rid = int(time.time()), "chatcmpl-" + uuid.uuid4().hex[:20]

        def answer_pieces():
            try:
                yield from backend.stream(image, history, question)
            except BadInput as exc:
                raise HTTPError(400, str(exc)) from None
            except Overloaded as exc:
                raise HTTPError(503, str(exc)) from None

        def save(answer: str) -> None:
            rounds = [*map(list, history), [question, answer]]
            if new_image:
                store.update(cid, _png(image), rounds)
            else:
                store.update_history(cid, rounds)

        def chunk(delta: dict, finish: str | None = None) -> str:
            return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "created": created,
                                          "model": backend.name, "conversation_id": cid,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

        if not stream:
            answer = "".join(await run_in_threadpool(lambda: list(answer_pieces()))).strip()
            await run_in_threadpool(save, answer)
            return {"id": rid, "object": "chat.completion", "created": created, "model": backend.name,
                    "conversation_id": cid,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": len(answer.split()), "total_tokens": 0}}

        pieces = answer_pieces()
        first = await run_in_threadpool(next, pieces, None)  # errors surface here, before the 200 goes out

        def events():
            parts = [] if first is None else [first]
            yield chunk({"role": "assistant"})
            if first is not None:
                yield chunk({"content": first})
            for piece in pieces:
                parts.append(piece)
                yield chunk({"content": piece})
            save("".join(parts).strip())
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(iterate_in_threadpool(events()), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Conversation-Id": cid})

    app.state.store = store
    app.state.results = results
    app.state.limits = {"max_body_bytes": max_body_bytes, "max_pixels": max_pixels, "max_question_chars": MAX_QUESTION_CHARS}
    return app


def serve(backend, host: str = "127.0.0.1", port: int = 8000, db_path: str | Path = "runs/dialogue/conversations.sqlite",
          max_body_bytes: int = MAX_BODY_BYTES, cache_bytes: int | None = None, batching=None,
          results_root: str | Path | None = None, results_llm=None, uploads_dir: str | Path | None = None,
          max_upload_bytes: int | None = None) -> None:
    """Serve ``backend``; for the embedded model, ``cache_bytes`` (0 = off, None = the backend's
    default) and ``batching`` (a :class:`~.batching.BatchPolicy`, None = off) set its speed-ups."""
    import uvicorn

    if hasattr(backend, "configure"):
        kwargs = {} if cache_bytes is None else {"cache_bytes": cache_bytes}
        backend.configure(batching=batching, **kwargs)
    uvicorn.run(create_app(backend, db_path, max_body_bytes, results_root=results_root, results_llm=results_llm,
                           uploads_dir=uploads_dir, max_upload_bytes=max_upload_bytes), host=host, port=port,
                log_level="warning")
