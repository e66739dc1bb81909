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
import math
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from brace import _budget, _config, _events
from brace._deadline import Watch, Watchdog, clock, watchdog
from brace._outcome import Kind, Outcome

if TYPE_CHECKING:
    from brace._call import Call
    from brace._policy import Policy

#: One attempt of the call path: runs the attempt's layers and returns its outcome.
Attempt = Callable[["Call", Any, Any], Coroutine[Any, Any, Outcome]]

__all__ = ["Hedger"]

# Whether the first copy runs in the caller's task: a copy that wins must withdraw its
# cancellation of that task (``Task.uncancel``, 3.11+).
_INLINE = sys.version_info >= (3, 11)

# Outcomes that do not end a race: another copy may still answer.
_UNSETTLED = (Kind.RETRYABLE, Kind.REFUSED, Kind.CANCELLED)


class Hedger:
    """Races copies of one attempt under a policy's ``hedge_after`` and ``hedges``.

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
        self._loop_timers: tuple[weakref.ref[asyncio.AbstractEventLoop], Watchdog] | None = None

    def race(self, call: Call, attempt: Attempt, args: Any,
             kwargs: Any) -> Coroutine[Any, Any, Outcome]:
        """One attempt of ``call``, raced by copies while it has not answered: await it.

        Every copy is an attempt (``call.attempts``); the last attempt the policy allows
        runs alone. A plain function that picks the race to run and returns it, so the
        caller awaits that race itself, one coroutine less per call.
        """
        attempts = self.policy.attempts
        cap = _config.state.attempts  # brace.testing.no_waits(attempts=N)
        if cap is not None:
            attempts = min(cap, attempts)
        room = min(self.hedges, attempts - call.attempts - 1)
        if room <= 0:  # the last attempt: nothing may race it
            return attempt(call, args, kwargs)
        watched = call.watch  # on asyncio the call's task is watched for its deadline
        if watched is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # trio: anyio's task group
                return self._race_anyio(call, attempt, args, kwargs, room)
            task = asyncio.current_task(loop)
        else:
            task = watched[1][1]
            loop = task.get_loop()
        if task is None or not _INLINE:  # 3.10: every copy in a task
            return self._race_asyncio(loop, call, attempt, args, kwargs, _Race(room, clock()))
        return self._race_inline(loop, task, call, attempt, args, kwargs, room)

    def _timers(self, loop: asyncio.AbstractEventLoop) -> Watchdog:
        # The loop's timers for races of this ``hedge_after``: one timer for them all (as
        # the deadline's watchdog), kept for the loop last served.
        cached = self._loop_timers
        if cached is None or cached[0]() is not loop:
            cached = self._loop_timers = (weakref.ref(loop), watchdog(
                loop, self.after, "hedge_after", _Copies.hedge))
        return cached[1]

    def _may_hedge(self, call: Call, started: float) -> bool:
        budget = self.policy.budget
        if budget is not None and not _budget.lookup(budget).try_spend(
                remaining=call.remaining()):
            return False  # the retry budget is spent: no extra load, wait for the copies
        _events.hedge_started(self.name, self.policy.preset, call.attempts + 1,
                              clock() - started)
        return True

    @staticmethod
    def _pick(failures: list[Outcome]) -> Outcome:
        # Every copy failed: the first failure of the dependency, a refusal only when there
        # is nothing else.
        for outcome in failures:
            if outcome.kind is not Kind.REFUSED and outcome.kind is not Kind.CANCELLED:
                return outcome
        return failures[0]

    async def _free(self, outcomes: list[Outcome], chosen: Outcome | None) -> None:
        # Losing values are freed; so is the winner's when the race did not deliver it (the
        # caller was cancelled meanwhile: ``chosen`` is then None, nobody will read it).
        if self.discard is None:
            return
        for outcome in outcomes:
            if outcome is not chosen and outcome.error is None:
                await self.discard(outcome.value)

    async def _race_inline(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any],
                           call: Call, attempt: Attempt, args: Any, kwargs: Any,
                           room: int) -> Outcome:
        """The race with its first copy run in the caller's own task (3.11+).

        An answer before ``hedge_after`` costs one timer and no task: most calls. When the
        timer fires, a copy starts as a task; a copy that wins cancels the caller's task,
        which withdraws that request (``Task.uncancel``) and takes the copy's answer. Once
        the first copy has ended, ``_race_asyncio`` waits for the copies still running (or
        cancels them).
        """
        race = _Race(room, clock())
        copies = _Copies(self, race, loop, task, call, attempt, args, kwargs)
        timers = self._timers(loop)
        copies.watch = timers.watch(copies, loop, race.started)  # type: ignore[arg-type]
        try:
            first = await attempt(call, args, kwargs)
        except asyncio.CancelledError as cancelled:
            copies.close(timers)
            # Ours (a copy won) only when nobody else asked to cancel the task as well.
            if race.winner is None or _uncancel(task) > 0:
                return await self._race_asyncio(loop, call, attempt, args, kwargs, race,
                                                cancelled)
        else:
            copies.close(timers)
            if race.winner is not None:  # the function swallowed our cancellation
                _uncancel(task)
            elif not race.pending and not race.outcomes:
                return first  # answered before any copy started: no task, no wait
            race.outcomes.append(first)  # a loser's value is freed with the others
            if race.winner is None:
                if first.kind not in _UNSETTLED:
                    race.winner = first
                elif not race.pending or call.deadline_passed():
                    race.winner = self._pick(race.outcomes)  # nothing left to wait for
        return await self._race_asyncio(loop, call, attempt, args, kwargs, race)

    async def _race_asyncio(self, loop: asyncio.AbstractEventLoop, call: Call,
                            attempt: Attempt, args: Any, kwargs: Any, race: _Race,
                            cancelled: asyncio.CancelledError | None = None) -> Outcome:
        # Every copy in a task (3.10), or the rest of an inline race: the copies still
        # running, the outcomes so far and the winner once there is one are ``race``'s;
        # ``cancelled``, the caller's cancellation, is re-raised once the copies are gone.
        pending, outcomes, started = race.pending, race.outcomes, race.started
        if not pending and not outcomes and cancelled is None:
            pending.add(loop.create_task(attempt(call, args, kwargs)))
        chosen = race.winner
        room, hedged = race.room, race.hedged
        delivered = False
        try:
            if cancelled is not None:
                raise cancelled
            while pending and chosen is None:
                timeout = (started + (hedged + 1) * self.after - clock()) if room else None
                done, pending = await asyncio.wait(pending, timeout=timeout,
                                                   return_when=asyncio.FIRST_COMPLETED)
                if not done:  # no answer in time: one more copy, if allowed
                    if self._may_hedge(call, started):
                        pending.add(loop.create_task(attempt(call, args, kwargs)))
                        hedged += 1
                        room -= 1
                    else:
                        room = 0
                    continue
                finished = [_outcome(task) for task in done]
                outcomes.extend(finished)  # all of them: the losers' values are freed below
                chosen = next((outcome for outcome in finished
                               if outcome.kind not in _UNSETTLED), None)
                if chosen is not None:
                    break
            if chosen is None:
                chosen = self._pick(outcomes)
            delivered = True
        finally:
            # Copies still running are cancelled, and gates and limits see each
            # cancellation, before the call goes on; a cancellation of the race meanwhile
            # is held back until then, and then re-raised, never swallowed.
            for task in pending:
                task.cancel()
            # Only what there is to do: each shielded step costs a task.
            interrupted = await _shielded(_unwind(pending, outcomes)) if pending else None
            kept = chosen if delivered and interrupted is None else None
            if self.discard is not None and any(outcome is not kept and outcome.error is None
                                                for outcome in outcomes):
                again = await _shielded(self._free(outcomes, kept))  # always run
                interrupted = interrupted or again
            if interrupted is not None:
                if kept is not None:  # cancelled while freeing the losers: nobody reads it
                    await _shielded(self._free([kept], None))
                # The cancellation itself, with its message: on 3.10 the deadline watchdog
                # knows its own cancel by it.
                raise interrupted
        return chosen

    async def _race_anyio(self, call: Call, attempt: Attempt, args: Any, kwargs: Any,
                          room: int) -> Outcome:
        import anyio

        # Unsubscripted: anyio 3 (which httpx allows) has a function here, not a class.
        streams: tuple[Any, Any] = anyio.create_memory_object_stream(math.inf)
        send, receive = streams

        async def copy() -> None:
            # A copy's cancellation propagates (the attempt re-raises it); only answers
            # are sent.
            send.send_nowait(await attempt(call, args, kwargs))

        started = clock()
        outcomes: list[Outcome] = []
        chosen: Outcome | None = None
        delivered = False
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
                            if outcome.kind not in _UNSETTLED:
                                chosen = outcome
                                group.cancel_scope.cancel()
                                break
                            continue
                        if self._may_hedge(call, started):  # no answer in time
                            group.start_soon(copy)
                            running += 1
                            hedged += 1
                            room -= 1
                        else:
                            room = 0
                if chosen is None:
                    chosen = self._pick(outcomes)
                delivered = True
            finally:
                while True:  # copies that answered while being cancelled
                    try:
                        outcomes.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                        break
                with anyio.CancelScope(shield=True):
                    await self._free(outcomes, chosen if delivered else None)
        return chosen


class _Race:
    """One race's state: room for more copies, the copies running, outcomes, the winner."""

    __slots__ = ("hedged", "outcomes", "pending", "room", "started", "winner")

    def __init__(self, room: int, started: float) -> None:
        self.room = room
        self.started = started
        self.hedged = 0
        self.pending: set[asyncio.Future[Outcome]] = set()
        self.outcomes: list[Outcome] = []
        self.winner: Outcome | None = None


