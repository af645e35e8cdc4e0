"""`mm dialogue ...`: generate, train, eval, chat, serve, demo.  No heavy imports at the top."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _device(name: str) -> str:
    from mmcore.utils.device import resolve_device

    return str(resolve_device(name))


def cmd_generate(args: argparse.Namespace) -> int:
    from mmcore.train import atomic_write_text

    from .data import generate_samples
    from .scenes import save_scene

    out = Path(args.out)
    samples = generate_samples(args.mode, args.split, args.n, rounds=args.rounds)
    lines = []
    for i, s in enumerate(samples):
        name = f"{args.split}-{i:06d}"
        save_scene(s.scene, out / "scenes", name)
        lines.append(json.dumps({"image": f"scenes/{name}.png", "scene": f"scenes/{name}.json", "rounds": s.rounds}))
    atomic_write_text(out / f"{args.split}.jsonl", "\n".join(lines) + "\n")
    print(f"wrote {len(samples)} {args.mode} scenes with questions to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmcore.train import TrainConfig, config_from_args

    from .train import run_training

    base = TrainConfig(out_dir=args.out_dir, device=args.device, monitor="val_accuracy", monitor_mode="max")
    cfg = config_from_args(args, base=base)
    cfg.device = args.device
    model_config = {"text_config": {"hidden_size": args.hidden, "intermediate_size": 3 * args.hidden,
                                    "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
                                    "num_key_value_heads": args.heads}, "image_layout": args.image_layout}
    for flag in ("word_match", "relate", "relate_gate", "handoff", "tally"):
        if getattr(args, flag) is not None:
            model_config[flag] = getattr(args, flag)
    report = run_training(args.model, args.mode, cfg, args.train_images, args.val_images, args.test_images,
                          mix_own=args.mix_own, eval_every=args.eval_every, target=args.target, workers=args.workers,
                          model_config=model_config, resume=args.resume, export=args.export,
                          time_limit=args.time_limit, init_from=args.init_from,
                          init_fresh=tuple(args.fresh or ()), view="randomised" if args.augment else None)
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("test") and k != "heldout_combos"}, indent=1))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import torch
    from transformers import AutoModelForImageTextToText

    from mmcore.train import atomic_write_json

    from . import data as D
    from . import model as _registers  # noqa: F401
    from .evaluate import breakdown_table, evaluate, summary_line
    from .session import DEFAULT_MODEL, SOC_MODEL

    path = Path(args.model) if args.model else (SOC_MODEL if args.mode == "sort_of_clevr" else DEFAULT_MODEL)
    device = _device(args.device)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).to(device)
    if args.mode == "dialogue" and not args.blind:
        return _eval_suite(args, model, path, device)
    ds = D.build(args.mode, args.split, args.n, workers=args.workers, layout=model.config.image_layout)
    reports = {}
    protocols = ("true",) if args.mode == "sort_of_clevr" else ("true", "own")
    for protocol in protocols:
        rep = evaluate(model, ds, protocol=protocol, blind=args.blind, device=device)
        reports[protocol] = rep
        print(f"[{protocol} history] {summary_line(rep)}")
    print(breakdown_table(reports))
    bot = None
    if args.bot:
        from .evaluate import bot_accuracy
        from .session import load_backend

        bot = bot_accuracy(load_backend(path, str(device)), D.generate_samples(args.mode, args.split, args.bot))
        print(f"[bot, generated answers from rendered images] acc={bot['accuracy']:.4f} n={bot['n']} "
              f"family:{json.dumps(bot['family'])}")
    if args.out:
        atomic_write_json(args.out, {"model": str(path), "mode": args.mode, "split": args.split, "n_images": args.n,
                                     "blind": args.blind, "reports": reports, "bot": bot})
        print(f"wrote {args.out}")
    return 0


def _eval_suite(args: argparse.Namespace, model, path: Path, device) -> int:
    """Every column of the suite (:mod:`.shift`) with own answers, then abstention through the bot; one table."""
    from mmcore.train import atomic_write_json

    from .shift import COLUMNS, abstention_suite, run_suite, suite_table

    columns = args.columns.split(",") if args.columns else list(COLUMNS)
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        print(f"error: unknown --columns {unknown} (choose from {', '.join(COLUMNS)})", file=sys.stderr)
        return 2
    reports = run_suite(model, args.n, device, columns, workers=args.workers)
    abstention = None
    if args.abstention:
        from .session import load_backend

        abstention = abstention_suite(load_backend(path, str(device)), args.abstention)
    print(suite_table(reports, abstention))
    if args.out:
        atomic_write_json(args.out, {"model": str(path), "mode": "dialogue", "n_images": args.n, "protocol": "own",
                                     "columns": reports, "abstention": abstention})
        print(f"wrote {args.out}")
    return 0


def _open_image(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if img.width * img.height > 4096 * 4096:
                raise SystemExit(f"{path}: image is {img.width}x{img.height}; at most 4096x4096 pixels")
            return img.convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise SystemExit(f"{path}: cannot read this image ({type(exc).__name__}: {exc})") from None


def cmd_chat(args: argparse.Namespace) -> int:
    study, social = getattr(args, "study", None), getattr(args, "social", None)
    if study or social:
        from .results.cli import cmd_result_chat

        if sum(bool(x) for x in (args.image, study, social)) > 1:
            print("error: give one of --image, --study, --social", file=sys.stderr)
            return 2
        return cmd_result_chat(args)
    if not args.image:
        print("error: give --image (a picture), --study (a medical result) or --social (a social report)", file=sys.stderr)
        return 2
    from .abstain import guard
    from .prompt import question_lines
    from .session import BadInput, Session, load_backend

    image = _open_image(args.image)
    chat = Session(guard(load_backend(args.model, _device(args.device))), image)
    for line in question_lines(args.question or None,
                               "Ask about the image (empty line or Ctrl-D to quit; ':image PATH' for a new image)."):
        if line.startswith(":image "):
            try:
                chat.set_image(_open_image(line.split(" ", 1)[1]))
            except SystemExit as exc:      # a bad path is the user's slip: say so and keep the session
                print(f"(error: {exc}; still talking about the previous image)")
                continue
            print("(new image; history cleared)")
            continue
        print(f"you: {line}")
        print("bot: ", end="", flush=True)
        try:
            for piece in chat.stream(line):
                print(piece, end="", flush=True)
            print()
        except BadInput as exc:
            print(f"\n(error: {exc})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .abstain import guard
    from .batching import BatchPolicy
    from .results.cli import serve_options
    from .server import serve
    from .session import load_backend

    options = serve_options(args)          # result options first: a bad --results-model fails before loading
    if options is None:
        return 2
    backend = guard(load_backend(args.model, _device(args.device)))
    batching = None if args.no_batching else BatchPolicy(args.batch_max, args.batch_wait_ms, args.batch_queue)
    print(f"serving {backend.name} on http://{args.host}:{args.port}/  (conversations in {args.db})")
    if args.results_root:
        print(f"result conversations: folders under {args.results_root} (the 'context' request field)")
    serve(backend, args.host, args.port, args.db, args.max_body_bytes, cache_bytes=int(args.kv_cache_mb * 2**20),
          batching=batching, results_root=args.results_root, **options)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    print(json.dumps(demo(Path(args.out), args.device), indent=1))
    return 0


def demo(out_dir: Path, device: str = "auto") -> dict:
    """Answer a 10-round generated dialogue about a new scene with the shipped model; write a transcript."""
    import random
    import time

    from mmcore.train import atomic_write_text

    from .questions import make_dialogue
    from .scenes import make_scene, render, save_scene
    from .session import Session, load_backend

    t0 = time.perf_counter()
    out = Path(out_dir)
    scene = make_scene(424242, split="test")
    png, _ = save_scene(scene, out, "scene")
    from .abstain import guard

    chat = Session(guard(load_backend(None, "cpu" if device == "auto" else _device(device))), render(scene))
    rounds = make_dialogue(scene, random.Random(7), rounds=10)
    lines, correct = [f"image: {png.name}", ""], 0
    for r in rounds:
        answer = chat.ask(r["question"])
        correct += answer == r["answer"]
        mark = "ok" if answer == r["answer"] else f"WRONG (true: {r['answer']})"
        lines.append(f"user: {r['question']}\nbot:  {answer}    [{r['family']}, coref distance {r['distance']}: {mark}]")
    acc = correct / len(rounds)
    lines += ["", f"{correct}/{len(rounds)} correct with the model's own answers in the history"]
    atomic_write_text(out / "transcript.txt", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return {"accuracy": acc, "rounds": len(rounds), "seconds": round(time.perf_counter() - t0, 1)}


def register(subparsers) -> None:
    p = subparsers.add_parser("dialogue", help="vision-language dialogue bot about generated 2-D scenes")
    sub = p.add_subparsers(dest="dialogue_command", metavar="COMMAND")
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    g = sub.add_parser("generate", help="write seeded scenes (PNG + scene-graph JSON) and their dialogues")
    g.add_argument("--out", required=True)
    g.add_argument("--mode", choices=["dialogue", "sort_of_clevr"], default="dialogue")
    g.add_argument("--split", choices=["train", "val", "test", "heldout"], default="train")
    g.add_argument("--n", type=int, default=100)
    g.add_argument("--rounds", type=int, default=10)
    g.set_defaults(func=cmd_generate)

    from mmcore.train import TrainConfig, add_train_arguments  # lazy names: no torch import for `mm --help`

    t = sub.add_parser("train", help="train SceneVLM or a baseline (resumable; CUDA when there is one)")
    add_train_arguments(t, TrainConfig(out_dir="runs/dialogue", epochs=20, batch_size=64, lr=1e-3, warmup_steps=300))
    t.add_argument("--mode", choices=["dialogue", "sort_of_clevr"], default="dialogue")
    t.add_argument("--model", choices=["vlm", "blind", "nohistory", "cnn_mlp", "rn"], default="vlm")
    t.add_argument("--device", default="auto")
    t.add_argument("--train-images", type=int, default=20000)
    t.add_argument("--val-images", type=int, default=200)
    t.add_argument("--test-images", type=int, default=500)
    t.add_argument("--mix-own", type=float, default=0.2, help="share of history answers replaced by the model's own")
    t.add_argument("--eval-every", type=int, default=200, help="steps between time-to-accuracy evaluations")
    t.add_argument("--target", type=float, default=0.94, help="accuracy whose first crossing time is reported")
    t.add_argument("--workers", type=int, default=0, help="processes generating the data")
    t.add_argument("--hidden", type=int, default=128)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--word-match", action=argparse.BooleanOptionalAction, default=None,
                   help="tell the reasoner which objects the question names by colour/shape/size (default on)")
    t.add_argument("--relate", action=argparse.BooleanOptionalAction, default=None,
                   help="read the other objects relative to the one the question names: closest, furthest, left of it (default on)")
    t.add_argument("--relate-gate", action=argparse.BooleanOptionalAction, default=None,
                   help="let the question decide how much of the relate read-out reaches the answer (default on)")
    t.add_argument("--handoff", action=argparse.BooleanOptionalAction, default=None,
                   help="'the object closest to X' puts that object in focus for later 'it' (default on)")
    t.add_argument("--tally", action=argparse.BooleanOptionalAction, default=None,
                   help="count objects as a sum of per-object gates (default on)")
    t.add_argument("--init-from", default=None,
                   help="start from the weights of a saved model directory (e.g. data/dialogue/scenes); "
                        "parts the new model adds start fresh")
    t.add_argument("--fresh", action="append", metavar="PREFIX",
                   help="with --init-from: leave tensors whose names start with PREFIX at their initialisation")
    t.add_argument("--image-layout", choices=["per_turn", "first"], default="per_turn",
                   help="image tokens after every question (default) or once before the first (LLaVA)")
    t.add_argument("--time-limit", type=float, default=None, help="stop training after this many seconds")
    t.add_argument("--augment", action="store_true",
                   help="render randomisation: jittered shades, outlines, antialiasing, resize, JPEG, noise")
    t.add_argument("--export", default=None, help="also save_pretrained the model (fp16) + tokenizer here")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="dialogue: the suite table (in distribution, shifts, phrasings, follow-ups, "
                                    "abstention); Sort-of-CLEVR: accuracy by kind/family, MRR, R@k")
    e.add_argument("--model", default=None, help="model directory (default: the shipped one for --mode)")
    e.add_argument("--mode", choices=["dialogue", "sort_of_clevr"], default="dialogue")
    e.add_argument("--split", choices=["val", "test", "heldout"], default="test")
    e.add_argument("--n", type=int, default=500, help="images (Sort-of-CLEVR: 10+10 questions each)")
    e.add_argument("--blind", action="store_true", help="hide the image (answer prior check)")
    e.add_argument("--columns", default=None,
                   help="dialogue: comma-separated suite columns (default all: test, heldout_combos, the image "
                        "shifts, phrasing_heldout, followups)")
    e.add_argument("--abstention", type=int, default=30, metavar="N",
                   help="dialogue: score abstaining through the bot on N test scenes + natural photos (0 = skip)")
    e.add_argument("--bot", type=int, default=0, metavar="N",
                   help="also ask the first N images' questions through the bot (generation from the rendered image)")
    e.add_argument("--workers", type=int, default=0)
    e.add_argument("--device", default="auto")
    e.add_argument("--out", default=None, help="write the report as JSON here")
    e.set_defaults(func=cmd_eval)

    from .results.cli import add_chat_arguments
    from .results.cli import register as register_results

    c = sub.add_parser("chat", help="chat about an image, a medical result (--study) or a social report (--social)")
    c.add_argument("--image", default=None)
    c.add_argument("--model", default=None, help="a SceneVLM or any local HF image-text-to-text model directory; with "
                   "--study/--social: a local HF chat model that calls the result functions as tools")
    c.add_argument("--question", "-q", action="append", help="ask these instead of reading stdin")
    c.add_argument("--device", default="cpu")
    add_chat_arguments(c)
    c.set_defaults(func=cmd_chat)

    s = sub.add_parser("serve", help="OpenAI-compatible HTTP server with a web page")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--model", default=None)
    s.add_argument("--db", default="runs/dialogue/conversations.sqlite", help="SQLite file keeping conversations")
    s.add_argument("--max-body-bytes", type=int, default=8 * 1024 * 1024)
    s.add_argument("--device", default="cpu")
    s.add_argument("--kv-cache-mb", type=float, default=256.0,
                   help="memory for the conversations' keys/values and mention memory, LRU (0 = recompute every turn)")
    s.add_argument("--batch-max", type=int, default=16, help="turns answered together in one forward pass")
    s.add_argument("--batch-wait-ms", type=float, default=2.0,
                   help="under concurrent load, how long a batch that is not full waits for company")
    s.add_argument("--batch-queue", type=int, default=1024, help="turns allowed to wait; more get HTTP 503")
    s.add_argument("--no-batching", action="store_true", help="answer each request on its own")
    s.add_argument("--results-root", default=None,
                   help="allow result conversations about the analysis folders under this folder (and nowhere else)")
    from .results.cli import add_serve_arguments

    add_serve_arguments(s)
    s.set_defaults(func=cmd_serve)

    register_results(sub)

    d = sub.add_parser("demo", help="a short dialogue about a new scene with the shipped model")
    d.add_argument("--out", default="runs/demo/dialogue")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_demo)
