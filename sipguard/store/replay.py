"""PASSporT replay detection: the seen-set of verified PASSporT signatures.

A PASSporT is signed for one call. The same signature arriving on a second call (another
Call-ID) while the PASSporT is still fresh is a replay: a captured token re-used to have a
robocall shown as verified. The pipeline asks once per call, inside the store's one lookup
(no extra round trip): ``LookupKeys.passport`` is the signature's key
(``verify.signature_key``), ``passport_call`` a short hash of the Call-ID, ``passport_ttl``
the seconds the PASSporT stays fresh (until ``iat + shaken.iat_max_age``). The first call
stores (key -> call); a later call with the same key and another call hash is a replay;
the same call again (a retransmission, a re-sent INVITE, a fork through sipguard twice)
is not.

Redis: ``lua/lookup.lua`` (its "passport replay" block), one key per signature,
``<prefix>:pp:<key>`` holding the call hash, expiring with the PASSporT; shared by every
instance. Memory: ``SeenSet`` below, one process.
"""

from __future__ import annotations

import hashlib

# Entries the memory seen-set holds at most: at 1,000 signed calls/s with a 60 s iat window
# that is 60,000 live entries. Measured 255 bytes each with the dict (CPython: 32-char key,
# 16-char call hash, a float, a tuple), so about 34 MB at the bound (README, "PASSporT types").
MAX_SEEN = 131072


def call_key(call_id: str) -> str:
    """The Call-ID as the seen-set stores it: 8 bytes of BLAKE2b, hex (bounded size, and no
    caller-controlled text in Redis)."""
    hasher = _CALL_HASHER.copy()   # a hasher made once: no set-up per call
    hasher.update(call_id.encode("utf-8", "surrogatepass"))
    return hasher.hexdigest()


_CALL_HASHER = hashlib.blake2b(digest_size=8)


def call_key_py(call_id: str) -> str:
    """``call_key``'s definition."""
    return hashlib.blake2b(call_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def replay_ttl(iat: int, now: float, max_age: int, max_future: int) -> float:
    """How long a PASSporT of ``iat`` stays fresh from ``now``: until iat + max_age (plus a
    second of margin), at most the whole window."""
    return max(1.0, min(iat + max_age - now + 1.0, float(max_age + max_future + 1)))


class SeenSet:
    """The memory store's seen-set: key -> (call hash, expiry), oldest first.

    Bounded by ``limit``: when full, the expired entries at the front go first, then the
    oldest live one (a replay of that PASSporT is then missed; at the bound the rate of
    signed calls exceeds what one box is sized for)."""

    def __init__(self, limit: int = MAX_SEEN) -> None:
        self.limit = limit
        self._seen: dict[str, tuple[str, float]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, key: str, call: str, ttl: float, now: float) -> bool:
        """True when ``key`` was seen on another call and has not expired; else remember it."""
        seen = self._seen
        got = seen.get(key)
        if got is not None and got[1] > now:
            return got[0] != call  # the same call again (a retransmission) is not a replay
        if got is not None:
            del seen[key]  # expired: this is a first sighting again
        if len(seen) >= self.limit:
            self._make_room(now)
        seen[key] = (call, now + ttl)
        return False

    def _make_room(self, now: float) -> None:
        """Drop expired entries from the front (the oldest), then the oldest live one if still
        full; stops at the first live entry once there is room (O(entries dropped))."""
        seen = self._seen
        while seen:
            key = next(iter(seen))
            if seen[key][1] > now and len(seen) < self.limit:
                return
            del seen[key]
            self.evicted += 1
