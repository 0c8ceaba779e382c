"""The proxy's BLAKE2b digests (branches, Record-Route MACs, To tags) from pre-keyed hashers
(``messages.blake2b_hex``) are hashlib's own, for any key, size and message: the same key still
makes the same branch in every worker, and without it no one can make one."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from sipguard.proxy import messages
from sipguard.proxy.messages import blake2b_hex
from sipguard.proxy.stateless import BRANCH_PREFIX, stateless_branch
from sipguard.sip import parse_via


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
