"""What the pipeline decided for one INVITE, and how the proxy acts on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Action = Literal["forward", "reject"]


@dataclass(frozen=True, slots=True)
class Tag:
    """What a forward adds to the call besides verstat (which is always set)."""

    display_prefix: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    # the div/rcd/replay results as headers (X-Sipguard-Div, -Rcd, -Replayed: proxy/act.py),
    # on the forwarded INVITE and on redirect mode's 302 (which Kamailio copies onto it)
    passports: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The one value that leaves the pipeline.

    reject: ``status``/``phrase`` form the status line, ``headers`` are added to the
    response (Reason, Call-Info, Retry-After ...). forward: ``sign`` asks the
    authentication service to sign, ``tag`` adds display prefix and headers, ``to``
    overrides the next hop. ``rule`` names the policy rule (None: the default).
    ``enforced`` is what the policy wanted when it differs (shadow mode, emergency calls).
    """

    action: Action
    status: int | None = None
    phrase: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    rule: str | None = None
    rule_class: str | None = None
    notice: str | None = None
    sign: bool = False
    tag: Tag | None = None
    to: str | None = None
    would: Decision | None = None  # shadow mode / emergency override: what the policy chose

    @property
    def rejected(self) -> bool:
        return self.action == "reject"


FORWARD = Decision("forward")


def reject(status: int, phrase: str, *headers: tuple[str, str], rule: str | None = None,
           rule_class: str | None = None) -> Decision:
    return Decision("reject", status=status, phrase=phrase, headers=tuple(headers), rule=rule,
                    rule_class=rule_class)
