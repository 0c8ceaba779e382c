"""The console's login session: an HMAC-signed cookie, and who made a change.

A browser cannot send ``Authorization: Bearer`` when it follows a link, so the console
trades the token of ``http.token_file`` once (the login form) for a cookie::

    sipguard_console=v1.<expires>.<session id>.<name>.<signature>

- ``expires``: epoch seconds, at most ``LIFETIME`` after the login;
- ``session id``: 128 random bits, which the CSRF token is derived from;
- ``name``: what the operator typed as their name at login (base64url, at most
  ``MAX_NAME`` characters), shown in the audit lines with the token's fingerprint;
- ``signature``: HMAC-SHA256 over the rest, keyed by a key derived from the token. Nothing
  is kept on the server: a session is valid on every restart while the token stays the
  same, and changing the token (http.token_file, then a restart) ends every session.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
makes the browser send it) and ``Path=/`` (the console's scripts read /traceback and
/admin/notices with it). A request that changes something with the cookie must also carry
the session's CSRF token (``X-Sipguard-CSRF`` from the console's scripts, a ``csrf`` form
field from its forms): a cross-site page can neither read nor forge it.

Without a token (loopback listener only, see config.py) there is no login: the key is
random per process and the principal is ``no token (loopback)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass

COOKIE = "sipguard_console"
LIFETIME = 8 * 3600            # a working shift; then log in again
MAX_NAME = 64
MAX_COOKIE = 512               # a longer value is not one of ours: not even parsed
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    name: str
    expires: int


def fingerprint(token: str) -> str:
    """Who, in audit lines, when tokens have no names: 12 hex digits of SHA-256, which
    identify the token among the ones an operator ever configured without revealing it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def clean_name(text: str) -> str:
    """The operator's name as typed at login: printable, trimmed, bounded ("" if none)."""
    kept = "".join(c for c in text if c.isprintable())
    return " ".join(kept.split())[:MAX_NAME]


class Sessions:
    def __init__(self, token: str | None, now: float | None = None) -> None:
        self.token = token
        secret = token.encode() if token is not None else os.urandom(32)
        self.key = hmac.new(secret, b"sipguard console session v1", hashlib.sha256).digest()
        self.who_token = fingerprint(token) if token is not None else "no token (loopback)"

    @property
    def needs_login(self) -> bool:
        return self.token is not None

    def check_token(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def issue(self, name: str, now: float | None = None) -> tuple[str, Session]:
        """A new session for ``name``: the cookie value and what it says."""
        now = time.time() if now is None else now
        session = Session(os.urandom(16).hex(), clean_name(name), int(now) + LIFETIME)
        encoded = base64.urlsafe_b64encode(session.name.encode()).decode().rstrip("=")
        body = f"{_VERSION}.{session.expires}.{session.sid}.{encoded}"
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie_header: str, now: float | None = None) -> Session | None:
        """The session of a Cookie header, or None: absent, altered, expired or too long."""
        value = cookie_value(cookie_header, COOKIE)
        if value is None or len(value) > MAX_COOKIE:
            return None
        body, _, signature = value.rpartition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(body).encode()):
            return None
        parts = body.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        expires = int(parts[1])
        if expires <= (time.time() if now is None else now):
            return None
        try:
            name = base64.urlsafe_b64decode(parts[3] + "=" * (-len(parts[3]) % 4)).decode()
        except ValueError:
            return None
        return Session(parts[2], name, expires)

    def csrf(self, session: Session | None) -> str:
        """The CSRF token of a session (or of the token-less console)."""
        sid = session.sid if session is not None else "no-session"
        return hmac.new(self.key, b"csrf." + sid.encode(), hashlib.sha256).hexdigest()[:32]

    def csrf_ok(self, session: Session | None, offered: str) -> bool:
        return bool(offered) and hmac.compare_digest(offered.encode(), self.csrf(session).encode())

    def who(self, session: Session | None) -> str:
        if session is not None and session.name:
            return f"{session.name} ({self.who_token})"
        return self.who_token

    def _sign(self, body: str) -> str:
        digest = hmac.new(self.key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def set_cookie(value: str, secure: bool = False) -> str:
    return (f"{COOKIE}={value}; Path=/; Max-Age={LIFETIME}; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))


def clear_cookie(secure: bool = False) -> str:
    return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")


def cookie_value(header: str, name: str) -> str | None:
    """One cookie of a Cookie header (``a=1; b=2``); None when absent or given twice."""
    found = None
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key == name:
            if found is not None:
                return None
            found = value
    return found
