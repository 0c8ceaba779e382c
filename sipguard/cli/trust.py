"""``sipguard trust update``: keep the STI trust anchors current from the STI-PA's CA list.

Downloads ``shaken.trust_list.url`` with the x5u rules (``shaken.x5u``: https, ports, the SSRF
address guard, no redirects, one deadline), or reads ``--file`` (offline); checks the list
(shaken/trustlist.py: the STI-PA's signature, expiry, sequence, CA certificates only); writes
``shaken.trust_anchors`` atomically (a new file renamed over the old one, so a running sipguard
never reads half a list); and, when the anchors changed, makes the running service read them:
SIGHUP to the process in ``--pid-file`` (systemd: the timer's unit reloads sipguard.service).
A list that fails a check changes nothing: the anchors in force stay and the exit status is 1.
Exit status 0: written or already current.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from dataclasses import replace
from typing import Any

from sipguard import yamlconf
from sipguard.errors import SipguardError
from sipguard.shaken import trustlist
from sipguard.shaken.certs import TrustStoreError, load_trust_anchors
from sipguard.shaken.config import TrustListConfig, trust_list_config, x5u_config
from sipguard.shaken.x5u import FetchError, HttpFetcher


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("trust", help="STI trust anchors (the STI-PA's list of STI-CAs)")
    sub = parser.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    upd = sub.add_parser("update", help="fetch, check and install the STI-PA's CA list")
    upd.add_argument("-c", "--config", required=True, help="sipguard config (shaken.trust_list, trust_anchors)")
    upd.add_argument("--file", help="read the list from this file (JWS, the STI-PA's JSON answer, or a "
                                    "PEM bundle of CA certificates) instead of shaken.trust_list.url")
    upd.add_argument("--pid-file", help="send SIGHUP to the sipguard whose pid this file holds "
                                        "when the anchors changed")
    upd.add_argument("--force", action="store_true", help="take a list older (lower sequence) than the one in use")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    root = yamlconf.load(args.config)
    base_dir = os.path.dirname(os.path.abspath(args.config))
    shaken = root.section("shaken")
    anchors = shaken.str("trust_anchors", default=None)
    if anchors is None:
        raise shaken.error("trust_anchors", "trust update writes the file named here: set it "
                                            "(e.g. /var/lib/sipguard/sti-cas.pem)")
    anchors = anchors if os.path.isabs(anchors) else os.path.normpath(os.path.join(base_dir, anchors))
    if os.path.isdir(anchors):
        raise shaken.error("trust_anchors", f"{anchors} is a folder; the list replaces the anchors whole "
                                            "(a CA the STI-PA removed must go): point it at a file")
    cfg = trust_list_config(shaken.section("trust_list"), base_dir)
    x5u = x5u_config(shaken.section("x5u"), base_dir)
    now = time.time()
    current = _read(anchors) if os.path.exists(anchors) else None
    current_seq = None if args.force or current is None else trustlist.sequence_of(current)
    if args.file:
        body = _read(args.file)
        if len(body) > trustlist.MAX_LIST_BYTES:
            raise SipguardError(f"{args.file}: larger than {trustlist.MAX_LIST_BYTES} bytes")
        source = os.path.abspath(args.file)
    elif cfg.url:
        body = None
        source = cfg.url
    else:
        raise shaken.error("trust_list", "no shaken.trust_list.url configured: set it, or give --file")
    fetcher = HttpFetcher(replace(x5u, max_bytes=trustlist.MAX_LIST_BYTES))
    listed = asyncio.run(_check(body, source, cfg, fetcher, now, current_seq, unsigned_ok=bool(args.file)))
    data = listed.pem(source, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)))
    same_cas = current is not None and _certs_of(current) == _certs_of(data)
    if same_cas and (listed.sequence is None or trustlist.sequence_of(current or b"") == listed.sequence):
        print(f"{anchors}: already current ({len(listed.cas)} STI-CAs)")
        return 0
    _write_atomically(anchors, data)  # a higher sequence with the same CAs: recorded, no reload
    try:  # what serve will read: refuse nothing we just wrote
        load_trust_anchors(anchors)
    except TrustStoreError as exc:  # cannot happen with checked certificates; say it loudly
        raise SipguardError(f"{anchors}: written but unreadable: {exc}") from None
    seq = f", sequence {listed.sequence}" if listed.sequence is not None else " (unsigned bundle)"
    print(f"{anchors}: {len(listed.cas)} STI-CAs written from {source}{seq}")
    if args.pid_file and not same_cas:
        _signal(args.pid_file)
    return 0


async def _check(body: bytes | None, source: str, cfg: TrustListConfig, fetcher: HttpFetcher, now: float,
                 current_seq: int | None, unsigned_ok: bool) -> trustlist.TrustList:
    try:
        if body is None:
            assert cfg.url is not None
            body = (await _fetch(fetcher, cfg.url, "the list")).body
        jws = trustlist.jws_of(body)
        if jws is None:
            if not unsigned_ok:
                raise trustlist.TrustListError(f"{source}: not a signed list (JWS); only a --file may be a "
                                               "plain PEM bundle")
            return trustlist.check_bundle(body, now)
        if cfg.sti_pa_root is None:
            raise trustlist.TrustListError("a signed list needs shaken.trust_list.sti_pa_root to check it")
        try:
            root = load_trust_anchors(cfg.sti_pa_root)
        except TrustStoreError as exc:
            raise trustlist.TrustListError(f"shaken.trust_list.sti_pa_root: {exc}") from None
        url = trustlist.signer_url(jws)
        signer = (await _fetch(fetcher, url, "the list's signer certificate")).body
        return trustlist.check_signed(jws, signer, root, now, current_seq)
    except trustlist.TrustListError as exc:
        raise SipguardError(f"{source}: {exc}; the trust anchors in force are kept") from None
    finally:
        await fetcher.aclose()


async def _fetch(fetcher: HttpFetcher, url: str, what: str) -> Any:
    try:
        return await fetcher.fetch(url)
    except FetchError as exc:
        raise trustlist.TrustListError(f"{what} ({url}) could not be downloaded: {exc.detail} "
                                       "(the shaken.x5u rules apply)") from None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(trustlist.MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise SipguardError(f"{path}: cannot read: {exc.strerror}") from None


def _certs_of(data: bytes) -> bytes:
    """The certificate blocks only (the comment carries the time of writing)."""
    return b"".join(line for line in data.splitlines(keepends=True) if not line.startswith(b"#"))


def _write_atomically(path: str, data: bytes) -> None:
    folder = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".sti-cas.", dir=folder)
    except OSError as exc:
        raise SipguardError(f"{folder}: cannot write there: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise SipguardError(f"{path}: cannot write: {exc.strerror}; the anchors in force are kept") from None
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename survives a power cut
    finally:
        os.close(dir_fd)


def _signal(pid_file: str) -> None:
    try:
        with open(pid_file) as fh:
            pid = int(fh.read(32).strip())
    except (OSError, ValueError) as exc:
        raise SipguardError(f"{pid_file}: no pid to signal ({exc}); the new anchors are read at the next "
                            "SIGHUP or restart") from None
    if pid <= 1:
        raise SipguardError(f"{pid_file}: {pid} is not a sipguard process id")
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        raise SipguardError(f"{pid_file}: cannot signal pid {pid}: {exc.strerror}") from None
    print(f"sent SIGHUP to {pid}: it reads the new anchors now")
