"""Exceptions for the edges of sipguard (config, CLI, backends).

The hot path never raises on bad input: parse errors are ``sip.SipParseError``,
verification failures are reason codes in a ``Verification``. These classes are for
what a person must fix: a config or policy file, a data file, a missing certificate.
"""

from __future__ import annotations


class SipguardError(Exception):
    """Root of sipguard's own exceptions."""


class ConfigError(SipguardError):
    """A config, policy or data file is wrong. Says where: file, line and key."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.key = key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        key = f": {self.key}" if self.key else ""
        return f"{where}{key}: {self.message}"
