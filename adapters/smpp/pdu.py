"""SMPP 3.4 PDUs on trio streams: framing, encoding and decoding.

smpplib does the encoding and decoding of PDU bodies; the I/O is ours. A PDU on the wire is a 16-byte
header (command_length, command_id, command_status, sequence_number, all big-endian) and a body.
:class:`PduStream` reads whole PDUs from a byte stream and writes them one at a time (trio forbids two
concurrent ``send_all`` on one stream), and is used by both the client driver and the simulated SMSC.
"""

from __future__ import annotations

import struct
from typing import Any

import smpplib.command_codes
import smpplib.consts
import smpplib.pdu
import smpplib.smpp
import trio

__all__ = [
    "HEADER",
    "MAX_PDU",
    "PduError",
    "PduStream",
    "SequenceGenerator",
    "command_name",
    "make",
    "parse",
]

HEADER = struct.Struct(">IIII")
MAX_PDU = 64 * 1024  # far above any legal PDU (message_payload tops out near 64 KiB)


class PduError(Exception):
    """The peer sent bytes that are not an SMPP PDU; the link should be dropped."""


class SequenceGenerator:
    """sequence_number: 1 … 0x7FFFFFFF, then round again (SMPP 3.4 §3.2)."""

    def __init__(self, start: int = 0) -> None:
        self.sequence = start

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


class _NoSequence:
    """smpplib asks its 'client' for a sequence number when it builds or parses a PDU; we set our own."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_NOSEQ = _NoSequence()


def command_name(command_id: int) -> str:
    try:
        return str(smpplib.command_codes.get_command_name(command_id))
    except Exception:
        return f"0x{command_id:08X}"


def make(name: str, sequence: int, **fields: Any) -> Any:
    """Build an smpplib PDU object with this sequence number; string fields may be str or bytes."""
    pdu = smpplib.smpp.make_pdu(name, client=_NOSEQ, **fields)
    pdu.sequence = sequence
    return pdu


def parse(raw: bytes) -> Any:
    """Decode one whole PDU (header included). C-string fields come back as bytes."""
    try:
        pdu = smpplib.smpp.parse_pdu(raw, client=_NOSEQ, allow_unknown_opt_params=True)
    except Exception as e:
        _, command_id, _, seq = HEADER.unpack_from(raw)
        raise PduError(f"cannot decode {command_name(command_id)} seq {seq}: {e}") from e
    if pdu is None:
        _, command_id, _, seq = HEADER.unpack_from(raw)
        raise PduError(f"unknown command_id 0x{command_id:08X} (seq {seq})")
    return pdu


def header(raw: bytes) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number)."""
    return HEADER.unpack_from(raw)  # type: ignore[return-value]


class PduStream:
    """Whole PDUs over a trio stream."""

    def __init__(self, stream: trio.abc.Stream, *, max_pdu: int = MAX_PDU) -> None:
        self.stream = stream
        self.max_pdu = max_pdu
        self._buf = bytearray()
        self._send_lock = trio.Lock()

    async def receive_raw(self) -> bytes | None:
        """The next PDU's bytes, or None when the peer closed the connection cleanly between PDUs."""
        while True:
            if len(self._buf) >= 4:
                (length,) = struct.unpack_from(">I", self._buf)
                if length < 16 or length > self.max_pdu:
                    raise PduError(f"command_length {length} is out of range (16 … {self.max_pdu})")
                if len(self._buf) >= length:
                    raw = bytes(self._buf[:length])
                    del self._buf[:length]
                    return raw
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                if self._buf:
                    raise PduError(f"connection closed in the middle of a PDU ({len(self._buf)} bytes)")
                return None
            self._buf += chunk

    async def receive(self) -> Any | None:
        raw = await self.receive_raw()
        return None if raw is None else parse(raw)

    async def send_raw(self, data: bytes) -> None:
        async with self._send_lock:
            await self.stream.send_all(data)

    async def send(self, pdu: Any) -> None:
        await self.send_raw(pdu.generate())

    async def aclose(self) -> None:
        await self.stream.aclose()


def generic_nack(sequence: int, status: int = smpplib.consts.SMPP_ESME_RINVCMDID) -> bytes:
    """A generic_nack for a PDU we could not understand (no body)."""
    return HEADER.pack(16, 0x80000000, status, sequence)
