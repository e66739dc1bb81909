"""One clock, one rule for deadlines, request-scoped deadlines, how attempts are cut off.

Every layer reads ``clock`` (the stop through tenacity's ``RetryCallState``, whose start
the call path sets from it; the transports through ``Deadline``; the asyncio watchdog
by converting what is left into its loop's time), and every layer applies ``past``:
a sleep that would end at or past the deadline is never begun. A call that begins inside
``brace.deadline(...)`` takes the tighter of its own deadline and what the scope has left
(``within``), read once, when it begins.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

from brace import _validate

__all__ = ["OPEN", "Deadline", "DeadlineScope", "Watch", "Watchdog", "clock", "current_task",
           "deadline", "gave_up", "open_scope", "past", "reenter", "remaining", "watchdog",
           "within"]


_MONOTONIC = time.monotonic


def clock() -> float:
    """The monotonic clock of every deadline (the clock tenacity times attempts with)."""
    return time.monotonic()


def past(elapsed: float, upcoming: float, limit: float) -> bool:
    """The deadline rule: a sleep that would end at or past the deadline is not begun.

    True when ``upcoming`` seconds of sleep, begun ``elapsed`` seconds after the first call,
    would end at or past ``limit`` seconds.
    """
    return elapsed + upcoming >= limit


class Deadline:
    """When one call must end, read from ``clock``: the one deadline every layer reads.

    Inside ``brace.testing.no_waits()`` the sleeps a call skipped still count against it
    (``skipped``), so a test sees the attempts, waits and give-ups a real run would.
    """

    __slots__ = ("at", "seconds", "skipped", "started")

    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = clock() if started is None else started
        self.at = self.started + seconds
        self.skipped = 0.0

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - clock() - self.skipped

    def elapsed(self) -> float:
        """Seconds since the call started (on the clock: skipped sleeps aside)."""
        return clock() - self.started

    def past(self, upcoming: float) -> bool:
        """The deadline rule for this call: a sleep of ``upcoming`` s would end too late."""
        return upcoming >= self.remaining()


# -- request-scoped deadlines: brace.deadline(seconds) ---------------------------------------

class _Scope:
    """One open ``brace.deadline`` scope.

    When it ends (``at``, on ``clock``), the scope around it, and whether a policy inside
    gave up on a dependency (``brace.web`` reads it).
    """

    __slots__ = ("at", "exhausted", "outer")

    def __init__(self, at: float, outer: _Scope | None) -> None:
        self.at = at
        self.outer = outer
        self.exhausted = False


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("brace.deadline",
                                                                      default=None)
#: How many scopes are open in the process, in any thread or task. While none is, no call
#: reads the context variable: a call outside every scope pays one list read.
OPEN = [0]
_open_lock = threading.Lock()  # += is not atomic across threads


class DeadlineScope:
    """A request-scoped deadline: every brace policy inside uses min(its own, what is left).

    Made by ``brace.deadline(seconds)``; a context manager for ``with`` and ``async with``
    (asyncio, trio: a ``contextvars`` scope, so tasks started inside inherit it). Nested
    scopes take the tighter deadline. One scope object is entered once.
    """

    __module__ = "brace"
    __slots__ = ("_scope", "_token", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._token: contextvars.Token[_Scope | None] | None = None
        self._scope: _Scope | None = None

    def __enter__(self) -> DeadlineScope:
        if self._token is not None:
            raise RuntimeError("a brace.deadline scope is entered once; make a new one")
        outer = _SCOPE.get()
        at = clock() + self.seconds
        if outer is not None and outer.at < at:
            at = outer.at  # an inner scope never outlives the one around it
        self._scope = _Scope(at, outer)
        self._token = _SCOPE.set(self._scope)
        with _open_lock:
            OPEN[0] += 1
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._token is not None, "exited before it was entered"
        _SCOPE.reset(self._token)
        with _open_lock:
            OPEN[0] -= 1

    async def __aenter__(self) -> DeadlineScope:
        return self.__enter__()

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(kind, error, tb)

    def remaining(self) -> float:
        """Seconds this scope has left (negative once passed; its ``seconds`` before entry)."""
        if self._scope is None:
            return self.seconds
        return self._scope.at - clock()

    @property
    def exhausted(self) -> bool:
        """Whether a brace policy inside gave up on a dependency.

        Retries ran out, a deadline cut a call, or a breaker, budget or limit refused one.
        """
        return self._scope is not None and self._scope.exhausted

    def __repr__(self) -> str:
        return f"brace.deadline({self.seconds:g})"


def deadline(seconds: _validate.Duration) -> DeadlineScope:
    """A request-scoped deadline of ``seconds`` (float or ``timedelta``) for ``with``.

    ``with brace.deadline(2.0): ...`` (or ``async with``): every brace policy called inside,
    and in tasks started inside, ends by then: each call takes min(its own deadline, what
    the scope has left) when it begins; a call that begins after the scope ran out raises
    ``TimeoutError`` without calling its function. ``brace.remaining()`` reads what is left.

    Raises:
        TypeError, ValueError: ``seconds`` is not a duration in [0, 1e7] seconds.
    """
    return DeadlineScope(_validate.seconds(seconds, "seconds"))


def remaining() -> float | None:
    """Seconds left in the innermost ``brace.deadline`` scope (negative once passed).

    None outside any scope, and in a scope without a deadline (``brace.web`` opens one for
    a request that carries none).
    """
    scope = _SCOPE.get() if OPEN[0] else None
    if scope is None or scope.at == math.inf:
        return None
    return scope.at - clock()


def within(seconds: float, started: float) -> float:
    """A call's deadline: ``seconds`` from ``started``, or less, as the scope says.

    Only when a scope is open anywhere (``OPEN``) is the context variable read.
    """
    if not OPEN[0]:
        return seconds
    scope = _SCOPE.get()
    if scope is None:
        return seconds
    left = scope.at - started
    return left if left < seconds else seconds


def gave_up() -> None:
    """A brace policy gave up on a dependency: every scope around says so (``exhausted``)."""
    scope = _SCOPE.get() if OPEN[0] else None
    while scope is not None:
        scope.exhausted = True
        scope = scope.outer


@contextlib.contextmanager
def reenter(scope: DeadlineScope) -> Iterator[None]:
    """Be inside ``scope`` again (entered before, maybe in another context) for a while.

    ``brace.web``'s WSGI body is produced after the application returned, chunk by chunk.
    """
    inner = scope._scope
    if inner is None:
        raise RuntimeError("reenter() needs a scope that was entered")
    token = _SCOPE.set(inner)
    with _open_lock:
        OPEN[0] += 1
    try:
        yield
    finally:
        _SCOPE.reset(token)
        with _open_lock:
            OPEN[0] -= 1


def open_scope(seconds: float | None) -> DeadlineScope:
    """A scope for one inbound request (``brace.web``).

    Of ``seconds``, or without a deadline (None) but still recording whether a policy
    inside gave up.
    """
    return DeadlineScope(math.inf if seconds is None else seconds)


# -- asyncio: a cheap watchdog per loop and deadline length ---------------------------------
# A watch is a list [deadline (the loop's time), task, state]: one is made per async call,
# and a list costs a third of a slotted object. The task slot is None once the call ended.
RUNNING, FIRED, CONVERTED = 0, 1, 2
_CANCEL_MESSAGE = "brace: deadline reached"
Watch = list[Any]  # [float, asyncio.Task | None, int]

class Watchdog:
    """Cancels async calls whose deadline passed: one timer per loop and deadline length.

    With ``due`` it is the same FIFO of timers for something else that is due a fixed time
    after it began (a hedged call's first copy, ``_hedge``): ``due(owner)`` runs instead.

    A timer per call (``asyncio.timeout``) costs microseconds on every healthy call. Calls
    of one deadline length end their deadlines in the order they started, so a FIFO with a
    single timer armed for its head is enough; finished calls leave at the head.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, message: str,
                 due: Callable[[Any], object] | None = None) -> None:
        # Weakly: the registry is keyed by loop, and a strong reference here would keep
        # every loop (and its watchdogs) alive forever.
        self._loop = weakref.ref(loop)
        self.seconds = seconds
        self.message = message  # what the TimeoutError says
        # What becomes of a watched owner whose time came: its task is cancelled, unless
        # ``due`` says otherwise (a hedged call starts its next copy).
        self.due = due
        # Whether the loop keeps time on ``clock`` (asyncio's own loops, ``clock`` not
        # replaced; not uvloop's or a test's virtual clock).
        self.same_clock = (type(loop).time is asyncio.BaseEventLoop.time
                           and time.monotonic is _MONOTONIC)
        self.watches: collections.deque[Watch] = collections.deque()
        # Whether a timer is pending, and that timer, weakly: the handle references the
        # loop, which must not be kept alive by its own watchdogs.
        self.armed = False
        self._timer: weakref.ref[asyncio.TimerHandle] | None = None

    def watch(self, task: asyncio.Task[Any], loop: asyncio.AbstractEventLoop,
              started: float | None = None) -> Watch:
        """Start watching ``task``: it is cancelled ``seconds`` after its call began.

        ``started`` is when the call began on ``clock`` (default: now): the one conversion
        from brace's clock to the loop's. asyncio's own loops keep time on that very clock,
        so the call's start is used as it is (one clock read less per call).
        """
        if started is None or not self.same_clock:
            at = loop.time() + self.seconds
        else:
            at = started + self.seconds
        watch: Watch = [at, task, RUNNING]
        self.watches.append(watch)
        if not self.armed:
            self.arm(loop, at)
        return watch

    def arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        """Set the timer for the head of the queue, due at ``at`` (the loop's time)."""
        self.armed = True
        self._timer = weakref.ref(loop.call_at(at, self._fire))

    def disarm(self) -> None:
        """Cancel the pending timer: a dropped watchdog leaves nothing scheduled behind.

        The timer's callback would keep the watchdog, and its deque, alive until it fired.
        """
        timer = None if self._timer is None else self._timer()
        if timer is not None:
            timer.cancel()
        self._timer = None
        self.armed = False

    def release(self, watch: Watch) -> None:
        """The watched call ended: forget it."""
        watch[1] = None
        watches = self.watches
        while watches and watches[0][1] is None:
            watches.popleft()

    def timeout_error(self, watch: Watch, task: asyncio.Task[Any],
                      error: BaseException) -> TimeoutError | None:
        """The TimeoutError the cancellation ``error`` of ``task`` stands for, else None.

        Only when this watchdog cancelled the task, once, and nobody else asked to cancel it
        too: a caller's cancellation always wins and propagates (asyncio.timeout, TaskGroup
        and anyio count on it). On 3.11+ the task counts cancel requests; on 3.10 the
        cancellation carries the watchdog's own message unless another one replaced it.
        """
        if watch[2] != FIRED:
            return None
        watch[2] = CONVERTED
        uncancel = getattr(task, "uncancel", None)
        if uncancel is not None:
            if uncancel() > 0:  # our request withdrawn; another one is still pending
                return None
        elif error.args != (_CANCEL_MESSAGE,):
            return None
        return TimeoutError(self.message)

    def _fire(self) -> None:
        self.armed = False
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        watches = self.watches
        while watches:
            head = watches[0]
            task = head[1]
            if task is None:
                watches.popleft()
            elif head[0] <= now:
                watches.popleft()
                head[2] = FIRED
                if self.due is None:
                    task.cancel(_CANCEL_MESSAGE)
                else:
                    self.due(task)
            else:
                self.armed = True
                self._timer = weakref.ref(loop.call_at(head[0], self._fire))
                break


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Watchdog]] = (
    weakref.WeakKeyDictionary())


