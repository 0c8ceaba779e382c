"""Transaction steering in the kernel: a classic BPF program chooses the worker of a datagram.

With several workers the listening UDP sockets form one SO_REUSEPORT group. Left alone the
kernel picks a socket by a hash of the sender's address and port, so one busy peer lands on
one worker, which then hands half of its requests to the other (``steer.py``): a second
system call, a second wake-up and a cold second worker for every request handed over.

Here the supervisor makes the group itself, one socket per worker in worker order (the
group's index of a socket is the order it joined), and attaches a program
(SO_ATTACH_REUSEPORT_CBPF) that reads the datagram's payload: it finds the first
``branch=`` in the first ``SCAN`` bytes and hashes up to ``MAXLEN`` bytes of its value, the
same hash ``steer.owner_of`` computes from the top Via's branch. So an INVITE, its
retransmissions, its CANCEL and the ACK of a non-2xx reach their owner directly. The worker
still checks the owner itself: when the two disagree (a ``branch=`` before the top Via, an
upper-case ``BRANCH``, a terminator the program does not know) the usual hand-over fixes it.
A datagram without ``branch=`` in reach gets the kernel's own hash (the program answers an
index past the group). Where the kernel refuses the program, steering is as before.

Classic BPF has no loops and 8-bit conditional jumps: the scan and the hash are unrolled,
and conditional jumps go through local ``ja`` trampolines. The kernel takes 4,096 classic
instructions at most, and fewer once translated: on this project's test machine (Linux 6.18)
3,591 were accepted and 3,815 refused (ENOMEM), so the program is kept near 3,100.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

from sipguard.proxy.steer import MAXLEN  # the hash the program computes is steer.branch_hash

log = logging.getLogger("sipguard.steer")

SO_ATTACH_REUSEPORT_CBPF = 51     # Linux >= 4.5; not in the socket module
SCAN = 384                        # offsets searched for "branch=" (the top Via's is far inside)
TERMINATORS = b";, \r"            # where the program stops reading the value
MAX_INSNS = 4096
NOT_FOUND = 0xFFFFFFFF            # an index past the group: the kernel's own choice

# classic BPF opcodes (linux/bpf_common.h, linux/filter.h)
_LD_W_ABS, _LD_B_IND, _LD_IMM, _LD_MEM = 0x20, 0x50, 0x00, 0x60
_LDX_IMM, _LDX_MEM = 0x01, 0x61
_ST, _STX = 0x02, 0x03
_AND_K, _MUL_K, _ADD_X, _MOD_K = 0x54, 0x24, 0x0C, 0x94
_JA, _JEQ_K = 0x05, 0x15
_RET_K, _RET_A = 0x06, 0x16

Insn = tuple[int, int, int, int]   # code, jt, jf, k


def program(workers: int) -> list[Insn]:
    """The steering program for a group of ``workers`` sockets. Scratch memory: M0 the hash,
    M1 the current byte, M2 the offset of the branch value."""
    scan: list[Insn] = []
    for off in range(SCAN):
        at_hash = (SCAN - off) * 7 - 7 + 1   # from this block's "ja" to the first hash instruction
        scan += [
            (_LD_W_ABS, 0, 0, off),
            (_JEQ_K, 0, 5, 0x6272616E),            # "bran"
            (_LD_W_ABS, 0, 0, off + 4),
            (_AND_K, 0, 0, 0xFFFFFF00),
            (_JEQ_K, 0, 2, 0x63683D00),            # "ch=" and any byte
            (_LDX_IMM, 0, 0, off + 7),             # X = where the value starts
            (_JA, 0, 0, at_hash),
        ]
    out = scan + [(_RET_K, 0, 0, NOT_FOUND)]
    hashing: list[Insn] = [(_LD_IMM, 0, 0, 0), (_ST, 0, 0, 0), (_STX, 0, 0, 2)]
    per_byte = 10 + len(TERMINATORS)   # load, the compares, two jumps, seven to add the byte
    for i in range(MAXLEN):
        to_end = (MAXLEN - i) * per_byte - (len(TERMINATORS) + 3)  # from this byte's "ja END"
        block: list[Insn] = [(_LD_B_IND, 0, 0, i)]
        for n, term in enumerate(TERMINATORS):
            block.append((_JEQ_K, len(TERMINATORS) - n, 0, term))  # to this byte's "ja END"
        block += [
            (_JA, 0, 0, 1),                      # not a terminator: skip the trampoline
            (_JA, 0, 0, to_end),                 # trampoline to END
            (_ST, 0, 0, 1),
            (_LD_MEM, 0, 0, 0),
            (_MUL_K, 0, 0, 31),
            (_LDX_MEM, 0, 0, 1),
            (_ADD_X, 0, 0, 0),
            (_ST, 0, 0, 0),
            (_LDX_MEM, 0, 0, 2),
        ]
        hashing += block
    out += hashing + [(_LD_MEM, 0, 0, 0), (_MOD_K, 0, 0, workers), (_RET_A, 0, 0, 0)]
    if len(out) > MAX_INSNS:  # pragma: no cover - the sizes above are fixed
        raise ValueError(f"steering program of {len(out)} instructions")
    return out


def attach(sock: socket.socket, workers: int) -> bool:
    """Attach the program to ``sock``'s reuseport group; False (logged) where not possible."""
    insns = program(workers)
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *insn) for insn in insns))
    fprog = struct.pack("HxxxxxxQ", len(insns), ctypes.addressof(code))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("transaction steering stays in the workers (the kernel refused the reuseport "
                    "program: %s)", exc)
        return False
    finally:
        # the kernel reads the instructions through the address in fprog: the buffer must live
        # until the call returns (compiled code may drop a local after its last use)
        del code
    return True
