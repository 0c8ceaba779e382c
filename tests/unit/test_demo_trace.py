"""make demo: what each caller got is read from sipp's message trace (-trace_msg)."""

from __future__ import annotations

from sipguard.demo import final_response


def block(status: str, cseq: str) -> str:
    return ("----------------------------------------------- 2026-12-05 19:55:01.123456\n"
            "UDP message received [350] bytes :\n\n"
            f"SIP/2.0 {status}\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1\nCSeq: {cseq}\n"
            "Content-Length: 0\n\n")


SENT = ("----------------------------------------------- 2026-12-05 19:55:01.100000\n"
        "UDP message sent (400 bytes):\n\nINVITE sip:+13036231000@127.0.0.1:5060 SIP/2.0\nCSeq: 1 INVITE\n\n")


def test_an_answered_call_reports_the_2xx_not_the_bye_answer() -> None:
    trace = SENT + block("100 Trying", "1 INVITE") + block("200 OK", "1 INVITE") + block("200 OK", "2 BYE")
    assert final_response(trace) == "200 OK"


def test_a_blocked_call_reports_the_rejection() -> None:
    assert final_response(SENT + block("100 Trying", "1 INVITE") + block("603 Network Blocked", "1 INVITE")) \
        == "603 Network Blocked"


def test_no_final_response() -> None:
    assert final_response(SENT + block("100 Trying", "1 INVITE")) is None
    assert final_response("") is None
