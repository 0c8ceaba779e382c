"""``make demo``: a few real calls through a real sipguard, on loopback, then what happened.

    python -m sipguard.demo --config config/sipguard.demo.yaml

Starts a certificate repository (HTTP, serving the demo certificates), sipguard itself
(``sipguard serve``, the memory store), a sipp UAS behind it and, per call, a sipp UAC in
front of it; then reads sipguard's own call records (the traceback store) and prints each
call's decision. Everything it started is stopped at the end, also on Ctrl-C.

The ports in the config (5060, 5070, 8089, 9090) may be taken on a busy machine: the demo
runs a copy of the config on free loopback ports (written beside it, so its relative paths
still hold, and removed at the end), and if its own sipguard exits it says why at once.

The demo STI PKI in ``config/demo/`` (a root, sipguard's signing certificate, an upstream
carrier's certificate) holds throwaway keys made by ``python -m sipguard.demo --make-pki``:
never use them for anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="sipguard demo UAC">
  <send retrans="500">
    <![CDATA[

      INVITE sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip];user=phone>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:[field0]@[local_ip]:[local_port]>
      Max-Forwards: 70
      IDENTITY_LINE
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="403" optional="true" next="rejected"/>
  <recv response="428" optional="true" next="rejected"/>
  <recv response="436" optional="true" next="rejected"/>
  <recv response="437" optional="true" next="rejected"/>
  <recv response="438" optional="true" next="rejected"/>
  <recv response="503" optional="true" next="rejected"/>
  <recv response="603" optional="true" next="rejected"/>
  <recv response="608" optional="true" next="rejected"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <pause milliseconds="200"/>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      [routes]
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <nop next="end"/>
  <label id="rejected"/>
  <send>
    <![CDATA[

      ACK sip:[field1]@[remote_ip]:[remote_port];user=phone SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@[local_ip];user=phone>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[remote_ip];user=phone>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <label id="end"/>
</scenario>
"""

PKI_FILES = ("sti-roots/demo-root.pem", "signing.key", "signing.pem", "upstream.key", "upstream.pem")


