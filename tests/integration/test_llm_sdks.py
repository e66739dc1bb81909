"""@brace.llm() with the real openai and anthropic SDKs, against a local stand-in provider."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest
from structlog.testing import capture_logs

import brace
from brace.testing import no_waits
from tests.fault_server import FaultServer, reply

JSON = {"Content-Type": "application/json"}
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"
OPENAI_OK = json.dumps({
    "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "gpt-test",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "hello"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
})
ANTHROPIC_OK = json.dumps({
    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
    "content": [{"type": "text", "text": "hello"}], "stop_reason": "end_turn",
    "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
})


def openai_error(status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> Any:
    body = json.dumps({"error": {"message": message, "type": "error", "code": code}})
    return reply(status, body, {**JSON, **(headers or {})})


def anthropic_error(status: int, kind: str, headers: dict[str, str] | None = None) -> Any:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": kind}})
    return reply(status, body, {**JSON, **(headers or {})})


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDKs' httpx clients read proxies from the environment: keep traffic on loopback.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def openai_call(url: str, mode: str) -> Callable[[], Any]:
    """A @brace.llm()-decorated call through the openai SDK (its own retries off)."""
    base_url = url + "/v1"
    if mode == "sync":

        @brace.llm()
        def complete() -> str:
            with openai.OpenAI(base_url=base_url, api_key="test", max_retries=0) as client:
                result = client.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "hi"}])
            return str(result.choices[0].message.content)

        return complete

    @brace.llm()
    async def acomplete() -> str:
        async with openai.AsyncOpenAI(base_url=base_url, api_key="test",
                                      max_retries=0) as client:
            result = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}])
        return str(result.choices[0].message.content)

    return lambda: asyncio.run(acomplete())


def anthropic_call(url: str, mode: str) -> Callable[[], Any]:
    if mode == "sync":

        @brace.llm()
        def complete() -> str:
            with anthropic.Anthropic(base_url=url, api_key="test",
                                     max_retries=0) as client:
                message = client.messages.create(
                    model="claude-test", max_tokens=16,
                    messages=[{"role": "user", "content": "hi"}])
            return str(message.content[0].text)  # type: ignore[union-attr]

        return complete

    @brace.llm()
    async def acomplete() -> str:
        async with anthropic.AsyncAnthropic(base_url=url, api_key="test",
                                            max_retries=0) as client:
            message = await client.messages.create(
                model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        return str(message.content[0].text)  # type: ignore[union-attr]

    return lambda: asyncio.run(acomplete())


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_openai_429_with_retry_after_ms_is_retried_and_the_wait_honoured(
        fault_server: FaultServer, mode: str) -> None:
    fault_server.script(OPENAI_PATH, openai_error(429, "Rate limit reached",
                                                  headers={"retry-after-ms": "200"}),
                        reply(200, OPENAI_OK, JSON))
    call = openai_call(fault_server.url, mode)
    started = time.monotonic()
    with capture_logs() as logs:
        assert call() == "hello"
    elapsed = time.monotonic() - started
    assert fault_server.count(OPENAI_PATH, "POST") == 2
    # The server's 0.2 s is a floor; above it, up to the backoff's first step of jitter.
    jitter = brace.llm().initial
    assert logs[0]["event"] == "retry.scheduled" and 0.2 <= logs[0]["wait_s"] <= 0.2 + jitter
    assert logs[0]["error"].startswith("RateLimitError")
    assert 0.2 <= elapsed < 1 + jitter


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
def test_openai_transient_statuses_are_retried(fault_server: FaultServer, mode: str,
                                               status: int) -> None:
    fault_server.script(OPENAI_PATH, openai_error(status, "try again"),
                        reply(200, OPENAI_OK, JSON))
    with no_waits():
        assert openai_call(fault_server.url, mode)() == "hello"
    assert fault_server.count(OPENAI_PATH, "POST") == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "code"), [
    (400, "context_length_exceeded"), (401, "invalid_api_key"), (403, None), (404, None),
    (422, None)])
def test_openai_client_errors_are_not_retried(fault_server: FaultServer, mode: str,
                                              status: int, code: str | None) -> None:
    fault_server.script(OPENAI_PATH, openai_error(
        status, "This model's maximum context length is 8192 tokens", code))
    with no_waits(), capture_logs() as logs, pytest.raises(openai.APIStatusError) as info:
        openai_call(fault_server.url, mode)()
    assert info.value.status_code == status
    assert fault_server.count(OPENAI_PATH, "POST") == 1
    assert logs == []


@pytest.mark.parametrize("mode", MODES)
def test_openai_connection_errors_are_retried(mode: str) -> None:
    # A refused port: openai raises APIConnectionError from httpx.ConnectError.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    call = openai_call(f"http://127.0.0.1:{port}", mode)
    with no_waits(), capture_logs() as logs, pytest.raises(openai.APIConnectionError):
        call()
    attempts = brace.llm().attempts
    assert [e["event"] for e in logs] == ["retry.scheduled"] * (attempts - 1) + ["retry.gave_up"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("first", "kind"), [(429, "rate_limit_error"),
                                             (529, "overloaded_error"),
                                             (500, "api_error")])
def test_anthropic_transient_errors_are_retried(fault_server: FaultServer, mode: str,
                                                first: int, kind: str) -> None:
    fault_server.script(ANTHROPIC_PATH, anthropic_error(first, kind, {"retry-after": "0"}),
                        reply(200, ANTHROPIC_OK, JSON))
    with no_waits():
        assert anthropic_call(fault_server.url, mode)() == "hello"
    assert fault_server.count(ANTHROPIC_PATH, "POST") == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"),
                                              (401, "authentication_error"),
                                              (403, "permission_error"),
                                              (404, "not_found_error")])
def test_anthropic_client_errors_are_not_retried(fault_server: FaultServer, mode: str,
                                                 status: int, kind: str) -> None:
    fault_server.script(ANTHROPIC_PATH, anthropic_error(status, kind))
    with no_waits(), pytest.raises(anthropic.APIStatusError) as info:
        anthropic_call(fault_server.url, mode)()
    assert info.value.status_code == status
    assert fault_server.count(ANTHROPIC_PATH, "POST") == 1


def test_retry_after_beyond_the_deadline_gives_up_at_once(fault_server: FaultServer) -> None:
    fault_server.script(OPENAI_PATH, openai_error(429, "slow down",
                                                  headers={"retry-after": "3600"}))
    @brace.llm(deadline=60)
    def complete() -> None:
        with openai.OpenAI(base_url=fault_server.url + "/v1", api_key="test",
                           max_retries=0) as client:
            client.chat.completions.create(model="gpt-test", messages=[])

    started = time.monotonic()
    with capture_logs() as logs, pytest.raises(openai.RateLimitError):
        complete()
    assert time.monotonic() - started < 1
    assert fault_server.count(OPENAI_PATH) == 1
    assert logs[-1]["reason"] == "deadline"


@pytest.mark.parametrize("mode", MODES)
def test_sdk_over_brace_llm_client(fault_server: FaultServer, mode: str) -> None:
    """The SDK's own HTTP client can be brace's: retries happen at the transport."""
    fault_server.script(OPENAI_PATH, openai_error(529, "overloaded"),
                        reply(200, OPENAI_OK, JSON))
    with no_waits():
        if mode == "sync":
            with brace.llm.client(trust_env=False) as http_client:
                client = openai.OpenAI(base_url=fault_server.url + "/v1", api_key="test",
                                       max_retries=0, http_client=http_client)
                result = client.chat.completions.create(model="gpt-test", messages=[])
        else:
            async def main() -> Any:
                async with brace.llm.async_client(trust_env=False) as http_client:
                    client = openai.AsyncOpenAI(base_url=fault_server.url + "/v1",
                                                api_key="test", max_retries=0,
                                                http_client=http_client)
                    return await client.chat.completions.create(model="gpt-test", messages=[])

            result = asyncio.run(main())
    assert result.choices[0].message.content == "hello"
    assert fault_server.count(OPENAI_PATH, "POST") == 2
    assert isinstance(httpx.Client, type)


# -- layered retries: an SDK retrying under brace is reported once ------------------------------


def _layered(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == "retry.layered"]


@pytest.mark.parametrize("mode", MODES)
def test_an_sdk_retrying_through_a_brace_llm_client_is_reported_once(
        fault_server: FaultServer, mode: str) -> None:
    # brace gives up after 2 attempts; the SDK (max_retries=2) resends the request: twice
    # the attempts, and one warning naming the setting to change.
    busy = openai_error(529, "overloaded", headers={"retry-after-ms": "10"})
    fault_server.script(OPENAI_PATH, busy, busy, busy, busy, reply(200, OPENAI_OK, JSON))
    policy = brace.llm(attempts=2)
    with no_waits(), capture_logs() as logs:
        if mode == "sync":
            with policy.client(trust_env=False) as http_client:
                client = openai.OpenAI(base_url=fault_server.url + "/v1", api_key="test",
                                       max_retries=2, http_client=http_client)
                result = client.chat.completions.create(model="gpt-test", messages=[])
        else:
            async def main() -> Any:
                async with policy.async_client(trust_env=False) as http_client:
                    client = openai.AsyncOpenAI(base_url=fault_server.url + "/v1",
                                                api_key="test", max_retries=2,
                                                http_client=http_client)
                    return await client.chat.completions.create(model="gpt-test", messages=[])

            result = asyncio.run(main())
    assert result.choices[0].message.content == "hello"
    assert fault_server.count(OPENAI_PATH, "POST") == 5
    [layered] = _layered(logs)
    assert layered["retried"] == "x-stainless-retry-count=1"
    assert "max_retries=0" in layered["setting"]


def test_an_sdk_retrying_under_a_brace_llm_function_is_reported_once(
        fault_server: FaultServer) -> None:
    busy = openai_error(503, "unavailable", headers={"retry-after-ms": "10"})
    fault_server.script(OPENAI_PATH, *[busy] * 6)

    @brace.llm(attempts=2)
    def complete() -> None:
        with openai.OpenAI(base_url=fault_server.url + "/v1", api_key="test",
                           max_retries=2) as client:
            client.chat.completions.create(model="gpt-test", messages=[])

    with no_waits(), capture_logs() as logs, pytest.raises(openai.InternalServerError):
        complete()
    assert fault_server.count(OPENAI_PATH, "POST") == 6  # 2 brace attempts x 3 SDK sends
    [layered] = _layered(logs)
    assert layered["retried"] == "x-stainless-retry-count=2"


def test_nothing_is_reported_when_the_sdks_retries_are_off(fault_server: FaultServer) -> None:
    fault_server.script(OPENAI_PATH, openai_error(529, "overloaded"), openai_error(529, "x"),
                        reply(200, OPENAI_OK, JSON))
    with no_waits(), capture_logs() as logs, brace.llm.client(trust_env=False) as http_client:
        client = openai.OpenAI(base_url=fault_server.url + "/v1", api_key="test",
                               max_retries=0, http_client=http_client)
        client.chat.completions.create(model="gpt-test", messages=[])
    assert fault_server.count(OPENAI_PATH, "POST") == 3
    assert _layered(logs) == []
