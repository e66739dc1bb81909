"""The openai SDK under @brace.llm(): one retry layer, the provider's own wait honoured.

A local stand-in provider (127.0.0.1, a free port) answers the first completion with
429 and `retry-after-ms: 150`, then with a completion. The SDK's own retries are off
(`max_retries=0`), so brace alone decides: it waits the 150 ms the server asked for.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import openai

import brace

COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-local",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Hello from the stand-in!"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
}
RATE_LIMITED = {"error": {"message": "Rate limit reached", "type": "requests", "code": None}}


class Provider(BaseHTTPRequestHandler):
    """429 (retry-after-ms: 150) for the first request, then a chat completion."""

    protocol_version = "HTTP/1.1"
    requests: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.requests.append(self.path)
        first = len(self.requests) == 1
        body = json.dumps(RATE_LIMITED if first else COMPLETION).encode()
        self.send_response(429 if first else 200)
        if first:
            self.send_header("retry-after-ms", "150")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the output to brace's events."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # max_retries=0: brace is the one retry layer (retries would multiply otherwise).
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                           api_key="not-a-real-key", max_retries=0)

    @brace.llm()
    def ask(question: str) -> str:
        reply = client.chat.completions.create(
            model="gpt-local", messages=[{"role": "user", "content": question}])
        return str(reply.choices[0].message.content)

    try:
        print(f"answer: {ask('Say hello')!r}")
        print(f"provider saw {len(Provider.requests)} requests: {Provider.requests}")
    finally:
        client.close()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    main()
