"""Every public capture with SIP reads to the messages Wireshark shows in it.

Expected counts were established by inspecting each capture (frame by frame) and agree
with the descriptions in the corpus SOURCES.md. Captures under permissive licences are
in tests/data/captures; the others are read from ../shared/corpus and skip without it.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from sipguard.replay.capture import CapturedMessage, read_sip

DATA = Path(__file__).resolve().parents[1] / "data" / "captures"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus"


def _kinds(msgs: list[CapturedMessage]) -> Counter[str]:
    return Counter(m.data[:11].decode() if m.data.startswith(b"SIP/2.0")
                   else m.data.split(b" ", 1)[0].decode("latin-1") for m in msgs)


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{rel}: ../shared/corpus is not available")
    return path


def _body_ok(m: CapturedMessage) -> bool:
    head, _, body = m.data.partition(b"\r\n\r\n")
    cl = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
    return cl is None or int(cl.group(1)) == len(body)


# file, packets, SIP messages, INVITEs, transports, datagrams reassembled
CASES = [
    (DATA / "zeek-wireshark.pcap", 81, 81, 11, {"udp"}, 0),
    (DATA / "suricata-public-cloudshark-sip-s0.pcap", 10, 10, 2, {"udp"}, 0),
    (DATA / "suricata-sip-tcp.pcap", 11, 2, 0, {"tcp"}, 0),
    (DATA / "suricata-sip-body-large.pcap", 16, 2, 1, {"tcp"}, 0),
    (DATA / "zeek-sip-long-request-response-paths.pcap", 2, 2, 0, {"udp"}, 0),
    (DATA / "zeek-invalid-content-length.pcap", 2, 2, 1, {"udp"}, 0),
    (DATA / "pcapplusplus-sip_reqs.pcap", 4, 2, 1, {"udp"}, 0),
    (DATA / "pcapplusplus-sip_resp.pcap", 7, 7, 0, {"udp", "tcp"}, 0),
    ("suricata-verify/sip-method/sip.pcap", 691, 81, 11, {"udp"}, 0),
    ("heplify/sip_ipv4_tcp_fragmented.pcap", 1542, 406, 37, {"tcp"}, 0),
    ("heplify/sip_ipv4_tcp.pcap", 84, 7, 1, {"tcp"}, 0),
    ("heplify/sip_ipv4_tcp_retrans.pcap", 196, 8, 0, {"tcp", "udp"}, 0),
    ("heplify/sip_ipv6_udp.pcap", 6, 6, 1, {"udp"}, 0),
    ("heplify/erspan_sip_ipv4_udp.pcapng", 140, 140, 16, {"udp"}, 0),
    ("heplify/ipip0.pcap", 8, 8, 1, {"udp"}, 0),
    ("heplify/sip_tcp_websocket.pcap", 61, 28, 3, {"udp"}, 0),
    ("sngrep/ipv6frag.pcap", 34, 32, 2, {"udp"}, 2),
    ("sngrep/ipip.pcap", 4, 4, 1, {"tcp"}, 0),
    ("ndpi/FAX-Call-t38-CA-TDM-SIP-FB-1.pcap", 1552, 92, 16, {"udp"}, 0),
    ("ndpi/sip_hello.pcapng", 30, 8, 0, {"udp"}, 0),
    ("goffinet-sip-captures/private-test-sip-2.pcapng", 1012, 51, 2, {"udp"}, 1),
    ("goffinet-sip-captures/voip-extension.pcap", 609, 29, 3, {"udp"}, 0),
]


@pytest.mark.parametrize("path, packets, sip, invites, transports, reassembled", CASES,
                         ids=lambda v: Path(v).name if isinstance(v, (str, Path)) else None)
def test_capture_reads_to_expected_messages(path: str | Path, packets: int, sip: int, invites: int,
                                            transports: set[str], reassembled: int) -> None:
    file = path if isinstance(path, Path) else _shared(path)
    msgs, report = read_sip(file)
    assert report.packets == packets
    assert len(msgs) == sip == report.sip_messages
    assert _kinds(msgs)["INVITE"] == invites
    assert {m.transport for m in msgs} == transports
    assert report.fragments_reassembled == reassembled
    assert [m.time for m in msgs] == sorted(m.time for m in msgs)
    # TCP framing and fragment reassembly deliver whole messages: bodies match Content-Length.
    if "invalid-content-length" not in str(file):
        assert all(_body_ok(m) for m in msgs)


def test_large_tcp_body_is_reassembled_across_segments() -> None:
    msgs, _ = read_sip(DATA / "suricata-sip-body-large.pcap")
    invite = msgs[0]
    assert invite.data.startswith(b"INVITE sip:bob@target.com SIP/2.0\r\n")
    assert len(invite.data.partition(b"\r\n\r\n")[2]) == 65536
    assert invite.src == ("127.0.0.1", 59809) and invite.dst[1] == 5060


def test_oversized_udp_datagram_on_raw_ipv4_link() -> None:
    msgs, report = read_sip(DATA / "zeek-sip-long-request-response-paths.pcap")
    assert report.link_type == 228
    assert [len(m.data) for m in msgs] == [9563, 9548]
    assert msgs[0].data.startswith(b"OPTIONS sip:bob@example.com SIP/2.0")


def test_junk_datagram_is_not_sip_and_the_request_after_it_is() -> None:
    msgs, report = read_sip(DATA / "zeek-sip-junk-before-request.pcap")
    assert [m.data.split(b"\r\n")[0] for m in msgs] == [b"REGISTER sip:1.1.1.1:5060 SIP/2.0"]
    assert report.issue_count == 0


def test_ipv6_fragmented_invites_are_whole() -> None:
    msgs, _ = read_sip(_shared("sngrep/ipv6frag.pcap"))
    invites = [m for m in msgs if m.data.startswith(b"INVITE ")]
    assert [len(m.data) for m in invites] == [1691, 1871]
    assert all(b"P-Asserted-Identity" in m.data for m in invites)
    assert invites[1].src == ("fd17:625c:f037:2:a00:27ff:feb9:3519", 5062)


def test_ipv4_fragmented_invite_is_whole() -> None:
    msgs, _ = read_sip(_shared("goffinet-sip-captures/private-test-sip-2.pcapng"))
    proxied = [m for m in msgs if m.data.startswith(b"INVITE sip:telephone1@172.16.98.181")]
    assert len(proxied) == 1 and len(proxied[0].data) == 1487   # UDP length 1495
    assert proxied[0].data.count(b"\r\nVia: ") == 2
    assert _body_ok(proxied[0])


def test_tcp_retransmission_does_not_duplicate_messages() -> None:
    msgs, report = read_sip(_shared("heplify/sip_ipv4_tcp_retrans.pcap"))
    tcp = [m.data.split(b"\r\n")[0] for m in msgs if m.transport == "tcp"]
    assert tcp.count(b"REGISTER sip:172.168.0.228;transport=tcp SIP/2.0") == 2
    assert report.tcp_retransmissions >= 1


def test_ip_in_ip_tcp_call() -> None:
    msgs, _ = read_sip(_shared("sngrep/ipip.pcap"))
    assert [m.data.split(b"\r\n")[0][:12] for m in msgs] == [
        b"INVITE sip:1", b"SIP/2.0 183 ", b"SIP/2.0 200 ", b"BYE sip:1bda"]


@pytest.mark.parametrize("rel", ["ndpi/fuzz-2006-06-26-2594.pcap"])
def test_fuzzed_capture_reports_and_reads_what_it_can(rel: str) -> None:
    msgs, report = read_sip(_shared(rel))
    assert report.packets == 691
    assert report.issue_count > 0
    assert any("IPv4" in str(i) or "TCP" in str(i) for i in report.issues)
    assert all(i.packet is None or 1 <= i.packet <= 691 for i in report.issues)
    assert len(msgs) > 40


def test_port_filter_keeps_only_matching_flows() -> None:
    all_msgs, _ = read_sip(DATA / "pcapplusplus-sip_resp.pcap")
    only, report = read_sip(DATA / "pcapplusplus-sip_resp.pcap", ports=[5060])
    assert 0 < len(only) <= len(all_msgs)
    assert all(5060 in (m.src[1], m.dst[1]) for m in only)
    none, report = read_sip(DATA / "zeek-wireshark.pcap", ports=[1])
    assert none == [] and report.filtered == 81
