"""Parse SIP Identity header values (RFC 8224 section 4.1) into their parts.

    Identity: <jws>;info=<https://cert.example/x.pem>;alg=ES256;ppt=shaken

Rule 1: never raise on hostile input; a value that cannot be parsed returns None, which the
verifier turns into `malformed-identity`. (Three SIP stacks shipped crashes here: Asterisk
GHSA-mrq5-74j5-f5cr, Kamailio #4284.)
Rule 2: be tolerant where real signers differ: whitespace around `;` and `=`, any parameter
order, quoted `ppt` values (OpenSIPS PR #2735), upper/lower-case parameter names.
Rule 3: `alg` absent means ES256 (RFC 8224 section 4.1: "the default ... is ES256"); whether
an absent `alg` or `ppt` is acceptable is the verifier's decision (ATIS-1000074 requires both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

# base64url alphabet plus the JWS separators; the full form has exactly two dots.
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_\-.=]+")
_TOKEN_CHARS: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.="
_PARAM_NAME_RE: Final = re.compile(r"[A-Za-z0-9.!%*_+`'~\-]+")
MAX_IDENTITY_LEN: Final = 8192  # real SHAKEN headers are ~800 bytes; more is abuse
# What follows the token (`;info=<url>;alg=ES256;ppt=shaken`) repeats across a signer's calls:
# its reading (info, alg, ppt, params) is kept, keyed by that text. Bounded: at most
# _PARAMS_KEPT texts of at most _PARAMS_KEY_LEN characters; a flood of distinct ones empties it.
_Params = tuple[str | None, str, str | None, tuple[tuple[str, str], ...]]
_PARAMS: Final[dict[str, _Params]] = {}
_PARAMS_KEPT: Final = 256
_PARAMS_KEY_LEN: Final = 512


@dataclass(frozen=True, slots=True)
class IdentityHeader:
    token: str
    info: str | None
    alg: str
    ppt: str | None  # lower-cased; None when the header carries no ppt parameter
    params: tuple[tuple[str, str], ...] = ()

    def __init__(self, token: str, info: str | None, alg: str, ppt: str | None,
                 params: tuple[tuple[str, str], ...] = ()) -> None:
        # written out (dataclass keeps it): compiled, where the generated one runs interpreted
        object.__setattr__(self, "token", token)
        object.__setattr__(self, "info", info)
        object.__setattr__(self, "alg", alg)
        object.__setattr__(self, "ppt", ppt)
        object.__setattr__(self, "params", params)

    @property
    def has_alg(self) -> bool:
        """The header carries an `alg` parameter (else ``alg`` is RFC 8224's default)."""
        return any(name == "alg" for name, _ in self.params)

    @property
    def is_full_form(self) -> bool:
        """header.payload.signature with a non-empty payload (compact form has `..`)."""
        parts = self.token.split(".")
        return len(parts) == 3 and all(parts)


def split_values(raw: str) -> list[str]:
    """Split a header line that joined several Identity values with commas.

    Commas inside <...> (the info URI) do not split; the base64url token has none.
    """
    out: list[str] = []
    depth = 0
    start = 0
    for index, char in enumerate(raw):
        if char == "<":
            depth += 1
        elif char == ">":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            out.append(raw[start:index])
            start = index + 1
    out.append(raw[start:])
    return [part.strip() for part in out if part.strip()]


def parse_identity(value: str) -> IdentityHeader | None:
    """Parse one Identity header value; None when it is not a well-formed value."""
    if not value or len(value) > MAX_IDENTITY_LEN:
        return None
    head, _, rest = value.strip().partition(";")
    token = head.strip()
    # the token's alphabet (_TOKEN_RE), checked by deleting it: what is left is foreign
    if not token or not token.isascii() or token.encode("ascii").translate(None, _TOKEN_CHARS):
        return None
    params = _PARAMS.get(rest)
    if params is None:
        params = _read_params(rest)
        if params is None:
            return None
        if len(rest) <= _PARAMS_KEY_LEN:
            if len(_PARAMS) >= _PARAMS_KEPT:
                _PARAMS.clear()  # a signer sends a handful of distinct ones; flooding resets
            _PARAMS[rest] = params
    return IdentityHeader(token, params[0], params[1], params[2], params[3])


def _parse_general(value: str) -> IdentityHeader | None:
    """``parse_identity`` of a stripped value, without its kept readings (the definition it
    is tested against)."""
    head, _, rest = value.partition(";")
    token = head.strip()
    if not token or not _TOKEN_RE.fullmatch(token):
        return None
    params = _read_params(rest)
    return IdentityHeader(token, *params) if params is not None else None


def _read_params(text: str) -> _Params | None:
    """The parameters after the token: (info, alg, ppt, params); None when malformed.
    Any parameter order, spacing, case and quoting."""
    params = _parse_params(text)
    if params is None:
        return None
    info = alg = ppt = None
    for name, val in params:
        if name == "info":
            if not (len(val) > 2 and val[0] == "<" and val[-1] == ">"):
                return None  # ident-info-uri = LAQUOT absoluteURI RAQUOT
            info = val[1:-1].strip()
        elif name == "alg":
            alg = _unquote(val)
        elif name == "ppt":
            ppt = _unquote(val).lower()
    return info, alg or "ES256", ppt or None, tuple(params)


def _parse_params(text: str) -> list[tuple[str, str]] | None:
    if '"' not in text and ";" not in text[text.find("<"):text.rfind(">")]:
        # fast path (nearly every real header): no quotes and no `;` inside the <info> URI
        out: list[tuple[str, str]] = []
        for chunk in text.split(";"):
            name, eq, val = chunk.partition("=")
            name = name.strip().lower()
            if not name:
                if eq:
                    return None
                continue
            if not _PARAM_NAME_RE.fullmatch(name):
                return None
            out.append((name, val.strip() if eq else ""))
        return out
    params: list[tuple[str, str]] = []
    pos = 0
    length = len(text)
    while pos < length:
        end = _param_end(text, pos)
        if end < 0:
            return None
        chunk = text[pos:end].strip()
        pos = end + 1
        if not chunk:
            continue  # tolerate `;;` and a trailing `;`
        name, eq, val = chunk.partition("=")
        name = name.strip().lower()
        if not _PARAM_NAME_RE.fullmatch(name):
            return None
        params.append((name, val.strip() if eq else ""))
    return params


def _param_end(text: str, pos: int) -> int:
    """Index of the `;` ending the parameter at pos (or len); -1 on an unclosed < or quote."""
    closing = ""
    for index in range(pos, len(text)):
        char = text[index]
        if closing:
            if char == closing:
                closing = ""
        elif char == "<":
            closing = ">"
        elif char == '"':
            closing = '"'
        elif char == ";":
            return index
    return -1 if closing else len(text)


def _unquote(val: str) -> str:
    if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
        return val[1:-1].strip()
    return val
