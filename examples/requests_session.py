"""A requests Session whose every request goes through the `http` preset.

`brace.http.session()` is a plain `requests.Session` with `brace.RetryAdapter` mounted on
http:// and https://. A tiny local server (127.0.0.1, a free port) answers 503 twice, then
200; a POST without an Idempotency-Key is never sent twice; with a key it is retried like
a GET. Every response says how it was obtained in `response.brace`.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import brace


class FlakyHandler(BaseHTTPRequestHandler):
    """503 (Retry-After: 0) for the first two requests of each path, then 200."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[dict[str, int]] = {}

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = f"{self.command} {self.path}"
        self.seen[key] = self.seen.get(key, 0) + 1
        ok = self.seen[key] > 2
        body = b"hello" if ok else b"busy"
        self.send_response(200 if ok else 503)
        if not ok:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Keep the demo output to brace's events."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with brace.http.session() as session:
            session.trust_env = False  # a local server: never through an environment proxy
            r = session.get(f"{base_url}/greeting", timeout=2)
            print(f"GET /greeting -> {r.status_code} {r.text!r} "
                  f"after {r.brace['attempts']} attempts")
            r = session.post(f"{base_url}/orders", json={"sku": 42}, timeout=2)
            print(f"POST /orders without a key -> {r.status_code} (sent once)")
            r = session.post(f"{base_url}/payments", json={"cents": 100}, timeout=2,
                             headers={"Idempotency-Key": "order-42"})
            print(f"POST /payments with a key -> {r.status_code} {r.text!r}")
        print(f"server saw: {FlakyHandler.seen}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    main()
