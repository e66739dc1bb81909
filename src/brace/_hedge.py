"""Hedged attempts: when an attempt has not answered after ``hedge_after`` s, race a copy.

Only where resending is safe (DESIGN rule 19): async functions whose policy asks for it, and
idempotent requests (or requests with an ``Idempotency-Key``) on brace's async transport.
Every copy is an attempt: it counts toward ``attempts``, passes the breaker, the rate limit
and the bulkhead, and spends the retry budget (a hedge is extra load, like a retry). The
first outcome the policy would not retry wins and the other copies are cancelled before the
call goes on. When every copy fails, the call goes on as after one failed attempt, with the
first failure of the dependency (a gate's refusal only when there is nothing else).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pybreaker

from brace import _budget, _events
from brace._deadline import clock
from brace._limits import Refused

if TYPE_CHECKING:
    from brace._policy import Policy

__all__ = ["Hedger", "catch_up", "counted", "launched"]

#: Attempts made so far by the hedged call running in this context (``[count]``): its
#: copies are attempts, so the retry loop numbers its next attempt after them.
launched: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "brace_hedge_launched", default=None)

_REFUSED = (pybreaker.CircuitBreakerError, Refused)
Outcome = tuple[BaseException | None, Any]  # (error, value)


class Hedger:
    """Races copies of one attempt function under a policy's ``hedge_after`` and ``hedges``.

    ``discard`` frees a losing value (brace's transport closes a losing response).
    """

    def __init__(self, policy: Policy, name: str,
                 discard: Callable[[Any], Awaitable[None]] | None = None) -> None:
        assert policy.hedge_after is not None
        self.policy = policy
        self.name = name
        self.after = policy.hedge_after
        self.hedges = policy.hedges or 1
        self.discard = discard
        self.check = policy.result_check

    def wrap(self, attempt: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """``attempt`` hedged: one call of it may run as several racing copies."""
        async def hedged(*args: Any, **kwargs: Any) -> Any:
            count = launched.get()
            if count is None:  # not a hedged call (brace.set_active(False))
                return await attempt(*args, **kwargs)
            count[0] += 1
            room = min(self.hedges, self.policy.attempts - count[0])
            if room <= 0:  # the last attempt: nothing may race it
                return await attempt(*args, **kwargs)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # trio: anyio's task group
                outcome = await self._race_anyio(attempt, args, kwargs, count, room)
            else:
                outcome = await self._race_asyncio(loop, attempt, args, kwargs, count, room)
            if outcome[0] is not None:
                raise outcome[0]
            return outcome[1]

        return hedged

    def _final(self, outcome: Outcome) -> bool:
        # An answer the policy would not retry: a success, or an error that is no failure of
        # the dependency (a bug, a 404). A gate's refusal waits for the copies still running.
        exc, value = outcome
        if exc is None:
            return self.check is None or not self.check(value)
        return not isinstance(exc, _REFUSED) and not self.policy.counts(exc)

    def _may_hedge(self, count: list[int], started: float) -> bool:
        budget = self.policy.budget
        if budget is not None and not _budget.lookup(budget).try_spend():
            return False  # the retry budget is spent: no extra load, wait for the copies
        count[0] += 1
        _events.hedge_started(self.name, self.policy.preset, count[0], clock() - started)
        return True

    @staticmethod
    def _pick(failures: list[Outcome]) -> Outcome:
        for outcome in failures:
            if not isinstance(outcome[0], _REFUSED):
                return outcome
        return failures[0]

    async def _free(self, losers: list[Outcome], chosen: Outcome | None) -> None:
        if self.discard is None:
            return
        for outcome in losers:
            if outcome is not chosen and outcome[0] is None:
                await self.discard(outcome[1])

    async def _race_asyncio(self, loop: asyncio.AbstractEventLoop,
                            attempt: Callable[..., Any], args: Any, kwargs: Any,
                            count: list[int], room: int) -> Outcome:
        started = clock()
        pending: set[asyncio.Future[Any]] = {loop.create_task(attempt(*args, **kwargs))}
        outcomes: list[Outcome] = []
        chosen: Outcome | None = None
        hedged = 0
        try:
            while pending:
                timeout = (started + (hedged + 1) * self.after - clock()) if room else None
                done, pending = await asyncio.wait(pending, timeout=timeout,
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:  # no answer in time: one more copy, if allowed
                    if self._may_hedge(count, started):
                        pending.add(loop.create_task(attempt(*args, **kwargs)))
                        hedged += 1
                        room -= 1
                    else:
                        room = 0
                    continue
                finished = [_outcome(task) for task in done]
                outcomes.extend(finished)  # all of them: the losers' values are freed below
                for outcome in finished:
                    if self._final(outcome):
                        chosen = outcome
                        return outcome
            chosen = self._pick(outcomes)
            return chosen
        finally:
            for task in pending:
                task.cancel()
            if pending:
                # Gates and limits see each cancellation before the call goes on.
                await asyncio.wait(pending)
                outcomes.extend(_outcome(task) for task in pending if not task.cancelled())
            await self._free(outcomes, chosen)

    async def _race_anyio(self, attempt: Callable[..., Any], args: Any,
                          kwargs: Any, count: list[int], room: int) -> Outcome:
        import anyio

        cancelled = anyio.get_cancelled_exc_class()
        # Unsubscripted: anyio 3 (which httpx allows) has a function here, not a class.
        streams: tuple[Any, Any] = anyio.create_memory_object_stream(math.inf)
        send, receive = streams

        async def copy() -> None:
            try:
                value = await attempt(*args, **kwargs)
            except cancelled:
                raise
            except BaseException as exc:
                send.send_nowait((exc, None))
            else:
                send.send_nowait((None, value))

        started = clock()
        outcomes: list[Outcome] = []
        chosen: Outcome | None = None
        with send, receive:
            try:
                async with anyio.create_task_group() as group:
                    group.start_soon(copy)
                    running, hedged = 1, 0
                    while running:
                        timeout = (started + (hedged + 1) * self.after - clock()
                                   if room else math.inf)
                        with anyio.move_on_after(timeout):
                            outcome = await receive.receive()
                            outcomes.append(outcome)
                            running -= 1
                            if self._final(outcome):
                                chosen = outcome
                                group.cancel_scope.cancel()
                                break
                            continue
                        if self._may_hedge(count, started):  # no answer in time
                            group.start_soon(copy)
                            running += 1
                            hedged += 1
                            room -= 1
                        else:
                            room = 0
                if chosen is None:
                    chosen = self._pick(outcomes)
                return chosen
            finally:
                while True:  # copies that answered while being cancelled
                    try:
                        outcomes.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                        break
                await self._free(outcomes, chosen)


def _outcome(task: asyncio.Future[Any]) -> Outcome:
    if task.cancelled():
        return asyncio.CancelledError(), None
    exc = task.exception()
    return (exc, None) if exc is not None else (None, task.result())


def catch_up(state: Any, stats: dict[str, Any], count: list[int]) -> None:
    """Number the retry loop's attempts after the copies its hedged attempts started."""
    extra = count[0] - state.attempt_number
    if extra > 0:
        state.attempt_number += extra
        stats["attempt_number"] += extra


def counted(core: Callable[..., Awaitable[Any]], stats: dict[str, Any],
            active: Any) -> Callable[..., Awaitable[Any]]:
    """``core`` with a count of the attempts each call makes, hedges included."""
    async def call(*args: Any, **kwargs: Any) -> Any:
        if not active.active:  # brace.set_active(False): one plain attempt, no hedges
            return await core(*args, **kwargs)
        count = [0]
        token = launched.set(count)
        try:
            return await core(*args, **kwargs)
        finally:
            launched.reset(token)
            if count[0]:
                stats["attempt_number"] = count[0]

    return call
