"""The DLR sink, a subprocess of the Kannel rows (``python -m masd_bench _sink PORT FILE``): a small
HTTP/1.1 server that records when each receipt Kannel calls back with arrived."""

from __future__ import annotations

import asyncio
import re
import signal
import time
import urllib.parse
from pathlib import Path


def run_sink(port: int, out: Path) -> int:
    """A small HTTP/1.1 server (keep-alive) that records every DLR Kannel calls back with: GET
    /dlr?id=..&t=..&type=.. → one line of id, t, type and the arrival time. /count answers how many;
    /dump writes them to ``out``."""
    records: list[str] = []

    def dump() -> None:
        out.write_text("".join(records))

    def handle(target: str) -> bytes:
        path, _, query = target.partition("?")
        if path == "/dlr":
            q = urllib.parse.parse_qs(query)
            records.append(
                "\t".join((q.get("id", ["?"])[0], q.get("t", ["0"])[0], q.get("type", ["?"])[0]))
                + f"\t{time.time():.6f}\n"
            )
            return b"ok"
        if path == "/count":
            return str(len(records)).encode()
        if path == "/dump":
            dump()
            return str(len(records)).encode()
        return b"?"

    class Http(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            while True:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end]
                m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                body_len = int(m.group(1)) if m else 0
                if len(self.buf) < end + 4 + body_len:
                    return
                self.buf = self.buf[end + 4 + body_len :]
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                body = handle(parts[1].decode("latin-1") if len(parts) > 1 else "/")
                close = b"connection: close" in head.lower() or parts[-1] == b"HTTP/1.0"
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                    % (len(body), b"Connection: close\r\n" if close else b"", body)
                )
                if close:
                    self.transport.close()
                    return

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        server = await loop.create_server(Http, "127.0.0.1", port, backlog=1024)
        async with server:
            await stop.wait()
        dump()

    asyncio.run(serve())
    return 0
