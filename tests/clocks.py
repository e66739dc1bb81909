"""Virtual time for the tests: one timeline that tenacity, brace and the event loops all read.

Timing tests that measure wall-clock windows are slow and flaky (a busy machine stretches
every window). Here a test runs its code on a ``VirtualClock`` instead: brace's deadline
clock (``brace._deadline.time``) and tenacity's (``tenacity.time``) read it, asyncio runs on
a ``VirtualTimeLoop`` whose time is the clock's, and trio runs under a
``trio.testing.MockClock`` that starts where the clock stands. Whenever every task waits on
a timer, time jumps to the next one, so a test asserts exact virtual times (``exactly``)
and takes no real time.

Virtual time only fits code that waits on timers. Code that waits on real I/O (a socket, a
thread's wake-up) while a timer is pending would see that timer fire at once: such tests
keep the real event loop and the real clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import anyio
import pytest
import trio
import trio.testing

__all__ = ["LIBRARIES", "VirtualClock", "VirtualTimeLoop", "exactly"]

T = TypeVar("T")

#: The async libraries (and anyio on either backend) a ``VirtualClock`` runs code under.
LIBRARIES = ("asyncio", "trio", "anyio-asyncio", "anyio-trio")


def exactly(seconds: float) -> Any:
    """``seconds`` as a virtual duration: exact but for the rounding of float timestamps.

    Virtual times are sums of the delays the code asked for, so a duration measured on a
    ``VirtualClock`` equals what the code scheduled up to float rounding (1e-9 s here).
    """
    return pytest.approx(seconds, rel=0, abs=1e-9)


class VirtualClock:
    """A monotonic clock that moves only when a test (or a virtual event loop) moves it.

    ``advance``/``sleep`` move it by hand (``sleep`` is a tenacity ``sleep=`` hook that also
    records each sleep); ``run_asyncio``, ``run_trio``, ``run_anyio`` and ``runner`` run
    async code with the loop's timers on this clock, jumping to the next timer whenever the
    loop would wait. Between runs the clock stands still where the last run left it.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self._now = now
        self.sleeps: list[float] = []
        self._trio: trio.testing.MockClock | None = None  # while a trio run is under way

    @property
    def now(self) -> float:
        """The virtual time (settable only outside a trio run)."""
        return self.monotonic()

    @now.setter
    def now(self, value: float) -> None:
        if self._trio is not None:
            raise RuntimeError("a trio run owns the clock: advance() it instead")
        self._now = value

    def monotonic(self) -> float:
        """The time: a trio run's virtual time during the run, else the clock's own."""
        mock = self._trio
        return self._now if mock is None else mock.current_time()

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        if self._trio is not None:
            self._trio.jump(seconds)
        else:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """A tenacity ``sleep=`` hook (or ``time.sleep``) that records and advances virtual time."""
        self.sleeps.append(seconds)
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        """The ``sleep`` hook for tenacity's ``AsyncRetrying``."""
        self.sleep(seconds)

    def time_module(self, *, sleeps: bool = False) -> Any:
        """A stand-in for the ``time`` module whose ``monotonic`` reads this clock.

        ``monkeypatch`` puts it where a module imported ``time`` (tenacity, brace's
        ``_deadline``); with ``sleeps=True`` its ``sleep`` is ``self.sleep`` too (brace's
        ``waits``). Everything else is the real ``time`` module's.
        """
        return _TimeModule(self, sleeps=sleeps)

    def patch(self, monkeypatch: pytest.MonkeyPatch, *, sleeps: bool = False) -> None:
        """Make tenacity and brace's deadlines read this clock.

        With ``sleeps=True`` brace's sync sleeps (backoffs, rate-limit waits: all go through
        ``brace.waits.sleep``) record themselves and advance the clock instead of waiting.
        """
        import tenacity

        import brace._deadline
        import brace.waits

        monkeypatch.setattr(tenacity, "time", self.time_module())
        monkeypatch.setattr(brace._deadline, "time", self.time_module())
        if sleeps:
            monkeypatch.setattr(brace.waits, "time", self.time_module(sleeps=True))

    # -- running async code in virtual time ---------------------------------------------------

    def event_loop(self) -> VirtualTimeLoop:
        """A new asyncio event loop on this clock (a ``loop_factory``)."""
        return VirtualTimeLoop(self)

    def run_asyncio(self, main: Coroutine[Any, Any, T]) -> T:
        """``asyncio.run(main)`` on a ``VirtualTimeLoop``."""
        if sys.version_info >= (3, 11):
            with asyncio.Runner(loop_factory=self.event_loop) as runner:
                return runner.run(main)
        loop = self.event_loop()  # pragma: no cover - Python 3.10: asyncio.run's own steps
        asyncio.set_event_loop(loop)  # 3.10's gather() looks the loop up
        try:
            return loop.run_until_complete(main)
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @contextlib.contextmanager
    def _trio_clock(self) -> Iterator[trio.testing.MockClock]:
        # A MockClock that starts where this clock stands and autojumps to the next
        # deadline; the clock reads it during the run and takes its time back after.
        if self._trio is not None:
            raise RuntimeError("one trio run at a time on a VirtualClock")
        mock = trio.testing.MockClock(autojump_threshold=0)
        mock.jump(self._now)
        self._trio = mock
        try:
            yield mock
        finally:
            self._now = mock.current_time()
            self._trio = None

    def run_trio(self, main: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``trio.run(main, *args)`` under a ``MockClock`` that follows this clock."""
        with self._trio_clock() as mock:
            return trio.run(main, *args, clock=mock)

    def run_anyio(self, main: Callable[..., Awaitable[T]], *args: Any,
                  backend: str = "asyncio") -> T:
        """``anyio.run(main, *args, backend=backend)`` in this clock's virtual time."""
        if backend == "trio":
            with self._trio_clock() as mock:
                return anyio.run(main, *args, backend="trio", backend_options={"clock": mock})
        return anyio.run(main, *args, backend=backend,
                         backend_options={"loop_factory": self.event_loop})

    def run(self, library: str, main: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``main(*args)`` under ``library`` (one of ``LIBRARIES``) in virtual time."""
        if library == "asyncio":
            return self.run_asyncio(_called(main, args))
        if library == "trio":
            return self.run_trio(main, *args)
        if library in ("anyio-asyncio", "anyio-trio"):
            return self.run_anyio(main, *args, backend=library.removeprefix("anyio-"))
        raise ValueError(f"unknown async library {library!r}: one of {LIBRARIES}")

    def runner(self, library: str) -> Callable[..., Any]:
        """``run`` for one library: ``runner("trio")(main, *args)`` runs like ``trio.run``."""
        if library not in LIBRARIES:
            raise ValueError(f"unknown async library {library!r}: one of {LIBRARIES}")

        def run(main: Callable[..., Awaitable[Any]], *args: Any) -> Any:
            return self.run(library, main, *args)

        return run


async def _called(main: Callable[..., Awaitable[T]], args: tuple[Any, ...]) -> T:
    return await main(*args)


class _TimeModule:
    """``time`` with ``monotonic`` (and optionally ``sleep``) on a ``VirtualClock``.

    Exists so a module's ``time`` can be replaced wholesale by ``monkeypatch`` while any other
    function it uses from ``time`` still works.
    """

    def __init__(self, clock: VirtualClock, *, sleeps: bool) -> None:
        self.monotonic = clock.monotonic
        if sleeps:
            self.sleep = clock.sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _JumpingSelector(selectors.DefaultSelector):
    """The selector of a ``VirtualTimeLoop``: instead of blocking until the next timer is
    due, it moves the clock to that timer.

    It still polls real I/O first (a thread's ``call_soon_threadsafe`` wakes the loop
    through a socket), and blocks for real only when no timer is pending at all.
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # nothing scheduled: only I/O (another thread) can wake the loop
            return super().select(None)
        self._clock.advance(timeout)  # asyncio asked to wait exactly until its next timer
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` is a ``VirtualClock``'s, and which jumps that clock to
    the next timer whenever it would wait for it.

    ``asyncio.sleep``, ``asyncio.wait`` timeouts, ``asyncio.timeout`` and brace's deadline
    watchdog (``loop.call_at`` at ``loop.time()`` + what is left) then run in virtual time,
    as brace's ``_deadline.clock`` does when ``VirtualClock.patch`` is in place: both read
    the one clock. (The same idea as the ``looptime`` pytest plugin and aiotools'
    ``VirtualClock``.)
    """

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(_JumpingSelector(clock))
        self._virtual_clock = clock

    def time(self) -> float:
        """The virtual time."""
        return self._virtual_clock.monotonic()
