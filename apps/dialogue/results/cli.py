"""``mm dialogue chat --study DIR | --social DIR`` and ``mm dialogue results-train|results-eval``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_chat_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("--study", default=None, help="talk about a `mm medical analyze` output folder (findings.json ...)")
    c.add_argument("--social", default=None, help="talk about a `mm social analyze` report folder")
    c.add_argument("--explain", action="store_true", help="with --study/--social: print the program each answer ran")
    c.add_argument("--images-out", default="runs/dialogue/results-images",
                   help="with --study/--social: where pictures in answers are written (PNG)")
    c.add_argument("--parser", default=None, help="with --study/--social: a parser saved by `mm dialogue results-train`")
    c.add_argument("--max-tool-steps", type=int, default=4,
                   help="with --study/--social and --model (a local HF chat model): rounds of tool calls per question")


def add_serve_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--results-model", default=None,
                   help="with --results-root: a local HF chat model that answers result conversations by calling the "
                        "result functions as tools (default: our trained parser)")
    s.add_argument("--uploads-dir", default=None,
                   help="with --results-root: where uploaded results (POST /v1/results) are kept "
                        "(default: result-uploads beside --db)")
    s.add_argument("--max-upload-bytes", type=int, default=64 * 1024 * 1024, help="largest result archive accepted")


def serve_options(args: argparse.Namespace) -> dict | None:
    """The result options of ``mm dialogue serve`` (None after printing an error)."""
    options = {"uploads_dir": args.uploads_dir, "max_upload_bytes": args.max_upload_bytes, "results_llm": None}
    if args.results_model:
        if not args.results_root:
            print("error: --results-model needs --results-root", file=sys.stderr)
            return None
        from mmcore.utils.device import resolve_device

        from .llm import ChatLLM, LLMError

        try:
            options["results_llm"] = quiet_load(ChatLLM.load, args.results_model, str(resolve_device(args.device)))
        except LLMError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
        print(f"result conversations answered by {args.results_model} through tool calls")
    return options


def cmd_result_chat(args: argparse.Namespace) -> int:
    from mmcore.utils.io import atomic_write_bytes

    from ..prompt import question_lines
    from .context import ResultError, load_context
    from .session import ResultSession, default_parser

    folder, kind = (args.study, "medical") if args.study else (args.social, "social")
    try:
        ctx = load_context(folder, kind)
    except ResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "model", None):           # bring your own LLM: the result functions as tools
        from mmcore.utils.device import resolve_device

        from .llm import ChatLLM, LLMError, ToolSession

        if args.max_tool_steps < 1:
            print("error: --max-tool-steps must be at least 1", file=sys.stderr)
            return 2
        try:
            chat = ToolSession(ctx, quiet_load(ChatLLM.load, args.model, str(resolve_device(getattr(args, "device", "cpu")))),
                               args.max_tool_steps)
        except LLMError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        chat = ResultSession(ctx, default_parser(args.parser))
    out_dir, stem = Path(args.images_out), Path(folder).resolve().name
    # pictures of earlier chats about the same result stay: numbering goes on after the last one
    taken = [p.stem[len(stem) + 1:] for p in out_dir.glob(f"{stem}-*.png")] if out_dir.is_dir() else []
    n_images = max((int(t) for t in taken if t.isdigit()), default=0)
    for line in question_lines(args.question or None, f"Ask about {folder} (empty line or Ctrl-D to quit)."):
        if len(line) > 1000:
            print("(error: question over 1000 characters)")
            continue
        answer = chat.ask(line)
        print(f"you: {line}")
        print(f"bot: {answer.text}")
        if answer.image_png is not None:
            n_images += 1
            path = out_dir / f"{stem}-{n_images:03d}.png"
            atomic_write_bytes(path, answer.image_png)
            print(f"     picture: {path}")
        if args.explain and answer.extra.get("intent") == "llm":
            calls = "; ".join(f"{c['name']}({c['arguments']})" for c in answer.extra["tool_calls"]) or "none"
            print(f"     tool calls: {calls}   programs: {'; '.join(answer.extra['programs']) or 'none'}   "
                  f"(model steps {answer.extra['steps']})")
            for err in answer.extra["errors"]:
                print(f"     tool error: {err}")
        elif args.explain:
            print(f"     program: {answer.program}   (intent {answer.extra.get('intent')}, "
                  f"confidence {answer.extra.get('confidence')}, linked: {answer.extra.get('linked')!r})")
    return 0


def quiet_load(load, *args):
    """Load a Hugging Face model without its progress bars on the terminal."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return load(*args)
    finally:
        hf_logging.enable_progress_bar()


