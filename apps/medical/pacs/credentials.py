"""Credentials for an archive: environment variables or a netrc-style file, never the command line.

Order: ``MM_PACS_TOKEN`` (HTTP bearer token), ``MM_PACS_USER`` + ``MM_PACS_PASSWORD`` (HTTP basic),
then the netrc file ``MM_PACS_NETRC`` (default ``~/.netrc``) entry for the archive's host. A URL
with ``user:password@`` in it is refused (it would land in shell history and process lists).
Nothing here logs a secret; :func:`redact` is what every message uses to name an archive.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class CredentialError(ValueError):
    """Credentials are missing, malformed or were put where they do not belong."""


def redact(url: str) -> str:
    """``url`` without any user-info part: what messages and logs show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url: str) -> str:
    """The URL, refused when it carries credentials or is not http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CredentialError(f"--url {redact(url)!r}: give an http(s) URL of the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    if parts.username or parts.password:
        raise CredentialError(f"--url {redact(url)}: credentials in the URL are not accepted; set MM_PACS_USER and "
                              "MM_PACS_PASSWORD (or MM_PACS_TOKEN, or a netrc file via MM_PACS_NETRC)")
    return url.rstrip("/")


def auth_for(url: str, environ: dict | None = None) -> tuple[str, object] | None:
    """``("bearer", token)``, ``("basic", (user, password))`` or None; where it came from is not returned."""
    env = os.environ if environ is None else environ
    if env.get("MM_PACS_TOKEN"):
        return "bearer", env["MM_PACS_TOKEN"]
    user, password = env.get("MM_PACS_USER"), env.get("MM_PACS_PASSWORD")
    if user or password:
        if not (user and password):
            raise CredentialError("set both MM_PACS_USER and MM_PACS_PASSWORD (one of them is empty)")
        return "basic", (user, password)
    path = Path(env.get("MM_PACS_NETRC") or Path.home() / ".netrc")
    if env.get("MM_PACS_NETRC") and not path.exists():
        raise CredentialError(f"MM_PACS_NETRC={path}: no such file")
    if path.exists():
        try:
            entry = netrc.netrc(str(path)).authenticators(urlsplit(url).hostname or "")
        except (netrc.NetrcParseError, OSError) as exc:
            raise CredentialError(f"{path}: not a readable netrc file (line {getattr(exc, 'lineno', '?')})") from None
        if entry:
            login, _, password = entry
            return "basic", (login, password or "")
    return None


def session_for(url: str, environ: dict | None = None, timeout: float = 30.0):
    """A ``requests.Session`` carrying the archive's credentials (if any) and a default timeout.

    GET and HEAD are retried twice (0.2 s, 0.4 s) when the connection fails before an answer
    arrives, e.g. a kept-alive connection the archive closed meanwhile; never once a response has
    started (a transfer cut mid-stream stays an error) and never for POST (STOW)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(total=2, connect=2, read=2, status=0, other=0, allowed_methods=frozenset({"GET", "HEAD"}),
                  backoff_factor=0.2, raise_on_status=False)
    for prefix in ("http://", "https://"):
        session.mount(prefix, HTTPAdapter(max_retries=retry))
    auth = auth_for(url, environ)
    if auth and auth[0] == "bearer":
        session.headers["Authorization"] = f"Bearer {auth[1]}"
    elif auth:
        session.auth = auth[1]
    session.request = _with_timeout(session.request, timeout)
    return session


def _with_timeout(request, timeout: float):
    def call(method, url, **kw):
        kw.setdefault("timeout", timeout)
        return request(method, url, **kw)

    return call