class _Copies:
    """The copies of an inline race, started by a timer while the first copy runs.

    Until ``close`` (the first copy ended), a copy's answer that settles the race is the
    winner and interrupts the first copy by cancelling the caller's task.
    """

    __slots__ = ("args", "attempt", "call", "closed", "hedger", "kwargs", "loop", "race",
                 "task", "timer", "watch")

    def __init__(self, hedger: Hedger, race: _Race, loop: asyncio.AbstractEventLoop,
                 task: asyncio.Task[Any], call: Call, attempt: Attempt, args: Any,
                 kwargs: Any) -> None:
        self.hedger, self.race, self.loop, self.task = hedger, race, loop, task
        self.call, self.attempt, self.args, self.kwargs = call, attempt, args, kwargs
        self.closed = False
        # The first hedge is due on the loop's shared timers (``watch``), later ones on a
        # timer of their own (``timer``): most races never get that far.
        self.watch: Watch | None = None
        self.timer: asyncio.TimerHandle | None = None

    def close(self, timers: Watchdog) -> None:
        """The first copy ended: no more copies start here, no answer interrupts it."""
        self.closed = True
        if self.watch is not None:
            timers.release(self.watch)
        if self.timer is not None:
            self.timer.cancel()

    def hedge(self) -> None:
        """``hedge_after`` passed without an answer: one more copy, if allowed."""
        race, hedger = self.race, self.hedger
        if self.closed or race.winner is not None:
            return
        if not hedger._may_hedge(self.call, race.started):
            race.room = 0
            return
        copy = self.loop.create_task(self.attempt(self.call, self.args, self.kwargs))
        race.pending.add(copy)
        copy.add_done_callback(self.answered)
        race.hedged += 1
        race.room -= 1
        if race.room:
            self.timer = self.loop.call_later(
                race.started + (race.hedged + 1) * hedger.after - clock(), self.hedge)

    def answered(self, copy: asyncio.Future[Outcome]) -> None:
        """A copy ended: a settling answer wins and interrupts the first copy."""
        race = self.race
        if self.closed:  # the rest is _race_asyncio's: it waits for the copies itself
            return
        race.pending.discard(copy)
        outcome = _outcome(copy)
        race.outcomes.append(outcome)
        if race.winner is None and outcome.kind not in _UNSETTLED:
            race.winner = outcome
            self.task.cancel()


def _uncancel(task: asyncio.Task[Any]) -> int:
    # Withdraw one request to cancel ``task``; the requests still pending (3.11+: _INLINE).
    return task.uncancel()  # type: ignore[attr-defined,no-any-return]


async def _unwind(pending: set[asyncio.Future[Outcome]], outcomes: list[Outcome]) -> None:
    # Wait for the cancelled copies; those that answered meanwhile join the outcomes.
    if pending:
        await asyncio.wait(pending)
        outcomes.extend(_outcome(task) for task in pending if not task.cancelled())


async def _shielded(work: Coroutine[Any, Any, None]) -> asyncio.CancelledError | None:
    """Run ``work`` to its end even if the running task is cancelled meanwhile.

    Returns that cancellation (the first, if several), or None: the caller re-raises it
    once ``work`` is done.
    """
    task = asyncio.ensure_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    task.result()
    return cancelled


def _outcome(task: asyncio.Future[Outcome]) -> Outcome:
    if task.cancelled():
        return Outcome(Kind.CANCELLED, asyncio.CancelledError(), None)
    exc = task.exception()
    if exc is not None:  # an interrupt or exit inside a copy
        return Outcome(Kind.CANCELLED, exc, None)
    return task.result()
