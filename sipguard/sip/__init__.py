"""sipguard's SIP layer, sans-I/O: bytes in, messages and bytes out. No sockets, no asyncio.

Written for this project (aiosip, the only asyncio SIP stack on PyPI, does not import on
Python 3.11): lazy header index, byte-exact forwarding of untouched headers, one typed
error (SipParseError) for every malformed input.
"""

from sipguard.sip.address import NameAddr, SipUri, Via, parse_name_addr, parse_uri, parse_via, split_list
from sipguard.sip.errors import SipParseError
from sipguard.sip.framing import StreamFramer
from sipguard.sip.headers import canonical_name
from sipguard.sip.message import MAX_SIZE, Message, Request, Response, new_branch
from sipguard.sip.parser import build_response, parse, validate

__all__ = [
    "MAX_SIZE", "Message", "NameAddr", "Request", "Response", "SipParseError", "SipUri", "StreamFramer",
    "Via", "build_response", "canonical_name", "new_branch", "parse", "parse_name_addr", "parse_uri",
    "parse_via", "split_list", "validate",
]
