"""brace.testing's chaos (DESIGN rule 33): faults, outcomes and latency injected inside a
policy's attempts, and ChaosTransport / AsyncChaosTransport for any httpx client.

Every run is seeded, so the counts asserted here are the same on every run; latency is
measured in virtual time (``tests.clocks``) or as the time ``no_waits()`` skipped, never by
sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import trio

import brace
from brace import _config
from brace.testing import (
    AsyncChaosTransport,
    ChaosTransport,
    capture_events,
    chaos,
    is_injected,
    no_waits,
)
from tests.clocks import VirtualClock, exactly
from tests.fault_server import FaultServer

CALLS = 1000


def _healthy() -> str:
    return "ok"


def _scheduled(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [fields for event, fields in events if event == "retry.scheduled"]


def _attempts_per_call(setting: Any, calls: int = CALLS) -> list[int]:
    # Attempts each call made under ``setting`` (a healthy function: only chaos fails it).
    fn = brace.network(attempts=1000, deadline=1e6, chaos=setting)(_healthy)
    seen = []
    with no_waits():
        for _ in range(calls):
            assert fn() == "ok"
            seen.append(fn.statistics["attempt_number"])
    return seen


# --- chaos on a policy -------------------------------------------------------------------------


def test_a_rate_of_faults_is_injected_inside_attempts_and_every_one_is_retried() -> None:
    ran = 0

    @brace.network(chaos=chaos(fault=ConnectionError("injected"), rate=0.3, seed=1))
    def quote() -> str:
        nonlocal ran
        ran += 1
        return "42"

    attempts = 0
    with no_waits(), capture_events() as events:
        for _ in range(CALLS):
            assert quote() == "42"  # every call rides out what was injected
            attempts += quote.statistics["attempt_number"]
    injected = attempts - CALLS
    assert ran == CALLS  # an injected attempt never reaches the function
    assert 0.25 <= injected / attempts <= 0.35
    scheduled = _scheduled(events)
    assert len(scheduled) == injected  # each injected fault was retried, as a real one
    assert {fields["error"] for fields in scheduled} == {"ConnectionError: injected"}
    assert not [event for event, _ in events if event == "retry.gave_up"]


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another() -> None:
    first = _attempts_per_call(chaos(fault=ConnectionError(), rate=0.3, seed=1), 300)
    again = _attempts_per_call(chaos(fault=ConnectionError(), rate=0.3, seed=1), 300)
    other = _attempts_per_call(chaos(fault=ConnectionError(), rate=0.3, seed=2), 300)
    assert first == again
    assert first != other
    assert max(first) > 1  # the sequence did inject


def test_threads_sharing_a_setting_draw_one_seeded_sequence() -> None:
    # Each attempt takes one draw; each call ends on its first draw that does not strike.
    # However threads interleave, the draws up to the 1000th non-striking one are the same
    # numbers: the total injected is the single-threaded run's.
    expected = sum(_attempts_per_call(chaos(fault=ConnectionError(), rate=0.3, seed=7))) - CALLS
    fn = brace.network(attempts=1000, deadline=1e6,
                       chaos=chaos(fault=ConnectionError(), rate=0.3, seed=7))(_healthy)

    def worker() -> None:
        for _ in range(CALLS // 8):
            assert fn() == "ok"

    with no_waits(), capture_events() as events:
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(_scheduled(events)) == expected


def test_disabled_chaos_injects_nothing() -> None:
    assert _attempts_per_call(chaos(fault=ConnectionError(), enabled=False, seed=1), 200) == (
        [1] * 200)


def test_an_enabled_callable_is_a_flag_read_before_each_attempt() -> None:
    reads = 0
    flag = False

    def enabled() -> bool:
        nonlocal reads
        reads += 1
        return flag

    fn = brace.network(chaos=chaos(fault=ConnectionError(), enabled=enabled))(_healthy)
    with no_waits(), capture_events() as events:
        for _ in range(50):
            assert fn() == "ok"
        assert reads == 50 and not events  # off: nothing injected, nothing retried
        flag = True
        with pytest.raises(ConnectionError):  # on, at rate 1: every attempt fails
            fn()
    assert reads == 50 + fn.statistics["attempt_number"] == 50 + brace.network.attempts
    assert len(_scheduled(events)) == brace.network.attempts - 1


def test_an_injected_fault_is_a_fresh_marked_copy_each_time() -> None:
    given = ConnectionError("refused")
    fn = brace.network(attempts=1, chaos=chaos(fault=given))(_healthy)
    raised = []
    for _ in range(2):
        with pytest.raises(ConnectionError) as info:
            fn()
        raised.append(info.value)
    first, second = raised
    assert first is not given and second is not first
    assert first.args == second.args == ("refused",)
    assert is_injected(first) and is_injected(second)
    assert not is_injected(given)  # the user's instance is left as it was
    assert not is_injected(ConnectionError("a real one"))
    assert second.__context__ is None  # no chain to the previous injection


def test_a_fault_class_is_made_per_injection() -> None:
    fn = brace.network(attempts=1, chaos=chaos(fault=TimeoutError))(_healthy)
    with pytest.raises(TimeoutError) as first:
        fn()
    with pytest.raises(TimeoutError) as second:
        fn()
    assert first.value is not second.value and is_injected(second.value)


class _TwoArguments(ConnectionError):
    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"{host}:{port} refused")


def test_a_fault_that_cannot_be_copied_is_raised_itself_without_its_old_traceback() -> None:
    given = _TwoArguments("db", 5432)
    fn = brace.network(attempts=1, chaos=chaos(fault=given))(_healthy)
    for _ in range(2):
        with pytest.raises(_TwoArguments) as info:
            fn()
        assert info.value is given and is_injected(given)
    tb, frames = info.value.__traceback__, 0
    while tb is not None:
        frames, tb = frames + 1, tb.tb_next
    assert frames <= 3  # raised afresh: the first injection's frames are not kept


def test_an_injected_503_response_is_retried_by_the_http_preset() -> None:
    template = httpx.Response(503, headers={"x-reason": "chaos"})
    calls = 0

    @brace.http(chaos=chaos(outcome=template, rate=0.5, seed=3))
    def fetch() -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, text="fine")

    with no_waits(), capture_events() as events:
        answers = [fetch() for _ in range(40)]
    assert all(answer.status_code == 200 for answer in answers) and calls == 40
    scheduled = _scheduled(events)
    assert len(scheduled) > 5
    assert {(fields["status"], fields["error_type"]) for fields in scheduled} == {
        (503, "HTTP 503")}
    assert not is_injected(template)

    given_up = brace.http(attempts=1, chaos=chaos(outcome=template))(fetch.__wrapped__)
    first, second = given_up(), given_up()
    assert first.status_code == second.status_code == 503
    assert first is not template and second is not first  # a fresh response each time
    assert first.headers["x-reason"] == "chaos" and is_injected(first)


def test_an_outcome_that_is_a_plain_value_is_returned_instead_of_calling() -> None:
    ran = []
    fn = brace.network(chaos=chaos(outcome="cached"))(lambda: ran.append(1) or "fresh")
    assert fn() == "cached" and ran == []


def test_breakers_count_injected_faults() -> None:
    brace.breaker("chaos-payments", fail_max=3, reset_timeout=30)
    ran = 0

    @brace.network(breaker="chaos-payments", chaos=chaos(fault=ConnectionError("down")))
    def charge() -> str:
        nonlocal ran
        ran += 1
        return "charged"

    with no_waits(), pytest.raises(ConnectionError):
        charge()
    assert charge.statistics["attempt_number"] == 3  # the third injected failure opened it
    assert brace.breakers()["chaos-payments"].state == "open"
    with pytest.raises(brace.CircuitOpenError):
        charge()
    assert ran == 0


def test_latency_is_injected_and_no_waits_skips_it() -> None:
    fn = brace.network(chaos=chaos(latency=timedelta(milliseconds=250), rate=0.5,
                                   seed=4))(_healthy)
    struck = chaos(latency=0.25, rate=0.5, seed=4)._dice  # the same sequence, replayed
    expected = sum(0.25 for _ in range(100) if struck.fires())
    before = _config.state.skipped
    with no_waits(), capture_events() as events:
        for _ in range(100):
            assert fn() == "ok"
    assert _config.state.skipped - before == pytest.approx(expected)
    assert 10 < expected < 15 and not events  # latency alone: slow, not failed


def test_sync_latency_really_waits_outside_no_waits(virtual_sleeps: VirtualClock) -> None:
    delays = iter([0.5, 1.5])
    fn = brace.network(chaos=chaos(latency=lambda: next(delays)))(_healthy)
    assert fn() == "ok" and fn() == "ok"
    assert virtual_sleeps.sleeps == [0.5, 1.5]  # through brace.waits.sleep


def test_a_latency_callable_that_returns_a_bad_value_names_latency() -> None:
    fn = brace.network(chaos=chaos(latency=lambda: -1))(_healthy)
    with pytest.raises(ValueError, match="latency"):
        fn()


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_async_latency_sleeps_in_the_running_library_and_attempt_timeout_cuts_it(
        clock: VirtualClock, library: str) -> None:
    # Struck attempts sleep 1 s (in virtual time): the 0.1 s attempt timeout cuts them off,
    # a transient TimeoutError the policy retries until an attempt is not struck.
    ran = 0

    @brace.network(attempt_timeout=0.1, initial=0, max_wait=0,
                   chaos=chaos(latency=1.0, rate=0.5, seed=5))
    async def lookup() -> str:
        nonlocal ran
        ran += 1
        return "found"

    async def main() -> list[tuple[str, float, int]]:
        results = []
        for _ in range(10):
            started = clock.now
            value = await lookup()
            results.append((value, clock.now - started, lookup.statistics["attempt_number"]))
        return results

    with capture_events() as events:
        results = clock.run(library, main)
    assert ran == 10
    for value, elapsed, attempts in results:
        assert value == "found"
        assert elapsed == exactly(0.1 * (attempts - 1))  # each struck attempt: cut at 0.1 s
    assert len(_scheduled(events)) == sum(attempts - 1 for *_, attempts in results) > 0
    assert {fields["error_type"] for fields in _scheduled(events)} == {"TimeoutError"}


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_async_faults_are_injected_under_asyncio_and_trio(library: str) -> None:
    @brace.network(chaos=chaos(fault=ConnectionResetError, rate=0.4, seed=6))
    async def read() -> str:
        return "data"

    async def main() -> int:
        attempts = 0
        for _ in range(100):
            assert await read() == "data"
            attempts += read.statistics["attempt_number"]
        return attempts

    with no_waits(), capture_events() as events:
        attempts = asyncio.run(main()) if library == "asyncio" else trio.run(main)
    assert len(_scheduled(events)) == attempts - 100 > 20


def test_hedges_race_an_attempt_slowed_by_injected_latency(clock: VirtualClock) -> None:
    first = iter([True])

    @brace.network(hedge_after=0.1,
                   chaos=chaos(latency=5.0, enabled=lambda: next(first, False)))
    async def profile() -> str:
        return "profile"

    async def main() -> tuple[str, float]:
        started = clock.now
        return await profile(), clock.now - started

    with capture_events() as events:
        value, elapsed = clock.run_asyncio(main())
    assert value == "profile" and elapsed == exactly(0.1)  # the hedge answered
    assert [event for event, _ in events] == ["hedge.started"]


def test_chaos_through_replace_and_presets_and_a_policy_stays_hashable() -> None:
    setting = chaos(outcome={"unhashable": ["value"]})
    policy = brace.http.replace(chaos=setting)
    assert policy.chaos is setting and brace.http.chaos is None
    assert brace.http(chaos=setting) == policy and hash(policy) == hash(brace.http(chaos=setting))
    assert policy != brace.http.replace(chaos=chaos(outcome={"unhashable": ["value"]}))
    assert policy.replace(chaos=None) == brace.http()
    assert repr(setting) == "brace.testing.chaos(outcome={'unhashable': ['value']}, rate=1)"
    assert type(setting).__module__ == "brace.testing"


def test_chaos_keeps_the_decorated_function_as_it_was() -> None:
    @brace.network(chaos=chaos(fault=ConnectionError(), rate=0))
    async def documented(uid: int) -> int:
        """Documented."""
        return uid

    assert documented.__name__ == "documented" and documented.__doc__ == "Documented."
    assert asyncio.iscoroutinefunction(documented)
    assert asyncio.run(documented(7)) == 7


def test_chaos_wraps_a_plain_function_without_a_policy() -> None:
    flaky = chaos(fault=ConnectionError, rate=1).wrap(_healthy)
    with pytest.raises(ConnectionError):
        flaky()
    assert flaky.__name__ == "_healthy"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"fault": ConnectionError(), "rate": -0.1}, ValueError, r"rate must .* \[0, 1\]"),
    ({"fault": ConnectionError(), "rate": 1.5}, ValueError, r"rate must .* \[0, 1\]"),
    ({"fault": ConnectionError(), "rate": float("nan")}, ValueError, "rate"),
    ({"fault": ConnectionError(), "rate": "0.5"}, TypeError, "rate"),
    ({"fault": ConnectionError(), "rate": True}, TypeError, "rate"),
    ({"fault": ConnectionError(), "outcome": 1}, ValueError, "fault= or outcome="),
    ({}, ValueError, "fault=, outcome= or latency="),
    ({"latency": -1}, ValueError, r"latency must be .* seconds in \[0, "),
    ({"latency": float("inf")}, ValueError, "latency"),
    ({"latency": "1s"}, TypeError, "latency"),
    ({"fault": "boom"}, TypeError, "fault must be an exception"),
    ({"fault": int}, TypeError, "fault"),
    ({"fault": KeyboardInterrupt}, TypeError, "fault must be an Exception"),
    ({"fault": asyncio.CancelledError()}, TypeError, "fault must be an Exception"),
    ({"fault": _TwoArguments}, TypeError, "fault=_TwoArguments cannot be made"),
    ({"fault": OSError(), "enabled": "yes"}, TypeError, "enabled must be a bool or a callable"),
    ({"fault": OSError(), "enabled": 1}, TypeError, "enabled"),
    ({"fault": OSError(), "seed": "one"}, TypeError, "seed must be an int"),
    ({"fault": OSError(), "seed": 1.5}, TypeError, "seed"),
])
def test_bad_settings_are_refused_when_built_naming_the_parameter(
        kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        chaos(**kwargs)


def test_a_streamed_response_is_refused_as_an_outcome() -> None:
    streamed = httpx.Response(503, stream=httpx.ByteStream(b"later"))
    with pytest.raises(TypeError, match=r"outcome= must be an httpx\.Response whose body"):
        chaos(outcome=streamed)


def test_a_policy_refuses_what_is_not_a_chaos_setting() -> None:
    with pytest.raises(TypeError, match=r"chaos= must be a setting made by brace.testing"):
        brace.http(chaos={"fault": ConnectionError()})
    with pytest.raises(TypeError, match="chaos="):
        brace.Policy(chaos=ConnectionError())


@pytest.mark.parametrize("where", ["retrying", "async_retrying", "tenacity_kwargs"])
def test_tenacitys_own_loops_refuse_chaos_instead_of_ignoring_it(where: str) -> None:
    policy = brace.network(chaos=chaos(fault=ConnectionError()))
    with pytest.raises(TypeError, match=r"chaos="):
        getattr(policy, where)()


# --- ChaosTransport ----------------------------------------------------------------------------

REQUESTS = 100


def _tally(send: Callable[[], Any], requests: int = REQUESTS) -> list[Any]:
    # What each request got: a status, or the injected error's class name.
    seen: list[Any] = []
    for _ in range(requests):
        try:
            response = send()
        except httpx.TransportError as error:
            assert is_injected(error)
            assert error.request.url.path == "/items"  # the request is attached
            seen.append(type(error).__name__)
        else:
            assert is_injected(response) == (response.status_code != 200)
            assert response.request.url.path == "/items"
            seen.append(response.status_code)
    return seen


def _chaotic(transport: Any, cls: Any = ChaosTransport, seed: int = 8) -> Any:
    return cls(transport, rate=0.4, statuses=[503, 502],
               errors=[httpx.ConnectError, httpx.ReadTimeout("injected read timeout")],
               seed=seed)


def test_chaos_transport_injects_statuses_and_errors_at_the_rate(
        fault_server: FaultServer) -> None:
    with httpx.Client(transport=_chaotic(httpx.HTTPTransport()),
                      base_url=fault_server.url) as client:
        seen = _tally(lambda: client.get("/items"))
    delegated = seen.count(200)
    assert fault_server.count("/items") == delegated  # everything else never left
    assert 0.3 <= (REQUESTS - delegated) / REQUESTS <= 0.5
    assert {503, 502, "ConnectError", "ReadTimeout"} <= set(seen)
    assert set(seen) == {200, 503, 502, "ConnectError", "ReadTimeout"}

    # Seeded: the same sequence again (whatever answers the delegated requests), and
    # another seed another.
    answer = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=_chaotic(answer), base_url=fault_server.url) as client:
        assert _tally(lambda: client.get("/items")) == seen
    with httpx.Client(transport=_chaotic(answer, seed=9), base_url=fault_server.url) as client:
        assert _tally(lambda: client.get("/items")) != seen


def test_async_chaos_transport_injects_the_same_as_the_sync_one(
        fault_server: FaultServer) -> None:
    with httpx.Client(transport=_chaotic(httpx.HTTPTransport()),
                      base_url=fault_server.url) as client:
        sync_seen = _tally(lambda: client.get("/items"), 60)

    async def main() -> list[Any]:
        async with httpx.AsyncClient(
                transport=_chaotic(httpx.AsyncHTTPTransport(), AsyncChaosTransport),
                base_url=fault_server.url) as client:
            seen: list[Any] = []
            for _ in range(60):
                try:
                    response = await client.get("/items")
                except httpx.TransportError as error:
                    assert is_injected(error) and error.request.url.path == "/items"
                    seen.append(type(error).__name__)
                else:
                    seen.append(response.status_code)
            return seen

    fault_server.reset()
    assert asyncio.run(main()) == sync_seen
    assert fault_server.count("/items") == sync_seen.count(200)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_chaos_transport_latency_is_injected_then_the_request_goes_on(
        fault_server: FaultServer, asynchronous: bool) -> None:
    url = fault_server.url + "/items"
    replay = ChaosTransport(httpx.HTTPTransport(), latency=0.3, rate=0.5, seed=10)._dice
    struck = sum(0.3 for _ in range(40) if replay.fires())  # the same sequence, replayed
    before = _config.state.skipped

    async def amain() -> list[int]:
        async with httpx.AsyncClient(transport=AsyncChaosTransport(
                latency=0.3, rate=0.5, seed=10)) as client:
            return [(await client.get(url)).status_code for _ in range(40)]

    with no_waits():
        if asynchronous:
            statuses = asyncio.run(amain())
        else:
            with httpx.Client(transport=ChaosTransport(latency=0.3, rate=0.5,
                                                       seed=10)) as client:
                statuses = [client.get(url).status_code for _ in range(40)]
    assert statuses == [200] * 40 and fault_server.count("/items") == 40
    assert _config.state.skipped - before == pytest.approx(struck)
    assert 3 < struck < 9


def test_chaos_transport_under_brace_retries_every_injected_503(
        fault_server: FaultServer) -> None:
    chaotic = ChaosTransport(httpx.HTTPTransport(), statuses=[503], rate=0.5, seed=11)
    with no_waits(), brace.http.client(transport=chaotic, base_url=fault_server.url) as client:
        responses = [client.get("/items") for _ in range(30)]
    assert [response.status_code for response in responses] == [200] * 30
    attempts = sum(response.extensions["brace"]["attempts"] for response in responses)
    assert fault_server.count("/items") == 30 < attempts  # only the delegated reached it


def test_disabled_chaos_transport_delegates_everything(fault_server: FaultServer) -> None:
    flag = iter([False] * 10)
    with httpx.Client(transport=ChaosTransport(statuses=[503], enabled=lambda: next(flag)),
                      base_url=fault_server.url) as client:
        assert [client.get("/items").status_code for _ in range(10)] == [200] * 10
    assert fault_server.count("/items") == 10


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"statuses": [503], "rate": 2}, ValueError, "rate"),
    ({"statuses": [200]}, ValueError, "statuses must be in 400-599"),
    ({"statuses": 503}, TypeError, "statuses must be a list"),
    ({"errors": httpx.ConnectError}, TypeError, "errors must be a list"),
    ({"errors": [KeyboardInterrupt]}, TypeError, "errors must be an Exception"),
    ({"errors": ["boom"]}, TypeError, "errors must be an exception"),
    ({"errors": [_TwoArguments]}, TypeError, "_TwoArguments cannot be made"),
    ({"latency": -0.5}, ValueError, "latency"),
    ({"statuses": [503], "enabled": None}, TypeError, "enabled"),
    ({"statuses": [503], "seed": "x"}, TypeError, "seed"),
    ({}, ValueError, "statuses=, errors= or latency="),
])
def test_bad_chaos_transport_settings_are_refused_naming_the_parameter(
        kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ChaosTransport(httpx.MockTransport(lambda request: httpx.Response(200)), **kwargs)


def test_each_chaos_transport_takes_its_own_kind_of_transport() -> None:
    with pytest.raises(TypeError, match="AsyncChaosTransport"):
        ChaosTransport(httpx.AsyncHTTPTransport(), statuses=[503])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"brace\.testing\.ChaosTransport"):
        AsyncChaosTransport(httpx.HTTPTransport(), statuses=[503])  # type: ignore[arg-type]
    assert ChaosTransport.__module__ == AsyncChaosTransport.__module__ == "brace.testing"
    assert issubclass(ChaosTransport, httpx.BaseTransport)
    assert issubclass(AsyncChaosTransport, httpx.AsyncBaseTransport)


def test_importing_brace_testing_does_not_import_httpx() -> None:
    import subprocess
    import sys

    # Without pytest (as in a user's program; it is also the slowest import here).
    code = ("import sys; sys.modules['pytest'] = None; "
            "import brace.testing; s = brace.testing.chaos(fault=OSError()); "
            "assert 'httpx' not in sys.modules, 'httpx imported'; "
            "brace.testing.ChaosTransport; assert 'httpx' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


# --- events and brace's own transports --------------------------------------------------------


def test_events_mark_injected_outcomes() -> None:
    fn = brace.network(chaos=chaos(fault=ConnectionError(), rate=0.5, seed=1))(_healthy)
    with no_waits(), capture_events() as events:
        for _ in range(20):
            with contextlib.suppress(ConnectionError):  # a call whose every attempt was hit
                fn()
    scheduled = _scheduled(events)
    assert scheduled and all(fields.get("injected") is True for fields in scheduled)
    real = brace.network()(_failing_once())
    with no_waits(), capture_events() as events:
        real()
    assert _scheduled(events) and "injected" not in _scheduled(events)[0]


def test_a_policy_with_chaos_on_brace_transports(fault_server: FaultServer) -> None:
    policy = brace.http(chaos=chaos(outcome=httpx.Response(503), rate=0.5, seed=12))
    with no_waits(), policy.client(base_url=fault_server.url) as client:
        responses = [client.get("/items") for _ in range(20)]
    assert [response.status_code for response in responses] == [200] * 20
    assert sum(response.extensions["brace"]["attempts"] for response in responses) > 20


def _failing_once() -> Callable[[], str]:
    calls = 0

    def fn() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("a real fault")
        return "ok"

    return fn
