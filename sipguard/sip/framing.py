"""TCP framing (RFC 3261 section 18.3): a stream becomes messages by Content-Length.

Several messages may arrive in one segment and one message over many; CRLF keep-alives
(RFC 5626 section 3.5.1) between messages are skipped. A header block past the size
limit, or one without a usable Content-Length, makes the stream unrecoverable: the
caller closes the connection.
"""

from __future__ import annotations

import re

from sipguard.sip.errors import SipParseError
from sipguard.sip.message import MAX_SIZE

# The trailing CRLF is a lookahead so that two adjacent Content-Length lines both match.
_CL = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)


class StreamFramer:
    __slots__ = ("max_size", "_buf")

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        while buf:
            stripped = buf.lstrip(b"\r\n")
            if not stripped:
                buf = b""
                break
            buf = stripped
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("header block exceeds the size limit", 513)
                break
            head = buf[:end + 2]
            matches = _CL.findall(b"\r\n" + head)
            if len(matches) != 1:
                reason = "missing Content-Length on a stream" if not matches else "more than one Content-Length"
                raise SipParseError(reason)
            length = int(matches[0])
            total = end + 4 + length
            if total > self.max_size:
                raise SipParseError(f"message of {total} bytes exceeds the {self.max_size}-byte limit", 513)
            if len(buf) < total:
                break
            out.append(buf[:total])
            buf = buf[total:]
        self._buf = buf
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)
