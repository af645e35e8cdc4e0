"""`mm medical pacs analyze | watch | listen` (heavy imports inside the commands)."""
from __future__ import annotations

import argparse
import json
import logging
import socket
from pathlib import Path

log = logging.getLogger(__name__)


def _worker(args, warm_up: bool = False):
    """The warm model and a Worker around it (bundle, device, threads, registration from the flags)."""
    import torch

    from ..analyze import load_model
    from ..bundle import DEFAULT_BUNDLE
    from ..train_args import device_from_arg
    from .worker import Worker

    torch.set_num_threads(max(1, args.threads))
    bundle = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    model = load_model(bundle, device_from_arg(args.device))
    worker = Worker(model, bundle, Path(args.out), register=not args.no_register)
    if warm_up:           # a long-lived process: pay the first study's one-off costs now
        worker.warm_up()
    return worker


def _archive(url: str):
    from .archive import Archive
    from .credentials import CredentialError

    try:
        return Archive(url)
    except CredentialError as exc:
        raise SystemExit(f"mm medical pacs: {exc}") from None


def _query(text: str) -> dict:
    """``PatientID=x,StudyDate=20240101-`` -> QIDO filters."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise SystemExit(f"--query {text!r}: write KEY=VALUE pairs separated by commas (e.g. PatientID=123,StudyDate=20240101-)")
        out[key.strip()] = value.strip()
    return out


def cmd_analyze(args: argparse.Namespace) -> int:
    from .archive import ArchiveError

    archive = _archive(args.url)
    try:
        uids = [args.study] if args.study else [r["study_uid"] for r in archive.find_studies(_query(args.query))]
    except ArchiveError as exc:
        print(f"mm medical pacs analyze: {exc}")
        return 2
    if not uids:
        print(f"mm medical pacs analyze: no study on {archive.name} matches {args.study or args.query}")
        return 1
    worker = _worker(args)
    outcomes = []
    for uid in uids:
        out = worker.process(archive, uid, force=args.force)
        outcomes.append(out)
        print(f"{uid}: {out['outcome']}: {out['message']} ({out['seconds']:.1f} s)")
    bad = [o for o in outcomes if o["outcome"] in ("failed", "refused")]
    return 0 if not bad else (2 if len(bad) == len(outcomes) else 1)


def cmd_watch(args: argparse.Namespace) -> int:
    from .ledger import Ledger, parse_shard
    from .watch import Watcher

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise SystemExit(f"mm medical pacs watch: {exc}") from None
    archive = _archive(args.url)
    worker = _worker(args, warm_up=not args.once)
    owner = args.owner or f"{socket.gethostname()}:shard{shard[0]}of{shard[1]}"
    ledger = Ledger(Path(args.ledger or Path(args.out) / "ledger.sqlite"), owner)
    watcher = Watcher(archive, worker, ledger, shard=shard, feed=args.feed, interval=args.interval,
                      lookback_days=args.lookback_days)
    rc = watcher.run(once=args.once, max_cycles=args.max_cycles)
    print(json.dumps({"outcomes": {k: sum(o["outcome"] == k for o in watcher.log) for k in ("done", "skipped", "refused", "failed")},
                      "ledger": ledger.counts()}))
    return rc


def cmd_listen(args: argparse.Namespace) -> int:
    from .listen import DimseSink, Listener

    if bool(args.to_url) == bool(args.to_dimse):
        raise SystemExit("mm medical pacs listen: give exactly one destination: --to-url DICOMWEB_URL or --to-dimse AET@HOST:PORT")
    try:
        sink = _archive(args.to_url) if args.to_url else DimseSink(args.to_dimse, args.aet)
    except ValueError as exc:
        raise SystemExit(f"mm medical pacs listen: {exc}") from None
    worker = _worker(args, warm_up=True)
    listener = Listener(worker, sink, Path(args.out) / "inbox", host=args.host, port=args.port, aet=args.aet, idle=args.idle)
    listener.serve()
    return 0


def register(sub) -> None:
    """Add ``pacs`` with its three commands to ``mm medical``'s sub-parsers."""
    from ..train_args import add_device_argument

    p = sub.add_parser("pacs", help="PACS in and out: DICOMweb analyze/watch, DIMSE listener; SEG + SR pushed back")
    cmds = p.add_subparsers(dest="pacs_cmd", required=True)

    def common(c, out: str) -> None:
        c.add_argument("--out", default=out, help="local copies of findings/SEG/SR per study (and the ledger)")
        c.add_argument("--bundle", default=None, help="model bundle (default: the shipped data/medical/model)")
        c.add_argument("--no-register", action="store_true", help="header-only alignment (no MI registration)")
        c.add_argument("--threads", type=int, default=1)
        add_device_argument(c)

    creds = ("credentials: MM_PACS_TOKEN, or MM_PACS_USER + MM_PACS_PASSWORD, or a netrc file (MM_PACS_NETRC, "
             "default ~/.netrc); never on the command line")
    a = cmds.add_parser("analyze", help="analyse studies found by UID or QIDO query; push SEG + SR", epilog=creds)
    a.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--study", help="StudyInstanceUID")
    g.add_argument("--query", help="QIDO filters, e.g. PatientID=123,StudyDate=20240101-")
    a.add_argument("--force", action="store_true", help="re-run even when our SEG + SR of this model version exist")
    common(a, "runs/pacs")
    a.set_defaults(func=cmd_analyze)

    w = cmds.add_parser("watch", help="poll the archive; analyse each new stable study once (warm model)", epilog=creds)
    w.add_argument("--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    w.add_argument("--interval", type=float, default=10.0, help="seconds between polls (default 10)")
    w.add_argument("--shard", default="0/1", help="k/N: analyse only studies with sha256(StudyInstanceUID) mod N == k")
    w.add_argument("--feed", default="auto", choices=["auto", "orthanc", "qido"],
                   help="Orthanc's /changes (StableStudy) or QIDO by StudyDate; auto probes /changes")
    w.add_argument("--lookback-days", type=int, default=1, help="qido feed: StudyDate window")
    w.add_argument("--ledger", default=None, help="SQLite ledger (default OUT/ledger.sqlite)")
    w.add_argument("--owner", default=None, help="this watcher's name in the ledger (default host:shard)")
    w.add_argument("--once", action="store_true", help="one poll, then exit (exit 1 if the archive could not be reached)")
    w.add_argument("--max-cycles", type=int, default=None, help="stop after this many polls (exit 1 if the last could not reach the archive)")
    common(w, "runs/pacs-watch")
    w.set_defaults(func=cmd_watch)

    s = cmds.add_parser("listen", help="DIMSE storage SCP: receive studies by C-STORE, analyse, send results on")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    s.add_argument("--aet", default="MMCORE", help="our AE title")
    s.add_argument("--idle", type=float, default=10.0, help="queue a study after this many seconds without new instances")
    s.add_argument("--to-url", default=None, help="results by STOW-RS to this DICOMweb root")
    s.add_argument("--to-dimse", default=None, help="results by C-STORE to AET@HOST:PORT")
    common(s, "runs/pacs-listen")
    s.set_defaults(func=cmd_listen)
