"""Every RFC 4475 torture message with the outcome sipguard gives it.

Well-formed messages parse, pass ``validate`` and carry the values the RFC points at;
malformed ones raise SipParseError either in ``parse`` (framing, start line, required
headers) or in ``validate`` (a header value read lazily), with the status to answer and
``partial`` set whenever the request can still be answered. Where RFC 4475 lets an element
either reject or be liberal, the choice made here is the one in the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from sipguard.sip import Request, Response, SipParseError, build_response, canonical_name, parse, validate
from sipguard.sip.message import Message

DATA = Path(__file__).resolve().parents[1] / "data" / "sip" / "rfc4475"


@dataclass(frozen=True, slots=True)
class Ok:
    check: Callable[[Message, bytes], None] | None = None
    exact: bool = True        # serialize() gives back the input bytes


@dataclass(frozen=True, slots=True)
class Bad:
    stage: str                # "parse" or "validate"
    status: int = 400
    answerable: bool = False  # parse error carries a partial request


def _wsinv(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request) and m.method == "INVITE"
    assert m.max_forwards == 68
    assert m.cseq == (9, "INVITE")
    assert m.to.tag == "1918181833n"
    assert m.from_.display == 'J Rosenberg \\"'
    assert m.from_.tag == "98asjd8"
    assert [(v.transport, v.host, v.branch) for v in m.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.header("Subject") == ""           # "s :" compact form, empty value
    assert m.header("newfangledheader") == "newfangled value continued newfangled value"
    assert m.header("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.route[0].uri == "sip:services.example.com;lr;unknownwith=value;unknown-no-value"
    (contact,) = m.contact
    assert contact.display == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(m.body) == 150


def _intmeth(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.cseq == (139122385, m.method)
    assert m.ruri.host == "example.com"
    assert m.ruri.user is not None and m.ruri.user.startswith("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    assert m.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_.display == "token1~` token2'+_ token3*%!.-"
    assert m.from_.params == {"fromparam''~+*_!.-%": '"работающий"', "tag": "_token~1'+`*%!-."}
    assert m.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.max_forwards == 255
    assert m.header("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def _esc01(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request)
    assert m.ruri.user == "sips%3Auser%40example.com" and m.ruri.host == "example.net"
    assert m.to.uri == "sip:%75se%72@example.com"
    assert m.from_.uri == "sip:I%20have%20spaces@example.net"
    assert m.header("c") == "application/sdp"
    assert m.contact[0].uri == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"


def _escnull(m: Message, raw: bytes) -> None:
    assert m.to.uri == "sip:null-%00-null@example.com"
    assert [c.uri for c in m.contact] == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]


def _esc02(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request) and m.method == "RE%47IST%45R"
    assert m.cseq[1] == "RE%47IST%45R"


def _lwsdisp(m: Message, raw: bytes) -> None:
    assert m.from_.display == "caller" and m.from_.uri == "sip:caller@example.com"


def _longreq(m: Message, raw: bytes) -> None:
    assert m.from_.tag is not None and len(m.from_.tag) > 100
    assert len(m.vias) == 34
    assert m.header_count("Via") == 34
    assert m.to.display is not None and m.to.display.startswith("I have a user name of extreme")
    assert m.vias[0].host == "sip33.example.com" and m.vias[-1].host == "host.example.com"
    assert len(m.body) == 150


def _dblreq(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request) and m.method == "REGISTER"
    assert m.body == b""
    assert m.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    out = m.serialize()
    assert b"INVITE sip:joe@example.com" not in out
    assert out == raw[:raw.index(b"\r\n\r\n") + 4]


def _semiuri(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request)
    assert m.ruri.user == "user;par=u%40example.net" and m.ruri.host == "example.com"
    assert m.headers("Accept") == ["application/sdp", "application/pkcs7-mime", "multipart/mixed",
                                   "multipart/signed", "message/sip", "message/sipfrag"]


def _transports(m: Message, raw: bytes) -> None:
    assert [v.transport for v in m.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert m.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def _mpart01(m: Message, raw: bytes) -> None:
    assert m.body == raw[raw.index(b"\r\n\r\n") + 4:]
    assert len(m.body) == 553
    assert (m.header("Content-Type") or "").startswith("multipart/mixed")


def _unreason(m: Message, raw: bytes) -> None:
    assert isinstance(m, Response) and m.status == 200
    assert m.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"


def _noreason(m: Message, raw: bytes) -> None:
    assert isinstance(m, Response) and m.status == 100 and m.reason == ""


def _badbranch(m: Message, raw: bytes) -> None:
    assert m.top_via.branch == "z9hG4bK"


def _unkscm(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request) and m.ruri.scheme == "nobodyknowsthisscheme"


def _novelsc(m: Message, raw: bytes) -> None:
    assert isinstance(m, Request) and m.ruri.scheme == "soap.beep"


def _unksm2(m: Message, raw: bytes) -> None:
    assert m.to.uri == "isbn:2983792873" and m.from_.uri == "http://www.example.com"
    assert m.contact[0].uri == "name:John_Smith"


def _bext01(m: Message, raw: bytes) -> None:
    assert m.headers("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    assert m.headers("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]


def _invut(m: Message, raw: bytes) -> None:
    assert m.header("Content-Type") == "application/unknownformat"
    assert m.body.startswith(b"<audio>") and len(m.body) == 40


def _regaut01(m: Message, raw: bytes) -> None:
    assert m.header("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def _bcast(m: Message, raw: bytes) -> None:
    assert isinstance(m, Response)
    assert [v.host for v in m.vias] == ["192.0.2.198", "255.255.255.255"]


def _zeromf(m: Message, raw: bytes) -> None:
    assert m.max_forwards == 0


def _cparam01(m: Message, raw: bytes) -> None:
    # addr-spec without <>: the parameter belongs to the header, not the URI
    (c,) = m.contact
    assert c.uri == "sip:+19725552222@gw1.example.net" and c.params == {"unknownparam": None}


def _cparam02(m: Message, raw: bytes) -> None:
    (c,) = m.contact
    assert c.uri == "sip:+19725552222@gw1.example.net;unknownparam" and c.params == {}


def _regescrt(m: Message, raw: bytes) -> None:
    (c,) = m.contact
    assert c.uri == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def _inv2543(m: Message, raw: bytes) -> None:
    assert m.top_via.branch is None and m.from_.tag is None and m.max_forwards is None
    assert m.body.startswith(b"v=0") and not m.has("Content-Length")
    out = m.serialize()   # the missing Content-Length is added on the way out
    assert out.endswith(b"Content-Length: " + str(len(m.body)).encode() + b"\r\n\r\n" + m.body)
    assert parse(out).body == m.body


CASES: dict[str, Ok | Bad] = {
    # 3.1.1 valid messages
    "wsinv": Ok(_wsinv), "intmeth": Ok(_intmeth), "esc01": Ok(_esc01), "escnull": Ok(_escnull),
    "esc02": Ok(_esc02), "lwsdisp": Ok(_lwsdisp), "longreq": Ok(_longreq),
    "dblreq": Ok(_dblreq, exact=False), "semiuri": Ok(_semiuri), "transports": Ok(_transports),
    "mpart01": Ok(_mpart01), "unreason": Ok(_unreason), "noreason": Ok(_noreason),
    # 3.1.2 invalid messages
    "badinv01": Bad("validate"),                         # Via ";;,;,,"
    "clerr": Bad("parse", answerable=True),              # Content-Length past the datagram
    "ncl": Bad("parse", answerable=True),                # negative Content-Length
    "scalar02": Bad("parse", answerable=True),           # CSeq past 2**31
    "scalarlg": Bad("parse"),                            # a response: discarded
    "quotbal": Bad("validate"),                          # unterminated quoted display name
    "ltgtruri": Bad("parse", answerable=True),           # <> around the Request-URI
    "lwsruri": Bad("parse", answerable=True),            # LWS inside the Request-URI
    "lwsstart": Bad("parse", answerable=True),           # several SP in the request line
    "trws": Bad("parse", answerable=True),               # trailing SP in the request line
    "escruri": Bad("validate"),                          # escaped headers in the Request-URI
    "baddate": Ok(),                                     # bad Date: never read by the proxy
    "regbadct": Bad("validate"),                         # Contact with '?' outside <>
    "badaspec": Bad("validate"),                         # spaces inside <>
    "baddn": Bad("validate"),                            # non-token display name
    "badvers": Bad("parse", 505, answerable=True),       # SIP/7.0
    "mismatch01": Bad("parse", answerable=True),         # CSeq method differs
    "mismatch02": Bad("parse", answerable=True),         # unknown method, CSeq differs (400 allowed)
    "bigcode": Bad("parse"),                             # status 4294967301: response discarded
    # 3.2 transaction layer
    "badbranch": Ok(_badbranch),
    # 3.3 application layer: well formed, the proxy decides
    "insuf": Bad("parse"),                               # no Call-ID/From/To: cannot be answered
    "unkscm": Ok(_unkscm), "novelsc": Ok(_novelsc), "unksm2": Ok(_unksm2), "bext01": Ok(_bext01),
    "invut": Ok(_invut), "regaut01": Ok(_regaut01),
    "multi01": Bad("parse", answerable=True),            # two CSeq/Call-ID/To/From
    "mcl01": Bad("parse", answerable=True),              # two Content-Length values
    "bcast": Ok(_bcast), "zeromf": Ok(_zeromf), "cparam01": Ok(_cparam01), "cparam02": Ok(_cparam02),
    "regescrt": Ok(_regescrt), "sdp01": Ok(),
    # 3.4 backward compatibility
    "inv2543": Ok(_inv2543, exact=False),
}


def test_every_file_has_an_expected_outcome() -> None:
    assert sorted(CASES) == sorted(p.stem for p in DATA.glob("*.dat"))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if isinstance(c, Ok)))
def test_well_formed(name: str) -> None:
    case = CASES[name]
    assert isinstance(case, Ok)
    raw = (DATA / f"{name}.dat").read_bytes()
    msg = parse(raw)
    validate(msg)
    if case.check is not None:
        case.check(msg, raw)
    if case.exact:
        assert msg.serialize() == raw
    again = parse(msg.serialize())
    validate(again)
    assert again.serialize() == msg.serialize()


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if isinstance(c, Bad)))
def test_malformed(name: str) -> None:
    case = CASES[name]
    assert isinstance(case, Bad)
    raw = (DATA / f"{name}.dat").read_bytes()
    if case.stage == "parse":
        with pytest.raises(SipParseError) as info:
            parse(raw)
        assert info.value.status_hint == case.status
        assert (info.value.partial is not None) == case.answerable
        if info.value.partial is not None:
            _answer_parses(info.value.partial, case.status)
    else:
        msg = parse(raw)
        with pytest.raises(SipParseError) as info:
            validate(msg)
        assert info.value.status_hint == case.status
        assert isinstance(msg, Request)
        _answer_parses(msg, case.status)
    assert info.value.reason


def _answer_parses(req: Request, status: int) -> None:
    """The error response can be built and keeps the transaction keys, once each."""
    out = build_response(req, status, "Bad Request", [("Warning", '399 sipguard "bad"')], to_tag="sg1")
    head = out[:out.index(b"\r\n\r\n")].split(b"\r\n")
    assert head[0] == b"SIP/2.0 %d Bad Request" % status
    names = [canonical_name(line.split(b":")[0].decode()) for line in head[1:] if line[:1] not in b" \t"]
    for name in ("From", "To", "Call-ID", "CSeq", "Content-Length"):
        assert names.count(name) == 1, name
    assert names.count("Via") == req.header_count("Via")
    to_line = next(line for line in head if line.split(b":")[0].strip().lower() in (b"to", b"t"))
    assert b"tag=" in to_line