def current_task() -> asyncio.Task[Any] | None:
    """The running asyncio task, or None under another async library (trio)."""
    try:
        return asyncio.current_task()
    except RuntimeError:  # no asyncio loop running
        return None


#: Watchdogs kept per loop before idle ones are dropped: calls with ever-new deadline
#: lengths (a deadline derived from a request's remaining time) must not grow memory.
MAX_IDLE_WATCHDOGS = 64


def watchdog(loop: asyncio.AbstractEventLoop, seconds: float, message: str,
             due: Callable[[Any], object] | None = None) -> Watchdog:
    """``loop``'s watchdog for deadlines of ``seconds`` (or, with ``due``, its timers)."""
    per_loop = _watchdogs.get(loop)
    if per_loop is None:
        per_loop = _watchdogs[loop] = {}
    key = seconds if due is None else (seconds, due)
    dog = per_loop.get(key)
    if dog is None:
        if len(per_loop) >= MAX_IDLE_WATCHDOGS:
            # Drop the ones watching nothing; a call still holding one keeps using it.
            for length in [length for length, old in per_loop.items() if not old.watches]:
                per_loop.pop(length).disarm()
        dog = per_loop[key] = Watchdog(loop, seconds, message, due)
    return dog


def watchdog_count() -> int:
    """How many watchdogs the running loop keeps (for tests and diagnostics)."""
    return len(_watchdogs.get(asyncio.get_running_loop(), ()))
