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

# base64url alphabet plus the JWS separators; the full form has exactly two dots.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_\-.=]+")
_PARAM_NAME_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~\-]+")
MAX_IDENTITY_LEN = 8192  # real SHAKEN headers are ~800 bytes; more is abuse
# The shape nearly every signer sends (`<jws>;info=<url>;alg=ES256;ppt=shaken`, no spaces, no
# quotes, printable-ASCII URL): one regex instead of the general parameter scan. It only accepts
# values the general path parses to the very same IdentityHeader (property-tested).
_COMMON_RE = re.compile(r"([A-Za-z0-9_\-.=]+);info=<([!#-:=?-~]+)>;alg=([A-Za-z0-9]+);ppt=([A-Za-z0-9]+)")


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
    value = value.strip()
    common = _COMMON_RE.fullmatch(value)
    if common is not None:
        token, url, alg, ppt = common.groups()
        return IdentityHeader(token, url, alg, ppt.lower(),
                              (("info", f"<{url}>"), ("alg", alg), ("ppt", ppt)))
    return _parse_general(value)


def _parse_general(value: str) -> IdentityHeader | None:
    """Any parameter order, spacing, case and quoting (value already stripped)."""
    head, sep, rest = value.partition(";")
    token = head.strip()
    if not token or not _TOKEN_RE.fullmatch(token):
        return None
    params = _parse_params(rest) if sep else []
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
    return IdentityHeader(token=token, info=info, alg=alg or "ES256", ppt=ppt or None,
                          params=tuple(params))


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
