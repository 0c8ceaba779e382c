"""The proxy's BLAKE2b digests (branches, Record-Route MACs, To tags) from pre-keyed hashers
(``messages.blake2b_hex``) are hashlib's own, for any key, size and message: the same key still
makes the same branch in every worker, and without it no one can make one."""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sipguard.proxy import messages
from sipguard.proxy.messages import blake2b_hex
from sipguard.proxy.stateless import BRANCH_PREFIX, stateless_branch
from sipguard.sip import parse_via
from sipguard.store.replay import call_key, call_key_py


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([6, 8, 12, 64]), st.binary(max_size=64))
def test_blake2b_hex_is_hashlibs(data: bytes, size: int, key: bytes) -> None:
    assert blake2b_hex(data, size, key) == hashlib.blake2b(data, digest_size=size, key=key).hexdigest()
    assert blake2b_hex(data, size) == hashlib.blake2b(data, digest_size=size).hexdigest()


def test_keys_alternate_and_the_hashers_stay_bounded() -> None:
    """A reload's new key gives its own digests at once; the old one's are still its own."""
    keys = [bytes([i]) * 32 for i in range(40)]
    for _ in range(2):
        for key in keys:
            assert blake2b_hex(b"m", 8, key) == hashlib.blake2b(b"m", digest_size=8, key=key).hexdigest()
    assert len(messages._HASHERS) <= 16


def test_the_branch_is_the_keyed_hash_of_the_request() -> None:
    via = parse_via("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-7-1-0")
    secret = b"s" * 32
    want = hashlib.blake2b(b"z9hG4bK-7-1-0|127.0.0.1|5061|INVITE|1", digest_size=8, key=secret).hexdigest()
    assert stateless_branch(secret, via, "ACK", 1) == BRANCH_PREFIX + want
    assert stateless_branch(b"t" * 32, via, "INVITE", 1) != BRANCH_PREFIX + want


# hostile text: any code point, lone surrogates (a header read with surrogateescape), quotes and
# backslashes (which repr escapes), control characters, and long runs
HOSTILE = st.text(st.characters(codec=None) | st.sampled_from("'\"\\\x00\x7f\r\n\ud800\udcff\u2028é"),
                  max_size=40) | st.text(max_size=5000)


@settings(max_examples=800, deadline=None)
@example("127.0.0.1", 5061, "z9hG4bK-1-1-0")
@example("::1", 0, "")
@example("it's", -1, "\udcff")
@example("a\\b\"c'", 2**70, "x" * 70000)
@given(HOSTILE, st.integers(-2**80, 2**80), HOSTILE)
def test_tag_is_its_definition(host: str, port: int, key: str) -> None:
    """``tag`` spells out the tuple's repr: the same tag as ``tag_py``'s f"{source}{key}", or
    the same error (a lone surrogate outside surrogateescape's range cannot be encoded)."""
    assert outcome(messages.tag, (host, port), key) == outcome(messages.tag_py, (host, port), key)


def outcome(function: Any, *args: Any) -> tuple[str, str]:
    """What ``function(*args)`` returns, or the error it raises."""
    try:
        return "ok", function(*args)
    except Exception as exc:  # noqa: BLE001 - compared, not hidden
        return type(exc).__name__, str(exc)


@settings(max_examples=800, deadline=None)
@example("")
@example("123-77@127.0.0.1")
@example("\ud800\udfff" * 3)
@example("x" * 100000)
@given(HOSTILE)
def test_call_key_is_its_definition(call_id: str) -> None:
    """``call_key`` from a hasher made once: ``call_key_py``'s digest, every time (the shared
    hasher is never changed by a copy's update)."""
    assert outcome(call_key, call_id) == outcome(call_key_py, call_id)
    assert outcome(call_key, call_id) == outcome(call_key_py, call_id)
