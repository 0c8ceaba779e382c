"""/healthz and /readyz answers.

``/healthz``: the process runs its event loop (if it can answer, it is alive).
``/readyz``: the caller's ``ready()`` says whether the proxy is listening, its store
answers (or is in its configured failure mode) and a policy is loaded; a ``ready()``
that raises counts as not ready rather than breaking the endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("sipguard.http")
ReadyFn = Callable[[], tuple[bool, dict[str, object]]]
_STARTED = time.monotonic()


def healthz() -> tuple[int, bytes]:
    body = {"status": "alive", "pid": os.getpid(), "uptime_s": round(time.monotonic() - _STARTED, 1)}
    return 200, json.dumps(body).encode()


def readyz(ready: ReadyFn | None) -> tuple[int, bytes]:
    if ready is None:
        return 200, b'{"ready": true}'
    try:
        ok, details = ready()
    except Exception as exc:  # a broken check is "not ready", with the reason
        log.exception("readiness check failed")
        ok, details = False, {"error": f"readiness check failed: {exc}"}
    body = {"ready": bool(ok), **details}
    return (200 if ok else 503), json.dumps(body, default=str).encode()
