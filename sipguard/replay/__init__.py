"""Replay: read SIP from packet captures and feed it through the real pipeline.

``capture`` turns pcap/pcapng files into SIP messages (decapsulation, IP fragment
reassembly, TCP stream reassembly with SIP framing); ``pcapwrite`` builds captures
from message texts; ``runner`` drives the pipeline with the capture's clock. This
package never imports ``sipguard.proxy``: replay needs no sockets.
"""
