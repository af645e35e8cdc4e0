"""`mm`: one command line for the suite.

    mm info                      versions, devices, threads
    mm demo                      every app's demo on embedded data, then a summary of what ran
    mm bench NAME [ARGS...]      a benchmark suite (mmcore.bench.NAME or apps.NAME.bench)
    mm dialogue|medical|social   the apps' own subcommands

Each app contributes ``apps/<app>/cli.py`` with ``register(subparsers)`` (adds its parser, whose
``func(args) -> int`` runs it) and ``demo(out_dir, device) -> dict``.  Those modules import
nothing heavy at the top so ``mm --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

APPS = ("dialogue", "medical", "social")


def _app_cli(app: str):
    """The app's cli module, or the exception that stopped it importing."""
    try:
        return importlib.import_module(f"apps.{app}.cli")
    except ModuleNotFoundError as exc:
        if exc.name in (f"apps.{app}.cli", f"apps.{app}", "apps"):
            return None
        return exc
    except Exception as exc:  # noqa: BLE001 - report, keep the other apps usable
        return exc


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__

    lines = [
        ("mmcore", __version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
    ]
    for mod in ("monai", "torch_geometric", "transformers", "torchmetrics", "networkx", "pandas", "nibabel",
                "safetensors", "SimpleITK", "highdicom", "pydicom", "fastapi"):
        try:
            m = importlib.import_module(mod)
            lines.append((mod, getattr(m, "__version__", getattr(m, "Version", lambda: "?")) if not callable(
                getattr(m, "__version__", None)) else m.__version__()))
        except Exception:  # noqa: BLE001
            lines.append((mod, "not installed"))
    cuda = torch.cuda.is_available()
    lines.append(("cuda", f"{torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}" if cuda else "not available"))
    from .utils.device import resolve_device

    lines.append(("device (auto)", str(resolve_device(args.device))))
    lines.append(("torch threads", str(torch.get_num_threads())))
    lines.append(("cpu count", str(os.cpu_count())))
    lines.append(("bf16 autocast", "yes"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    wanted = [s.strip() for s in args.only.split(",")] if args.only else ["core", *APPS]
    ran: list[tuple[str, str, float, str]] = []
    for name in wanted:
        t0 = time.perf_counter()
        print(f"\n=== demo: {name} ===", flush=True)
        try:
            if name == "core":
                from .demo import run

                report = run(out / "core", device=args.device)
            else:
                module = _app_cli(name)
                if module is None or isinstance(module, Exception) or not hasattr(module, "demo"):
                    why = f"import failed: {module}" if isinstance(module, Exception) else "no demo yet"
                    ran.append((name, "skipped", 0.0, why))
                    print(f"[mm] {name}: skipped ({why})")
                    continue
                report = module.demo(out / name, args.device)
            summary = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in (report or {}).items())
            ran.append((name, "ok", time.perf_counter() - t0, summary))
        except Exception as exc:  # noqa: BLE001 - one broken demo must not hide the others
            traceback.print_exc()
            ran.append((name, "FAILED", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
    print("\n=== mm demo summary ===")
    for name, status, secs, detail in ran:
        print(f"{name:<9} {status:<8} {secs:7.1f}s  {detail}")
    print(f"outputs under {out.resolve()}")
    return 1 if any(status == "FAILED" for _, status, _, _ in ran) else 0


def cmd_bench(args: argparse.Namespace) -> int:
    candidates = [f"mmcore.bench.{args.name}", f"apps.{args.name}.bench"]
    for modname in candidates:
        if importlib.util.find_spec(modname.rsplit(".", 1)[0]) is None:
            continue
        if importlib.util.find_spec(modname) is not None:
            module = importlib.import_module(modname)
            return int(module.main(args.args) or 0)
    available = []
    bench_dir = Path(__file__).parent / "bench"
    available += [p.stem for p in bench_dir.glob("*.py") if not p.stem.startswith("_")]
    available += [a for a in APPS if importlib.util.find_spec(f"apps.{a}") and importlib.util.find_spec(f"apps.{a}.bench")]
    print(f"mm bench: no suite '{args.name}'. Available: {', '.join(sorted(available)) or 'none'}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mm", description="mmcore: multimodal fusion suite and its apps",
        epilog="--verbose / --quiet (anywhere on the line, repeatable) set how much progress is logged to stderr.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="versions, devices, threads")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="run every app's demo on embedded data")
    p.add_argument("--out", default="runs/demo", help="where the demos write their outputs")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--only", default="", help="comma-separated subset: core,dialogue,medical,social")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="run a benchmark suite and print its table")
    p.add_argument("name", help="suite name, e.g. fusion, represent, missing, medical, social, dialogue")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the suite")
    p.set_defaults(func=cmd_bench)

    for app in APPS:
        module = _app_cli(app)
        if module is not None and not isinstance(module, Exception) and hasattr(module, "register"):
            module.register(sub)
        else:
            why = f"could not load: {module}" if isinstance(module, Exception) else "not built yet"
            p = sub.add_parser(app, help=f"the {app} app ({why})")
            p.set_defaults(func=lambda a, app=app, why=why: (print(f"mm {app}: {why}", file=sys.stderr), 2)[1])
    return parser


def _take_verbosity(argv: list[str]) -> tuple[list[str], int]:
    """Remove ``--verbose``/``--quiet`` wherever they stand (before ``--``); return the rest and the level.

    They are accepted anywhere so that ``mm medical analyze ... --verbose`` works without every app
    parser declaring them; each ``--verbose`` adds one, each ``--quiet`` subtracts one.
    """
    rest, verbosity, passthrough = [], 0, False
    for token in argv:
        if not passthrough and token == "--verbose":
            verbosity += 1
        elif not passthrough and token == "--quiet":
            verbosity -= 1
        else:
            passthrough = passthrough or token == "--"
            rest.append(token)
    return rest, verbosity


def main(argv: list[str] | None = None) -> int:
    from .utils.log import setup_logging

    argv, verbosity = _take_verbosity(list(sys.argv[1:] if argv is None else argv))
    setup_logging(verbosity)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