def cmd_results_train(args: argparse.Namespace) -> int:
    import time

    from .session import MODEL_DIR, NGRAM_DIR, SentenceEncoder, train_parser

    t0 = time.perf_counter()
    encoder = None if args.ngram else SentenceEncoder()
    model = train_parser(args.dialogues, args.seed, encoder=encoder)
    out = Path(args.out) if args.out else (NGRAM_DIR if args.ngram else MODEL_DIR)
    model.save(out)
    print(f"trained a {model.kind} parser ({len(model.vocab)} n-gram features, {len(model.labels)} intents) in "
          f"{time.perf_counter() - t0:.1f}s -> {out}")
    return 0


def _folders(values: list[str] | None) -> list[Path]:
    out = []
    for v in values or []:
        p = Path(v)
        out += sorted(q for q in p.iterdir() if q.is_dir()) if p.is_dir() and not _is_result(p) else [p]
    return out


def _is_result(p: Path) -> bool:
    return (p / "findings.json").exists() or (p / "user_analytics.parquet").exists()


def cmd_results_eval(args: argparse.Namespace) -> int:
    from mmcore.utils.io import atomic_write_json

    from .context import ResultError, load_context
    from .evaluate import evaluate, summary
    from .session import default_parser

    parser = default_parser(args.parser, args.threshold, None if args.no_cascade else args.fast_confidence)
    try:
        medical = [load_context(p, "medical") for p in _folders(args.medical) if (p / "findings.json").exists()]
        social = [load_context(p, "social") for p in _folders(args.social) if (p / "user_analytics.parquet").exists()]
    except ResultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not medical and not social:
        print("error: no result folders (give --medical and/or --social)", file=sys.stderr)
        return 2
    report = {"parser": parser.kind, "threshold": parser.threshold, "medical_results": len(medical),
              "social_reports": len(social)}
    for phrasing in args.phrasing.split(","):
        parts = {}
        if medical:
            parts["medical"] = evaluate(parser, medical, args.dialogues, args.rounds, phrasing, args.seed)
        if social:
            parts["social"] = evaluate(parser, social, args.social_dialogues, args.rounds, phrasing, args.seed)
        parts["all"] = _merge(parts)
        for name, rep in parts.items():
            print(f"{name:>7}: {summary(rep)}")
        report[phrasing] = parts
    if args.out:
        atomic_write_json(args.out, report)
        print(f"wrote {args.out}")
    return 0


def _merge(parts: dict) -> dict:
    """Pool the medical and social reports (weighted by rounds)."""
    reps = list(parts.values())
    n = sum(r["rounds"] for r in reps)

    def pooled(key):
        return sum(r[key] * r["rounds"] for r in reps) / max(n, 1)

    dist: dict = {}
    for r in reps:
        for k, v in r["by_distance"].items():
            acc, cnt = dist.get(k, (0.0, 0))
            dist[k] = (acc + v["accuracy"] * v["n"], cnt + v["n"])
    tp, fp, fn = (sum(r["abstention"][k] for r in reps) for k in ("tp", "fp", "fn"))
    return {"rounds": n, "results": sum(r["results"] for r in reps), "phrasing": reps[0]["phrasing"],
            "program_accuracy": pooled("program_accuracy"), "answer_accuracy": pooled("answer_accuracy"),
            "abstention": {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "positives": tp + fn,
                           "tp": tp, "fp": fp, "fn": fn},
            "by_distance": {k: {"accuracy": a / c, "n": c} for k, (a, c) in sorted(dist.items())},
            "parse_ms_median": max(r["parse_ms_median"] for r in reps)}


