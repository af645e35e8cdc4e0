"""Serving speed of the dialogue server, with the KV cache + dynamic batching on and off, in one run.

    mm bench dialogue [--clients 32] [--duration 60] [--conversations 10] [--rounds 10]
                      [--threads 1] [--device cpu] [--model PATH] [--guard] [--only single,load]
                      [--out benchmarks/results/dialogue]

One process, one model, one uvicorn server on loopback; between phases the backend is switched
(``EmbeddedBackend.configure``) between

* ``off``: every turn recomputes the whole conversation with ``generate`` (no cache, no batching);
* ``on``:  conversation KV cache (256 MiB) + dynamic batching (``BatchPolicy()`` defaults).

Two measurements, each in both modes:

1. **single client**: ``--conversations`` dialogues of ``--rounds`` questions (generated test
   scenes and questions), one request at a time; latency per turn and per round (the modes
   alternate conversation by conversation, so load drift hits both alike);
2. **load**: ``--clients`` concurrent clients for ``--duration`` seconds each mode; each opens a
   conversation with an image and asks two follow-ups by ``conversation_id``, alternating plain and
   streamed answers (the load test of earlier versions of this benchmark).

Prints one table with the ratios (on vs off) and writes ``serving.json`` / ``serving.md``.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import random
import socket
import tempfile
import threading
import time
from pathlib import Path

QUESTIONS = ["is there a red circle ?", "what size is the earlier circle ?", "how many objects are left of it ?"]


def _data_url(image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _post(client, url: str, question: str, cid: str | None, image: str | None, stream: bool) -> tuple[bool, str | None, str]:
    """One turn; (ok, conversation id, error text)."""
    content = [{"type": "text", "text": question}]
    if image is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image}})
    body = {"messages": [{"role": "user", "content": content}], "stream": stream}
    if cid:
        body["conversation_id"] = cid
    r = client.post(url + "/v1/chat/completions", json=body)
    if r.status_code != 200:
        return False, cid, f"HTTP {r.status_code}: {r.text[:200]}"
    if not stream:
        return True, r.json()["conversation_id"], ""
    first = next(line for line in r.text.splitlines() if line.startswith("data: "))
    ok = r.text.rstrip().endswith("data: [DONE]")
    return ok, json.loads(first[6:])["conversation_id"], "" if ok else "stream did not end with [DONE]"


def _load_client(url: str, images: list[str], stop: float, latencies: list, errors: list, seed: int) -> None:
    import httpx

    with httpx.Client(timeout=120) as client:
        i = seed
        while time.perf_counter() < stop:
            cid = None
            for k, q in enumerate(QUESTIONS):
                t0 = time.perf_counter()
                try:
                    ok, cid, why = _post(client, url, q, cid, images[i % len(images)] if cid is None else None,
                                         bool((i + k) % 2))
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    errors.append(repr(exc))
                    break
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors.append(why)
                    break
            i += 1


def _stats(ms: list[float]) -> dict:
    import numpy as np

    a = np.array(ms)
    if not len(a):
        return {"n": 0}
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 1), "p95_ms": round(float(np.percentile(a, 95)), 1),
            "p99_ms": round(float(np.percentile(a, 99)), 1)}


def single_client(url: str, backend, modes: dict, conversations: int, rounds: int) -> dict:
    """Per-turn latency of one client over ``conversations`` dialogues of ``rounds`` questions."""
    import httpx
    import numpy as np

    from .questions import make_dialogue
    from .scenes import make_scene, render

    per_round = {m: [[] for _ in range(rounds)] for m in modes}
    errors = {m: [] for m in modes}
    with httpx.Client(timeout=120) as client:
        for c in range(conversations):
            scene = make_scene(21_000_000 + c, split="test")
            image = _data_url(render(scene))
            questions = [r["question"] for r in make_dialogue(scene, random.Random(c), rounds=rounds)]
            order = list(modes) if c % 2 == 0 else list(modes)[::-1]
            for mode in order:
                backend.configure(**modes[mode])
                cid = None
                for r, q in enumerate(questions):
                    t0 = time.perf_counter()
                    ok, cid, why = _post(client, url, q, cid, image if cid is None else None, False)
                    per_round[mode][r].append((time.perf_counter() - t0) * 1000)
                    if not ok:
                        errors[mode].append(why)
                        break
    out = {}
    for mode in modes:
        medians = [round(float(np.median(x)), 1) if x else None for x in per_round[mode]]
        out[mode] = {**_stats([v for x in per_round[mode] for v in x]), "median_by_round_ms": medians,
                     "turn_last_over_first": round(medians[-1] / medians[0], 2) if medians[0] and medians[-1] else None,
                     "errors": len(errors[mode]), "first_errors": errors[mode][:3]}
    return out


def load_test(url: str, backend, modes: dict, clients: int, duration: float, images: list[str]) -> dict:
    out = {}
    for mode, config in modes.items():
        backend.configure(**config)
        latencies, errors = [], []
        stop = time.perf_counter() + duration
        t0 = time.perf_counter()
        threads = [threading.Thread(target=_load_client, args=(url, images, stop, latencies, errors, i))
                   for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        batcher = getattr(backend, "batcher", None)
        engine = getattr(backend, "engine", None)
        out[mode] = {**_stats([x * 1000 for x in latencies]), "turns": len(latencies), "wall_s": round(wall, 1),
                     "turns_per_s": round(len(latencies) / wall, 2), "errors": len(errors), "first_errors": errors[:3],
                     "batches": dict(batcher.stats) if batcher is not None else None,
                     "cache": engine.cache.info() if engine is not None else None}
    return out


def _ratio(a, b):
    return round(a / b, 2) if a and b else None


def main(argv: list[str] | None = None) -> int:
    import torch
    import uvicorn

    from mmcore.train import atomic_write_json, atomic_write_text

    from .batching import BatchPolicy
    from .scenes import make_scene, render
    from .server import create_app
    from .session import DEFAULT_CACHE_BYTES, load_backend

    p = argparse.ArgumentParser(prog="mm bench dialogue")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per mode")
    p.add_argument("--conversations", type=int, default=10, help="single-client dialogues per mode")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--only", default="single,load", help="comma-separated: single, load")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default=None)
    p.add_argument("--guard", action="store_true",
                   help="serve through the abstention guard, as `mm dialogue serve` does (default: the model alone)")
    p.add_argument("--out", default="benchmarks/results/dialogue")
    args = p.parse_args(argv)
    parts = {x.strip() for x in args.only.split(",") if x.strip()}
    if not parts <= {"single", "load"}:
        p.error(f"--only takes single and/or load, got {args.only!r}")

    torch.set_num_threads(args.threads)
    backend = load_backend(args.model, args.device)
    if args.guard:
        from .abstain import guard

        backend = guard(backend)
    if not hasattr(backend, "configure"):
        p.error(f"{backend.name}: only the embedded SceneVLM has the cache and batching to compare")
    modes = {"off": {"cache_bytes": 0, "batching": None},
             "on": {"cache_bytes": DEFAULT_CACHE_BYTES, "batching": BatchPolicy()}}
    images = [_data_url(render(make_scene(20_000_000 + s, split="test"))) for s in range(16)]
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": "mm bench dialogue " + " ".join(argv or []),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                         f"load average {os.getloadavg()[0]:.1f} at start",
              "device": args.device, "torch_threads": args.threads, "model": backend.name, "guard": args.guard,
              "modes": {m: {k: (v if not isinstance(v, BatchPolicy) else vars(v)) for k, v in c.items()} for m, c in modes.items()}}
    with tempfile.TemporaryDirectory() as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(backend, Path(tmp) / "c.sqlite"), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        try:
            if "single" in parts:
                result["single"] = single_client(url, backend, modes, args.conversations, args.rounds)
            if "load" in parts:
                result["load"] = load_test(url, backend, modes, args.clients, args.duration, images)
        finally:
            backend.configure(cache_bytes=0, batching=None)
            server.should_exit = True
            thread.join(timeout=10)
    result["load_average_end"] = round(os.getloadavg()[0], 1)
    lines = [f"# Dialogue serving: KV cache + dynamic batching on vs off ({result['date']})", "",
             f"`{result['command']}`, {result['machine']}, torch threads {args.threads}, device {args.device}, "
             f"abstention guard {'on' if args.guard else 'off'}", "",
             "| measurement | off | on | on / off |", "|---|---|---|---|"]
    if "single" in result:
        s_off, s_on = result["single"]["off"], result["single"]["on"]
        for key, name in (("p50_ms", "single client p50 per turn (ms)"), ("p95_ms", "single client p95 per turn (ms)"),
                          ("turn_last_over_first", f"turn {args.rounds} / turn 1 (medians)")):
            lines.append(f"| {name} | {s_off.get(key)} | {s_on.get(key)} | {_ratio(s_on.get(key), s_off.get(key))} |")
        lines.append(f"| single client errors | {s_off['errors']} | {s_on['errors']} | |")
        for mode in ("off", "on"):
            lines.append(f"| median by round, {mode} (ms) | {' '.join(str(x) for x in result['single'][mode]['median_by_round_ms'])} | | |")
    if "load" in result:
        l_off, l_on = result["load"]["off"], result["load"]["on"]
        for key, name in (("turns_per_s", f"{args.clients} clients turns/s"), ("p50_ms", f"{args.clients} clients p50 (ms)"),
                          ("p95_ms", f"{args.clients} clients p95 (ms)"), ("errors", f"{args.clients} clients errors")):
            lines.append(f"| {name} | {l_off.get(key)} | {l_on.get(key)} | {_ratio(l_on.get(key), l_off.get(key)) if key != 'errors' else ''} |")
        if l_on.get("batches"):
            b = l_on["batches"]
            lines.append(f"| batches (on): mean size, largest | | {b['items'] / max(1, b['batches']):.1f}, {b['largest']} | |")
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "serving.json", result)
    atomic_write_text(out / "serving.md", table)
    print(table)
    errors = sum(result.get(part, {}).get(m, {}).get("errors", 0) for part in ("single", "load") for m in modes)
    return 0 if not errors else 1