def make_pki(directory: Path, years: int = 20) -> None:
    """A throwaway STI PKI: root CA, sipguard's signing cert (SPC 999G), an upstream carrier's
    cert (SPC 1234), both with TNAuthList, valid for ``years``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from sipguard.shaken.keys import encode_tnauthlist

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = now - dt.timedelta(days=1), now + dt.timedelta(days=365 * years)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sipguard demo (not for production)")])

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(name("sipguard demo STI-CA root"))
            .issuer_name(name("sipguard demo STI-CA root")).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    (directory / "sti-roots").mkdir(parents=True, exist_ok=True)
    (directory / "sti-roots/demo-root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    for leaf, spc in (("signing", "999G"), ("upstream", "1234")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(f"sipguard demo {leaf} SPC {spc}"))
                .issuer_name(root.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
                               critical=False)
                .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26"),
                                                          encode_tnauthlist((spc,))), critical=False)
                .sign(root_key, hashes.SHA256()))
        (directory / f"{leaf}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (directory / f"{leaf}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _Repository:
    """Serves the demo certificates over HTTP, like an STI certificate repository."""

    def __init__(self, directory: Path, host: str, port: int) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer((host, port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Repository:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def _wait_options(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    """True once ``proc`` (our sipguard) answers OPTIONS on host:port; False at once when it
    exits (a 200 from another program on the port must not count)."""
    end = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.3)
        local = sock.getsockname()
        while time.monotonic() < end and proc.poll() is None:
            msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};"
                   f"branch=z9hG4bKdemo{time.time_ns()}\r\nFrom: <sip:demo@{local[0]}>;tag=d\r\n"
                   f"To: <sip:{host}>\r\nCall-ID: demo-probe-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\n"
                   "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            sock.sendto(msg.encode(), (host, port))
            try:
                if sock.recv(65535).startswith(b"SIP/2.0 200"):
                    return proc.poll() is None
            except TimeoutError:
                continue
    return False


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_sip_port() -> int:
    """A loopback port free for both UDP and TCP (sipguard listens on both)."""
    for _ in range(50):
        port = _free_udp_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError("no loopback port is free for both UDP and TCP")


@dataclass(frozen=True, slots=True)
class DemoPorts:
    sip: int          # sipguard, UDP and TCP
    uas: int          # the sipp UAS: sipguard's next hop
    repository: int   # the certificate repository (x5u)
    http: int | None  # sipguard's /metrics, when the config has an http section


def demo_config(config_path: str) -> tuple[Path, DemoPorts]:
    """A copy of ``config_path`` on free loopback ports, written beside it (its relative
    paths stay right): the listening addresses, the next hop, the signing x5u and HTTP."""
    import yaml

    source = Path(config_path)
    raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    http = raw.get("http") if isinstance(raw.get("http"), dict) else None
    ports = DemoPorts(_free_sip_port(), _free_udp_port(), _free_tcp_port(),
                      _free_tcp_port() if http and http.get("listen") else None)
    raw["listen"] = [f"udp://127.0.0.1:{ports.sip}", f"tcp://127.0.0.1:{ports.sip}"]
    raw["next_hop"] = f"sip:127.0.0.1:{ports.uas}"
    signing = (raw.get("shaken") or {}).get("signing")
    if isinstance(signing, dict) and signing.get("x5u"):
        signing["x5u"] = f"http://127.0.0.1:{ports.repository}{urlparse(signing['x5u']).path}"
    if http is not None and ports.http is not None:
        http["listen"] = f"127.0.0.1:{ports.http}"
    path = source.with_name(f".{source.stem}.run-{os.getpid()}.yaml")
    path.write_text(f"# written by `python -m sipguard.demo` from {source.name} on free ports; "
                    "removed when the demo ends\n" + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path, ports


def sipguard_command() -> str:
    """How to run ``sipguard`` from here: the script beside this Python (``.venv/bin/sipguard``
    after ``make demo``, which is not on PATH), else ``python -m sipguard``."""
    script = Path(sys.executable).parent / "sipguard"
    if shutil.which("sipguard") == str(script):
        return "sipguard"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m sipguard"


def display(number: str | None) -> str:
    """A recorded number as ``sipguard traceback`` shows it (E.164 with its +)."""
    from sipguard.records.answer import plus

    return plus(number) or "-"


def final_response(trace: str) -> str | None:
    """The final response to the INVITE the caller got, from sipp's message trace
    (``-trace_msg``): its status line after ``SIP/2.0``, e.g. ``603 Network Blocked``."""
    final = None
    for block in trace.split("message received")[1:]:
        lines = block.split("\n")
        status = next((line.strip() for line in lines if line.startswith("SIP/2.0 ")), None)
        cseq = next((line for line in lines if line.lower().startswith("cseq:")), "")
        if status is not None and cseq.rstrip().upper().endswith("INVITE") and not status[8:9] == "1":
            final = status[8:]
    return final


def _calls(config_dir: Path, now: float, repository: int) -> list[tuple[str, str, str, str]]:
    """(description, caller, callee, Identity header value or "" for an unsigned call)."""
    from sipguard.shaken.sign import Signer, SigningConfig

    upstream = Signer.load(SigningConfig(key=str(config_dir / "demo/upstream.key"),
                                         cert=str(config_dir / "demo/upstream.pem"),
                                         x5u=f"http://127.0.0.1:{repository}/upstream.pem", attest="A"), now)
    good = upstream.sign("12024561111", ["13036231000"], now, upstream.origid_for("demo"))
    token, _, params = good.partition(";")
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-6]}AAAAAA;{params}"
    stale = upstream.sign("12024561111", ["13036231000"], now - 600, upstream.origid_for("demo"))
    none = ""
    return [
        ("signed by the upstream carrier (A)", "+12024561111", "+13036231000", good),
        ("signature tampered with (tagged, not blocked)", "+12024561111", "+13036231000", tampered),
        ("signed 10 minutes ago (stale iat)", "+12024561111", "+13036231000", stale),
        ("unsigned, US caller ID", "+12127363100", "+13036231000", none),
        ("unsigned, caller on the DNO list", "+18002223333", "+13036231000", none),
        ("unsigned, invalid caller ID (NPA 055)", "+10552223333", "+13036231000", none),
        ("unsigned, UK caller ID", "+442071838750", "+13036231000", none),
        ("emergency call from a DNO number", "+18002223333", "911", none),
    ]


def run(config_path: str) -> int:
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp is not installed: `make demo` installs it (Debian package sip-tester)", file=sys.stderr)
        return 1
    from sipguard.errors import SipguardError

    try:
        run_path, ports = demo_config(config_path)
    except (OSError, SipguardError) as exc:
        print(f"demo: {config_path}: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(config_path, str(run_path), ports, sipp)
    finally:
        run_path.unlink(missing_ok=True)


def _run(config_path: str, run_path: str, ports: DemoPorts, sipp: str) -> int:
    from sipguard.config import load_config

    config = load_config(run_path)
    config_dir = Path(config.base_dir)
    started = time.time()
    procs: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="sipguard-demo-"))
    try:
        with _Repository(config_dir / "demo", "127.0.0.1", ports.repository):
            log = open(work / "sipguard.log", "wb")
            sipguard = subprocess.Popen([sys.executable, "-m", "sipguard", "serve", "-c", run_path],
                                        stdout=log, stderr=subprocess.STDOUT)
            procs.append(sipguard)
            print(f"sipguard: serve -c {config_path} on udp/tcp 127.0.0.1:{ports.sip} ({config.mode} mode, "
                  f"{config.store} store), log in {work / 'sipguard.log'}")
            uas = subprocess.Popen([sipp, "-sn", "uas", "-i", "127.0.0.1", "-p", str(ports.uas), "-nostdin"],
                                   cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(uas)
            print(f"sipp UAS: next hop 127.0.0.1:{ports.uas}; certificates on http://127.0.0.1:{ports.repository}/")
            if not _wait_options("127.0.0.1", ports.sip, 20, sipguard):
                why = "exited" if sipguard.poll() is not None else "did not answer OPTIONS within 20 s"
                print(f"demo: sipguard on 127.0.0.1:{ports.sip} {why}; its log:\n"
                      + (work / "sipguard.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                return 1
            if uas.poll() is not None:
                print(f"demo: the sipp UAS on 127.0.0.1:{ports.uas} exited (exit {uas.returncode}): "
                      "is the port taken?", file=sys.stderr)
                return 1
            # sipp's CSV separator is ';', which an Identity value contains: the token and the
            # x5u go in fields of their own and the scenario puts the header back together
            (work / "signed.xml").write_text(SCENARIO.replace(
                "IDENTITY_LINE", "Identity: [field2];info=<[field4]>;alg=ES256;ppt=shaken"))
            (work / "unsigned.xml").write_text(SCENARIO.replace("IDENTITY_LINE", "X-Demo: unsigned"))
            calls = _calls(config_dir, time.time(), ports.repository)
            print(f"\n{len(calls)} calls, sipp UAC -> sipguard 127.0.0.1:{ports.sip} -> sipp UAS\n")
            print(f"  {'':54s} what the caller got")
            for index, (description, caller, callee, identity) in enumerate(calls):
                call_id = f"demo-{int(started)}-{index}"
                token, _, params = identity.partition(";")
                x5u_url = params.split("info=<", 1)[1].split(">", 1)[0] if token else ""
                (work / "call.csv").write_text(f"SEQUENTIAL\n{caller};{callee};{token};-;{x5u_url};\n")
                trace = work / f"call-{index}.msg"
                result = subprocess.run(
                    [sipp, f"127.0.0.1:{ports.sip}", "-sf", "signed.xml" if token else "unsigned.xml",
                     "-inf", "call.csv", "-m", "1", "-i", "127.0.0.1", "-p", str(_free_udp_port()),
                     "-cid_str", f"{call_id}-%u", "-nostdin", "-timeout", "15s", "-timeout_error",
                     "-trace_msg", "-message_file", str(trace)],
                    cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
                final = final_response(trace.read_text(errors="replace") if trace.exists() else "")
                if result.returncode != 0:
                    outcome = f"sipp failed (exit {result.returncode})"
                elif final is None or final.startswith("2"):
                    outcome = f"forwarded, answered ({final or '200 OK'})"
                else:
                    outcome = f"rejected: {final}"
                print(f"  call {index + 1}: {description:46s} {outcome}")
                if sipguard.poll() is not None:
                    print(f"demo: sipguard exited (exit {sipguard.returncode}); its log:\n"
                          + (work / "sipguard.log").read_text(errors="replace")[-3000:], file=sys.stderr)
                    return 1
            print("\nA forwarded call may still be tagged: the verstat column below is what the callee was shown.")
            time.sleep(1.5)  # let the record writer flush its batch
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return _report(config_path, run_path, started)


def _report(config_path: str, run_path: str, since: float) -> int:
    import asyncio

    from sipguard.config import load_config
    from sipguard.records.query import find

    config = load_config(run_path)
    records = asyncio.run(find(config.store, config.traceback, since=since, until=time.time() + 5))
    records = [r for r in records if r.call_id.startswith(f"demo-{int(since)}")]
    records.sort(key=lambda r: r.call_id)
    print("\nWhat sipguard decided (from its own call records, `sipguard traceback`):\n")
    print(f"  {'caller':15s} {'callee':12s} {'verstat':22s} {'att':3s} {'action':8s} {'status':6s} "
          f"{'signed':6s} rule / reasons")
    for r in records:
        why = r.rule or "(default)"
        if r.shadow_action and r.shadow_action != r.action:
            why += f" (would {r.shadow_action}: not applied, emergency call)"
        if r.reasons and r.reasons != ("no-identity",):
            why += " / " + ",".join(r.reasons)
        print(f"  {display(r.caller):15s} {display(r.callee):12s} {r.verstat:22s} {r.attest or '-':3s} "
              f"{r.action:8s} {str(r.status or '-'):6s} {'yes' if r.signed else 'no':6s} {why}")
    command = sipguard_command()
    print(f"\n{len(records)} calls recorded. Try: {command} traceback -c {config_path} --caller +18002223333")
    print(f"The ITG answer for one of them: {command} traceback answer -c {config_path} --caller +18002223333")
    return 0 if records else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sipguard.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="config/sipguard.demo.yaml")
    ap.add_argument("--make-pki", metavar="DIR", help="write a fresh demo STI PKI into DIR and exit")
    args = ap.parse_args(argv)
    if args.make_pki:
        make_pki(Path(args.make_pki))
        print(f"demo PKI written to {args.make_pki}: {', '.join(PKI_FILES)}")
        return 0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args.config)


if __name__ == "__main__":
    raise SystemExit(main())