def cmd_results_bench(args: argparse.Namespace) -> int:
    import os
    import platform

    import torch

    from mmcore.utils.io import atomic_write_json

    from .bench import run, table
    from .context import load_context
    from .session import default_parser

    torch.set_num_threads(args.threads)
    parser = default_parser(args.parser, fast_confidence=None if args.no_cascade else args.fast_confidence)
    contexts = [load_context(p, "medical") for p in _folders(args.medical) if (p / "findings.json").exists()]
    contexts += [load_context(p, "social") for p in _folders(args.social) if (p / "user_analytics.parquet").exists()]
    if not contexts:
        print("error: no result folders (give --medical and/or --social)", file=sys.stderr)
        return 2
    rep = run(contexts, parser, args.dialogues, args.rounds, args.seed, cold=not args.warm_cache)
    rep["setup"] = {"parser": parser.kind, "threads": args.threads, "cold_encoder_cache": not args.warm_cache, "cpus": os.cpu_count(),
                    "load_1min": os.getloadavg()[0], "python": platform.python_version()}
    print(table(rep))
    print(f"parser {parser.kind}, {args.threads} torch thread(s), load average {rep['setup']['load_1min']:.1f}")
    if args.out:
        atomic_write_json(args.out, rep)
        print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    t = sub.add_parser("results-train", help="train the parser of result conversations (question -> program)")
    t.add_argument("--out", default=None, help="default: the shipped apps/dialogue/results/model (or model_ngram)")
    t.add_argument("--ngram", action="store_true", help="n-gram features only (no sentence encoder)")
    t.add_argument("--dialogues", type=int, default=1000, help="generated training dialogues (8 rounds each)")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_results_train)

    e = sub.add_parser("results-eval", help="program/answer accuracy, coreference, abstention on generated "
                                            "dialogues over result folders")
    e.add_argument("--medical", action="append", help="a medical result folder, or a folder of them (repeatable)")
    e.add_argument("--social", action="append", help="a social report folder, or a folder of them (repeatable)")
    e.add_argument("--phrasing", default="heldout,train", help="comma-separated: heldout, train, paraphrase")
    e.add_argument("--dialogues", type=int, default=10, help="dialogues per medical result")
    e.add_argument("--social-dialogues", type=int, default=60, help="dialogues per social report")
    e.add_argument("--rounds", type=int, default=8)
    e.add_argument("--threshold", type=float, default=0.2, help="abstain below this parser confidence")
    e.add_argument("--parser", default=None)
    e.add_argument("--fast-confidence", type=float, default=0.9,
                   help="the shipped n-gram parser decides at or above this confidence, the MiniLM one below it")
    e.add_argument("--no-cascade", action="store_true", help="the shipped n-gram + MiniLM parser alone")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--out", default=None, help="write the report as JSON here")
    e.set_defaults(func=cmd_results_eval)

    b = sub.add_parser("results-bench", help="latency per turn (parse + execute) of result conversations")
    b.add_argument("--medical", action="append", help="a medical result folder, or a folder of them (repeatable)")
    b.add_argument("--social", action="append", help="a social report folder, or a folder of them (repeatable)")
    b.add_argument("--dialogues", type=int, default=10, help="dialogues per result")
    b.add_argument("--rounds", type=int, default=8)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--parser", default=None)
    b.add_argument("--fast-confidence", type=float, default=0.9,
                   help="the shipped n-gram parser decides at or above this confidence, the MiniLM one below it")
    b.add_argument("--no-cascade", action="store_true", help="the shipped n-gram + MiniLM parser alone")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--warm-cache", action="store_true", help="keep the sentence embeddings of earlier questions")
    b.add_argument("--out", default=None, help="write the figures as JSON here")
    b.set_defaults(func=cmd_results_bench)
