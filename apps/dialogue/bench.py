"""Load test: N concurrent clients chat with the server on loopback for a fixed time.

    mm bench dialogue [--clients 32] [--duration 60] [--model PATH] [--out benchmarks/results/dialogue]

Each client opens a conversation with a generated scene (image as a data: URL), then asks two
follow-ups by ``conversation_id``, again and again, alternating plain and streamed answers.
Reports turns, errors, throughput and p50/p95/p99 latency per turn; writes ``load_test.json``,
``load_test.md`` and ``load_test.png``.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

QUESTIONS = ["is there a red circle ?", "what size is the earlier circle ?", "how many objects are left of it ?"]


def _client(url: str, images: list[str], stop: float, latencies: list, errors: list, seed: int) -> None:
    import httpx

    with httpx.Client(timeout=120) as client:
        i = seed
        while time.perf_counter() < stop:
            cid = None
            for k, q in enumerate(QUESTIONS):
                content = [{"type": "text", "text": q}]
                if cid is None:
                    content.insert(0, {"type": "image_url", "image_url": {"url": images[i % len(images)]}})
                body = {"messages": [{"role": "user", "content": content}], "stream": bool((i + k) % 2)}
                if cid:
                    body["conversation_id"] = cid
                t0 = time.perf_counter()
                try:
                    r = client.post(url + "/v1/chat/completions", json=body)
                    ok = r.status_code == 200
                    if ok and not body["stream"]:
                        cid = r.json()["conversation_id"]
                    elif ok:
                        first = next(line for line in r.text.splitlines() if line.startswith("data: "))
                        cid = json.loads(first[6:])["conversation_id"]
                        ok = r.text.rstrip().endswith("data: [DONE]")
                except Exception as exc:  # noqa: BLE001 - every failure is counted
                    ok = False
                    errors.append(repr(exc))
                    break
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    break
            i += 1


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import uvicorn

    from mmcore.train import atomic_write_json, atomic_write_text

    from .scenes import make_scene, render
    from .server import create_app
    from .session import load_backend

    p = argparse.ArgumentParser(prog="mm bench dialogue")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--model", default=None)
    p.add_argument("--out", default="benchmarks/results/dialogue")
    args = p.parse_args(argv)

    images = []
    for s in range(16):
        buf = io.BytesIO()
        render(make_scene(20_000_000 + s, split="test")).save(buf, format="PNG")
        images.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
    backend = load_backend(args.model, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(backend, Path(tmp) / "c.sqlite"), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        latencies: list[float] = []
        errors: list[str] = []
        stop = time.perf_counter() + args.duration
        t0 = time.perf_counter()
        clients = [threading.Thread(target=_client, args=(f"http://127.0.0.1:{port}", images, stop, latencies, errors, i))
                   for i in range(args.clients)]
        for c in clients:
            c.start()
        for c in clients:
            c.join()
        wall = time.perf_counter() - t0
        server.should_exit = True
        thread.join(timeout=10)
    lat = np.array(latencies) * 1000
    result = {
        "clients": args.clients, "duration_s": args.duration, "wall_s": round(wall, 1), "turns": len(latencies),
        "errors": len(errors), "turns_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cpus (CPU inference)",
        "model": backend.name, "first_errors": errors[:5],
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "load_test.json", result)
    table = "| " + " | ".join(k for k in result if k != "first_errors") + " |\n|" + "---|" * (len(result) - 1) + "\n| " + \
        " | ".join(str(v) for k, v in result.items() if k != "first_errors") + " |\n"
    atomic_write_text(out / "load_test.md", "# Dialogue server load test\n\n`mm bench dialogue "
                      f"--clients {args.clients} --duration {args.duration:g}`\n\n" + table)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(lat, bins=50)
        ax.set_xlabel("latency per turn (ms)")
        ax.set_ylabel("turns")
        ax.set_title(f"{args.clients} clients, {args.duration:g}s: p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms")
        fig.tight_layout()
        fig.savefig(out / "load_test.png", dpi=100)
        plt.close(fig)
    except Exception as exc:  # noqa: BLE001 - the numbers matter more than the picture
        print(f"no plot: {exc}")
    print(table)
    return 0 if not errors else 1
