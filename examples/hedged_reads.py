"""Hedged reads: a second request races a slow first one, and the first answer wins.

A tiny local server (127.0.0.1, a free port) plays a replicated store: the first read of
each profile hits a slow replica (it would answer after 0.5 s), every later read answers at
once. With ``hedge_after=0.05`` each read is answered in about 50 ms, the slow request is
cancelled, and a POST without an Idempotency-Key is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import brace


class ReplicaHandler(BaseHTTPRequestHandler):
    """The first request of each path is slow (0.5 s); the others answer at once."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[dict[str, int]] = {}
    cancelled: ClassVar[list[str]] = []  # slow requests whose client hung up

    def _client_hung_up_within(self, seconds: float) -> bool:
        readable, _, _ = select.select([self.connection], [], [], seconds)
        return bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = f"{self.command} {self.path}"
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] == 1 and self._client_hung_up_within(0.5):  # the slow replica
            self.cancelled.append(key)
            self.close_connection = True
            return
        body = f"{self.path} v{self.seen[key]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Keep the demo output to brace's events."""


async def read_profiles(base_url: str) -> None:
    policy = brace.http(hedge_after=0.05)
    async with policy.async_client(base_url=base_url, timeout=5) as client:
        for uid in (1, 2, 3):
            started = time.monotonic()
            r = await client.get(f"/profiles/{uid}")
            took = time.monotonic() - started
            # The hedge answers long before the slow replica would (0.5 s).
            print(f"GET /profiles/{uid} -> {r.text!r} "
                  f"{'before the slow replica' if took < 0.45 else f'in {took:.2f} s'}, "
                  f"attempts={r.extensions['brace']['attempts']}")
        started = time.monotonic()
        r = await client.post("/orders", json={"sku": 42})
        print(f"POST /orders without a key -> {r.status_code} after "
              f"{'the slow 0.5 s' if time.monotonic() - started >= 0.45 else 'less'} (sent once)")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReplicaHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hedges: list[dict[str, Any]] = []
    brace.observe(lambda event, fields: hedges.append(fields)
                  if event == "hedge.started" else None)
    try:
        asyncio.run(read_profiles(f"http://127.0.0.1:{server.server_address[1]}"))
        print(f"hedges started: {len(hedges)}")
        print(f"server saw: {ReplicaHandler.seen}")
        print(f"slow requests cancelled by the client: {sorted(ReplicaHandler.cancelled)}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    main()
