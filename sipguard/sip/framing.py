"""TCP framing (RFC 3261 section 18.3): a stream becomes messages by Content-Length.

Several messages may arrive in one segment and one message over many; CRLF keep-alives
(RFC 5626 section 3.5.1) between messages are skipped. A header block past the size
limit, or one without a usable Content-Length, makes the stream unrecoverable: the
caller closes the connection. The messages before the bad one are delivered whatever
the segmentation: when a segment holds good messages then a bad one, ``feed`` returns the
good ones, sets ``error`` and raises it on the next call.
"""

from __future__ import annotations

import re

from sipguard.sip.errors import SipParseError
from sipguard.sip.message import MAX_SIZE

# The trailing CRLF is a lookahead so that two adjacent Content-Length lines both match.
_CL = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*(?=\r\n)", re.IGNORECASE)


class StreamFramer:
    __slots__ = ("max_size", "_buf", "error")

    def __init__(self, max_size: int = MAX_SIZE) -> None:
        self.max_size = max_size
        self._buf = b""
        self.error: SipParseError | None = None  # the stream is broken: close it

    def feed(self, data: bytes) -> list[bytes]:
        """The complete messages the stream holds now; raises SipParseError when the
        stream cannot be framed (returned messages before it stay valid)."""
        if self.error is not None:
            raise self.error
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        try:
            while buf:
                stripped = buf.lstrip(b"\r\n")
                if not stripped:
                    buf = b""
                    break
                buf = stripped
                end = buf.find(b"\r\n\r\n")
                if end < 0 or end + 4 > self.max_size:
                    # the same answer however the stream was cut: too big before framing
                    if len(buf) > self.max_size or end >= 0:
                        raise SipParseError("header block exceeds the size limit", 513)
                    break
                total = end + 4 + self._length(buf, end)
                if total > self.max_size:
                    raise SipParseError(f"message of {total} bytes exceeds the {self.max_size}-byte limit", 513)
                if len(buf) < total:
                    break
                out.append(buf[:total])
                buf = buf[total:]
        except SipParseError as exc:
            self.error = exc
            self._buf = b""
            if not out:
                raise
            return out
        self._buf = buf
        return out

    @staticmethod
    def _length(buf: bytes, end: int) -> int:
        matches = _CL.findall(b"\r\n" + buf[:end + 2])
        if len(matches) != 1:
            reason = "missing Content-Length on a stream" if not matches else "more than one Content-Length"
            raise SipParseError(reason)
        if len(matches[0]) > 9:
            raise SipParseError("Content-Length too large", 513)
        return int(matches[0])

    @property
    def buffered(self) -> int:
        return len(self._buf)
