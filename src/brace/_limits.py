"""Bulkheads, rate limits and throttles: they refuse, they do not queue forever.

A bulkhead caps how many attempts run at once against one dependency; a full one waits at
most ``queue_timeout`` (never past the call's deadline), then raises ``BulkheadFullError``. An
adaptive bulkhead learns that cap from the latency and failures of the attempts it admits
(Vegas). A rate limit is a token bucket (GCRA) per dependency; an attempt waits for its token
only while the deadline allows, else ``RateLimitedError``. A throttle refuses attempts
locally, with the probability of Google SRE's client-side throttling, while the dependency
refuses most of them anyway (``ThrottledError``). None of them is retried by the policy that
raised it, and a breaker counts none as a success nor as a failure.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import math
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from brace import _config, _events, _validate
from brace._budget import Window
from brace._deadline import clock
from brace._outcome import BraceError

__all__ = [
    "ADAPTIVE",
    "BulkheadFullError",
    "RateLimitedError",
    "Refused",
    "Throttle",
    "ThrottledError",
    "bulkhead",
    "find_bulkhead",
    "find_rate_limit",
    "find_throttle",
    "forget",
    "rate_limit",
    "reset",
    "throttle",
]

#: How many objects that learn from outcomes (adaptive bulkheads and rate limits,
#: throttles) exist: while none does, the call path tells no gate how an attempt went.
ADAPTIVE = [0]


# A gate refused the attempt without running it (the dependency gave no verdict).
Refused = BraceError


class BulkheadFullError(BraceError):
    """A bulkhead was full and stayed full for as long as the call could wait."""

    __module__ = "brace"


class RateLimitedError(BraceError):
    """A rate limit had no token for this attempt within the call's deadline."""

    __module__ = "brace"


class ThrottledError(BraceError):
    """A throttle refused the attempt locally: the dependency refuses most attempts anyway.

    Attributes:
        probability: The share of attempts the throttle was refusing when it refused this
            one.
    """

    __module__ = "brace"

    def __init__(self, throttle: str, probability: float) -> None:
        self.probability = probability
        super().__init__(f"throttle {throttle!r} refused the attempt locally (refusing "
                         f"{probability:.0%} of attempts: the dependency accepted too few "
                         "of the recent ones)")


class _Waiter:
    """One attempt queued for a slot: ``wake`` is called (from any thread) to hand it one."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.granted = False
        self.wake = wake


# An adaptive bulkhead's limit follows TCP Vegas as Netflix's concurrency-limits applies it
# (VegasLimit, https://github.com/Netflix/concurrency-limits): the queue the limit builds at
# the dependency is estimated as limit x (1 - rtt_noload / rtt), where rtt_noload is the
# lowest latency seen; the limit grows while that queue is short and shrinks when it is
# long, by steps that scale with log10(limit). A failed attempt (the dependency's failure:
# a timeout, a 503, a refused connection) shrinks it multiplicatively, as AIMD does.
# Vegas needs no latency target: it keeps the dependency busy with a short queue, so the
# latency of admitted attempts stays near their unloaded latency. The unloaded latency may
# change (a slower dependency, a new region): every _PROBE windows one window runs at half
# the limit to drain the queue, and its lowest latency is the new rtt_noload (BBR's
# ProbeRTT; resetting it to a loaded latency, as VegasLimit's probe does, would read the
# queue as none and let the limit ratchet up).
_START = 4  # the first limit (at most max_concurrent): an adaptive bulkhead starts low
_BACKOFF = 0.9  # the limit after a window with a failure, x the limit (Netflix's AIMD)
_PROBE = 30  # windows between fresh looks at rtt_noload
#: At most one limit event per this many seconds per bulkhead or rate limit.
EVENT_INTERVAL_S = 1.0


class _Vegas:
    """The samples of one window of attempts, and the Vegas update at its end.

    A window closes after ``limit`` samples (about one round trip of the dependency at
    that limit, as Vegas updates once per round trip). Samples are added without a lock (a
    sample lost to a race between threads changes nothing that matters); the update holds
    the bulkhead's lock.
    """

    __slots__ = ("dropped", "held", "min_rtt", "noload", "peak", "samples", "total",
                 "windows")

    def __init__(self) -> None:
        self.samples = 0
        self.total = 0.0  # the window's latencies, summed (seconds)
        self.min_rtt = math.inf
        self.dropped = False  # a failed attempt in the window
        self.peak = 0  # the most attempts in flight at a sample
        self.noload = math.inf  # the lowest latency seen (rtt_noload)
        self.windows = 0
        self.held = 0.0  # during a probe window: the limit to return to after it

    def update(self, limit: float, ceiling: int) -> float:
        """The next limit, after a full window; the window starts afresh."""
        samples, rtt, dropped, peak = self.samples, self.total, self.dropped, self.peak
        rtt = rtt / samples if samples else 0.0
        lowest = self.min_rtt
        self.windows += 1
        self.samples, self.total, self.min_rtt, self.dropped, self.peak = (
            0, 0.0, math.inf, False, 0)
        if self.held:  # the probe window ran at half the limit: its latency is unloaded
            limit, self.held = self.held, 0.0
            self.noload = lowest
            return limit
        self.noload = min(self.noload, lowest)
        if self.windows % _PROBE == 0 and limit >= 2:
            self.held = limit
            return limit / 2
        step = max(1.0, math.log10(limit))
        if dropped:
            limit = limit * _BACKOFF
        elif peak * 2 < limit or rtt <= 0.0:
            return limit  # not limited by the bulkhead: nothing learned of its limit
        else:
            queue = limit * (1.0 - self.noload / rtt)
            if queue <= step:
                limit += 6 * step  # no queue at all: grow fast (Vegas's beta)
            elif queue < 3 * step:  # below alpha: a little more
                limit += step
            elif queue > 6 * step:  # above beta: the dependency queues, back off
                limit -= step
        return min(float(ceiling), max(1.0, limit))


class Bulkhead:
    """At most ``max_concurrent`` attempts at once; get one with ``brace.bulkhead``.

    A freed slot goes to the attempt that has waited longest, whatever it runs on: one FIFO
    of waiters serves threads and the event loops of every async library, and each is woken
    by its own primitive (an Event, an asyncio future, a trio event). An adaptive bulkhead
    (``adaptive=True``) admits ``limit`` attempts at once, learned from the latency and the
    failures of the attempts it admits, up to ``max_concurrent``.
    """

    __module__ = "brace"

    def __init__(self, name: str, max_concurrent: int, queue_timeout: float,
                 adaptive: bool = False) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.queue_timeout = queue_timeout  # seconds
        self.adaptive = adaptive
        self._in_use = 0
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._lock = threading.Lock()
        # The attempts admitted at once: max_concurrent, or the learned limit (and its
        # fraction, which Vegas's small steps accumulate).
        self._cap = min(_START, max_concurrent) if adaptive else max_concurrent
        self._limit = float(self._cap)
        self._vegas = _Vegas() if adaptive else None
        self._reported = (self._cap, -math.inf)  # the limit last reported, and when

    @property
    def limit(self) -> int:
        """Attempts admitted at once right now: ``max_concurrent``, or the learned limit."""
        return self._cap

    @property
    def in_use(self) -> int:
        """Slots taken right now."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Attempts queued for a slot right now."""
        return len(self._queue)

    def try_acquire(self) -> bool:
        """Take a free slot without waiting: False when every slot is taken."""
        with self._lock:
            if self._in_use < self._cap:
                self._in_use += 1
                return True
            return False

    def _enter(self, wake: Callable[[], object]) -> _Waiter | None:
        # A slot freed meanwhile is taken at once; otherwise the attempt queues.
        with self._lock:
            if self._in_use < self._cap:
                self._in_use += 1
                return None
            waiter = _Waiter(wake)
            self._queue.append(waiter)
            return waiter

    def _leave(self, waiter: _Waiter) -> bool:
        """The waiter stops waiting: True when it was handed a slot meanwhile (it owns it)."""
        with self._lock:
            if waiter.granted:
                return True
            with contextlib.suppress(ValueError):
                self._queue.remove(waiter)
            return False

    def _abandon(self, waiter: _Waiter) -> None:
        # Cancelled while queued: a slot handed over meanwhile goes to the next waiter.
        if self._leave(waiter):
            self.release()

    def acquire(self, name: str, remaining: float) -> None:
        """Take a slot (threads), waiting at most ``min(queue_timeout, remaining)``.

        ``remaining`` is what is left of the call's deadline, in seconds.
        """
        if self.try_acquire():  # the common case: a free slot
            return
        started, limit = clock(), min(self.queue_timeout, max(0.0, remaining))
        if limit > 0:
            ready = threading.Event()
            waiter = self._enter(ready.set)
            if waiter is None:
                return
            try:
                ready.wait(limit)
            except BaseException:
                self._abandon(waiter)
                raise
            if self._leave(waiter):
                return
        self._refuse(name, clock() - started)

    async def aacquire(self, name: str, remaining: float) -> None:
        """Take a slot (any async library), waiting at most ``min(queue_timeout, remaining)``."""
        if self.try_acquire():
            return
        started, limit = clock(), min(self.queue_timeout, max(0.0, remaining))
        if limit > 0:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # trio (or anyio on trio)
                loop = None
            wait: Callable[[], Awaitable[object]]
            if loop is None:
                import trio

                token, ready = trio.lowlevel.current_trio_token(), trio.Event()
                waiter = self._enter(functools.partial(_wake_trio, token, ready))

                async def wait() -> None:
                    with trio.move_on_after(limit):
                        await ready.wait()
            else:
                future = loop.create_future()
                waiter = self._enter(functools.partial(_wake_asyncio, loop, future,
                                                       threading.get_ident()))
                wait = functools.partial(asyncio.wait, (future,), timeout=limit)
            if waiter is None:
                return
            try:
                await wait()
            except BaseException:
                self._abandon(waiter)
                raise
            if self._leave(waiter):
                return
        self._refuse(name, clock() - started)

    def release(self) -> None:
        """Give the slot back: to the longest waiting attempt, else to the pool."""
        while True:
            with self._lock:
                # Over a limit that shrank meanwhile, the slot is not handed on.
                if not self._queue or self._in_use > self._cap:
                    self._in_use -= 1
                    return
                waiter = self._queue.popleft()
                waiter.granted = True
            try:
                waiter.wake()
                return
            except RuntimeError:
                # Its event loop (or trio run) ended: nobody will use the slot, pass it on.
                continue

    def sample(self, rtt: float, failed: bool) -> None:
        """An adaptive bulkhead learns from one admitted attempt that ended (after ``release``).

        ``rtt`` is how long the attempt ran (seconds); ``failed`` whether it was a failure
        of the dependency. Cancelled and refused attempts are no sample.
        """
        vegas = self._vegas
        if vegas is None:
            return
        vegas.samples += 1
        vegas.total += rtt
        if rtt < vegas.min_rtt:
            vegas.min_rtt = rtt
        if failed:
            vegas.dropped = True
        in_flight = self._in_use + 1  # this attempt was in flight until its release
        if in_flight > vegas.peak:
            vegas.peak = in_flight
        if vegas.samples >= self._cap:
            self._learn(vegas)

    def _learn(self, vegas: _Vegas) -> None:
        wake: list[_Waiter] = []
        with self._lock:
            if vegas.samples < self._cap:
                return  # another thread closed this window
            self._limit = vegas.update(self._limit, self.max_concurrent)
            self._cap = int(self._limit)
            # A limit that grew admits as many queued attempts at once.
            while self._queue and self._in_use < self._cap:
                waiter = self._queue.popleft()
                waiter.granted = True
                self._in_use += 1
                wake.append(waiter)
            limit, (reported, at) = self._cap, self._reported
            now = clock()
            report = limit != reported and now - at >= EVENT_INTERVAL_S
            if report:
                self._reported = (limit, now)
        for waiter in wake:
            try:
                waiter.wake()
            except RuntimeError:
                self.release()  # its loop ended: the slot goes on
        if report:
            _events.bulkhead_limit_changed(self.name, reported, limit,
                                           None if math.isinf(vegas.noload) else vegas.noload)

    def _refuse(self, name: str, waited: float) -> None:
        _events.bulkhead_rejected(self.name, name, self._cap, waited)
        raise BulkheadFullError(f"bulkhead {self.name!r} is full ({self._cap} "
                                f"attempts running)")


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


# A release on the waiter's own thread (or trio run) wakes it directly; from elsewhere it
# goes through the loop's thread-safe door, which costs a wake-up of its selector.
def _wake_asyncio(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None],
                  thread: int) -> None:
    if threading.get_ident() == thread:
        _set(future)
    else:
        loop.call_soon_threadsafe(_set, future)


def _wake_trio(token: Any, ready: Any) -> None:
    import trio

    try:
        here = trio.lowlevel.current_trio_token() is token
    except RuntimeError:  # not in a trio run
        here = False
    if here:
        ready.set()
    else:
        token.run_sync_soon(ready.set)


def _now() -> float:
    # A token bucket's clock: inside no_waits() the skipped sleeps count as time passed, so
    # tokens come back as they would in a real run.
    return clock() + _config.state.skipped


# An adaptive rate limit's rate follows CUBIC (RFC 9438) as botocore's adaptive retry mode
# applies it to a client's send rate (botocore/retries/adaptive.py, cubic.py): a throttling
# answer cuts the rate to BETA x W_max, and from that moment the rate grows back along
# C x (t - K)^3 + W_max, K being the time to regain W_max: slowly near it, where the
# dependency said "too much", and faster beyond, probing for capacity that came back. Two
# changes make it fit rate limits that count in windows of a second (most APIs do):
# W_max is the rate the dependency *accepted* over the last second when that is lower than
# the rate sent (botocore takes the rate sent, so a burst at a high starting rate is cut
# only by 30 % at a time), and after a cut the rate is cut again only once the dependency
# has accepted an attempt since (or 2 s have passed), since the throttling answers until
# then answer what it counted before the cut (a limiter's window of a second still full of
# the old rate's attempts): botocore cuts on each, and 20 of them in a burst leave 0.08 %
# of the rate. As in
# botocore, the rate grows no further than twice what was accepted over the last second,
# so an idle client does not climb to a rate it has not tried.
_CUBIC_C = 0.4
_CUBIC_BETA = 0.7
_CUT_INTERVAL_S = 1.0  # the window the accepted rate is measured over
_CUT_AGAIN_S = 2.0  # after a cut with nothing accepted since, throttling cuts again
# Answers accepted this soon after a cut were sent before it and still count for W_max:
# concurrent callers' answers arrive out of order, and the first 429 may overtake them.
_CUT_SETTLES_S = 0.25
_MIN_RATE = 0.5  # attempts per second an adaptive rate limit keeps at the least (botocore's)


class _Cubic:
    """An adaptive rate limit's rate: cut on throttling answers, regrown along a cubic."""

    __slots__ = ("accepted", "before", "ceiling", "cut_at", "fresh", "k", "rate", "w_max")

    def __init__(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.rate = ceiling  # until the first throttling answer: the configured per_s
        self.w_max = ceiling
        self.k = 0.0
        self.cut_at = -math.inf  # when the rate was last cut (``clock``)
        self.fresh = True  # an answer was accepted since the latest cut
        self.before = ceiling  # the rate just before the latest cut
        self.accepted = Window(_CUT_INTERVAL_S)  # answers that were no throttling

    def _accepted_per_s(self, now: float) -> float:
        accepted = self.accepted
        accepted.flush()
        return accepted.totals(now)[0] / _CUT_INTERVAL_S

    def throttled(self, now: float) -> None:
        """A throttling answer."""
        if not self.fresh and now - self.cut_at < _CUT_AGAIN_S:
            return  # nothing accepted since the latest cut: that cut answered it already
        self.before = self.rate
        self._cut(now, self._accepted_per_s(now))

    def _cut(self, now: float, accepted: float) -> None:
        base = min(self.before, accepted) if accepted >= 1 else self.before
        self.w_max = base
        self.k = (base * (1 - _CUBIC_BETA) / _CUBIC_C) ** (1 / 3)
        self.cut_at, self.fresh = now, False
        self.rate = max(min(_MIN_RATE, self.ceiling), base * _CUBIC_BETA)

    def succeeded(self, now: float) -> None:
        """An answer that was no throttling: the rate regrows along the cubic."""
        self.accepted.call()
        if self.cut_at == -math.inf:
            return  # never cut: the configured rate stands
        if now - self.cut_at < _CUT_SETTLES_S:
            accepted = self._accepted_per_s(now)
            if accepted > self.w_max and self.w_max < self.before:
                cut_at = self.cut_at
                self._cut(cut_at, accepted)  # the cut, measured with this answer too
            return
        self.fresh = True
        grown = _CUBIC_C * (now - self.cut_at - self.k) ** 3 + self.w_max
        if grown > self.rate:  # the cap matters only to growth: counted only then
            accepted = self._accepted_per_s(now)
            # Growth stops at twice what was accepted (never below the rate now: a
            # limiter's window emptied by the cut's own throttling answers is no reason to
            # cut again).
            if accepted >= 1:
                grown = min(grown, max(2 * accepted, self.rate))
        self.rate = max(min(_MIN_RATE, self.ceiling), min(self.ceiling, grown))


class RateLimit:
    """A token bucket (GCRA): ``per_s`` tokens a second, ``burst`` at once.

    An adaptive one (``adaptive=True``) applies ``rate`` tokens a second instead, learned
    from throttling answers, up to ``per_s``.
    """

    __module__ = "brace"

    def __init__(self, name: str, per_s: float, burst: int, shared: Any = None,
                 processes: int = 1, adaptive: bool = False) -> None:
        self.name = name
        self.per_s = per_s
        self.burst = burst
        self.processes = processes
        self.adaptive = adaptive
        self._cubic = _Cubic(per_s) if adaptive else None
        self._reported = (per_s, -math.inf)  # the rate last reported, and when
        self._shared = shared  # a brace._redis.SharedRateLimit: the fleet's bucket
        #: The longest wait for one Redis operation (seconds); None for a local limit.
        self.redis_timeout: float | None = None if shared is None else shared.timeout
        # Locally (no Redis, or Redis unreachable): this process's share of the rate.
        self._interval = processes / per_s
        self._tat = 0.0  # theoretical arrival time of the next token (monotonic)
        self._from_local = True  # whether the latest token came from the local bucket
        self._lock = threading.Lock()

    def reserve(self, name: str, remaining: float) -> float:
        """Reserve a token; return how long to wait for it, or raise RateLimitedError.

        ``remaining`` is the seconds the call has left: the longest it may wait, for the
        token and for Redis. A limit shared through Redis asks Redis only with at least its
        ``redis_timeout`` left; with less it decides from this process's lease of tokens
        (none leased: refused, while a lease is taken for the next calls in the
        background) or, while Redis is unreachable, from this process's share.
        """
        verdict = None if self._shared is None else self._shared.reserve(remaining)
        if verdict is not None:
            granted, wait = verdict
            if not granted:
                self._refuse(name, wait)
            self._from_local = False
            return wait  # type: ignore[no-any-return]
        if self._shared is not None:  # Redis unreachable: this process's share, remembered
            wait = self._reserve_here(name, remaining)
            self._shared.admitted_locally()
            return wait
        return self._reserve_here(name, remaining)

    def _reserve_here(self, name: str, remaining: float) -> float:
        with self._lock:
            now = _now()
            tat = max(self._tat, now)
            wait = max(0.0, tat - now - (self.burst - 1) * self._interval)
            if wait >= remaining:
                self._refuse(name, wait)
            self._tat = tat + self._interval
            self._from_local = True
            return wait

    def take_now(self) -> bool:
        """Take a token from the local bucket if one is free now: False when it would wait.

        The healthy path's test: nothing is reserved when it says False. A fleet's bucket
        (Redis) answers from this process's lease of tokens, without a round trip.
        """
        if self._shared is not None:
            taken = self._shared.take_now()
            self._from_local = not taken
            return taken  # type: ignore[no-any-return]
        with self._lock:
            now = _now()
            tat = max(self._tat, now)
            if tat - now > (self.burst - 1) * self._interval:
                return False
            self._tat = tat + self._interval
            self._from_local = True
            return True

    def give_back(self) -> None:
        """Return the token of an attempt that was cancelled while it waited for it.

        Locally the bucket's next token comes one interval sooner; a token of the fleet's
        bucket goes back to this process's lease.
        """
        if not self._from_local:
            self._shared.give_back()
            return
        with self._lock:
            self._tat = max(_now(), self._tat - self._interval)

    @property
    def rate(self) -> float:
        """Tokens a second right now: ``per_s``, or the rate an adaptive limit learned."""
        return self.per_s if self._cubic is None else self._cubic.rate

    def learn(self, throttled: bool) -> None:
        """An adaptive rate limit learns from one answer of the dependency.

        ``throttled``: the dependency said "slow down" (a 429, a 503 with Retry-After, a
        client library's throttling error). Other answers let the rate grow back.
        """
        cubic = self._cubic
        if cubic is None:
            return
        now = clock()
        with self._lock:
            old = cubic.rate
            if throttled:
                cubic.throttled(now)
            else:
                cubic.succeeded(now)
            rate = cubic.rate
            if rate == old:
                return
            self._interval = self.processes / rate
            if self._shared is not None:
                self._shared.set_rate(rate)
            reported, at = self._reported
            if now - at < EVENT_INTERVAL_S or abs(rate - reported) < 0.05 * reported:
                return  # at most one event a second, and none for a change under 5 %
            self._reported = (rate, now)
        _events.rate_limit_rate_changed(self.name, reported, rate, throttled)

    def _refuse(self, name: str, wait: float) -> None:
        _events.rate_limit_rejected(self.name, name, wait)
        raise RateLimitedError(f"rate limit {self.name!r}: the next token is {wait:.3f} s "
                               "away, past the call's deadline")


class Throttle:
    """Client-side throttling; get one with ``brace.throttle``.

    Google SRE's adaptive throttling ("Handling Overload", Site Reliability Engineering,
    2016): over the last ``window`` seconds, of ``requests`` attempts (those it refused
    included) the dependency accepted ``accepts``; each new attempt is refused locally
    with probability ``max(0, (requests - k x accepts) / (requests + 1))``. While the
    dependency accepts more than ``1/k`` of the attempts, nothing is refused; when it
    refuses everything, almost everything is refused here, without reaching it, and the
    few attempts let through find out when it recovers. An attempt is accepted unless it
    was a failure of the dependency (what breakers count: a timeout, a 503, a refused
    connection); a cancelled or refused attempt is not counted.
    """

    __module__ = "brace"

    def __init__(self, name: str, k: float, window: float) -> None:
        self.name = name
        self.k = k
        self.window = window  # seconds
        # Calls: attempts with a verdict, and refused ones; events: those not accepted.
        self._counts = Window(window)
        # Until when (``clock``) an attempt not accepted is in the window: before then the
        # probability may be above 0; after, every attempt in the window was accepted.
        self._doubt_until = -math.inf

    @property
    def probability(self) -> float:
        """The share of attempts refused locally right now (0 while the dependency copes)."""
        now = clock()
        if now >= self._doubt_until:
            return 0.0
        with self._counts.lock:
            return self._probability(now)

    def _probability(self, now: float) -> float:
        counts = self._counts
        counts.flush()
        requests, refused = counts.totals(now)
        return max(0.0, (requests - self.k * (requests - refused)) / (requests + 1))

    def quiet(self) -> bool:
        """Whether every attempt in the window was accepted: admitting needs no draw."""
        return clock() >= self._doubt_until

    def admit(self, name: str) -> None:
        """Let the attempt of ``name`` through, or refuse it (``ThrottledError``)."""
        now = clock()
        if now >= self._doubt_until:
            return
        counts = self._counts
        with counts.lock:
            probability = self._probability(now)
            if probability <= 0.0 or random.random() >= probability:
                return
            bucket = counts.bucket(now)  # a refused attempt counts, as one not accepted
            bucket[1] += 1
            bucket[2] += 1
            self._doubt_until = now + self.window
        _events.throttle_rejected(self.name, name, probability)
        raise ThrottledError(self.name, probability)

    def record(self, accepted: bool) -> None:
        """Count one attempt the dependency answered: ``accepted``, or a failure of it."""
        counts = self._counts
        if accepted:
            counts.call()  # the healthy path: batched, no lock
            return
        now = clock()
        with counts.lock:
            counts.flush()
            bucket = counts.bucket(now)
            bucket[1] += 1
            bucket[2] += 1
            self._doubt_until = now + self.window

    def reset(self) -> None:
        """Forget every counted attempt."""
        self._counts.reset()
        self._doubt_until = -math.inf


_bulkheads: dict[str, Bulkhead] = {}
_rate_limits: dict[str, RateLimit] = {}
_throttles: dict[str, Throttle] = {}
_lock = threading.Lock()


def _existing(found: Any, name: str, kind: str, given: dict[str, Any]) -> Any:
    conflicts = sorted(k for k, v in given.items() if getattr(found, k) != _validate.plain(v))
    if conflicts:
        shown = ", ".join(f"{k}={getattr(found, k)!r}" for k in conflicts)
        raise ValueError(f"{kind} {name!r} already exists with {shown}")
    return found


def bulkhead(name: str, *, max_concurrent: int | None = None,
             queue_timeout: _validate.Duration | None = None,
             adaptive: bool | None = None) -> Bulkhead:
    """Return the bulkhead called ``name``, creating it with these settings once.

    Settings are keyword-only.

    Args:
        name: The bulkhead's name; policies use it with ``bulkhead=NAME``.
        max_concurrent: Attempts that may run at once (int in 1-10**9, default 10); with
            ``adaptive``, the ceiling of the learned limit (set it well above what the
            dependency serves at once, e.g. 64).
        queue_timeout: How long a full bulkhead makes an attempt wait for a slot: seconds
            or a ``datetime.timedelta`` (0-1e7 s, default 0: refuse at once); never past
            the call's deadline.
        adaptive: Learn the limit from the attempts it admits (default False): it starts
            at 4 and follows TCP Vegas, as Netflix's concurrency-limits does: it grows
            while the attempts' latency stays near the lowest seen (the dependency does
            not queue them), shrinks when latency grows with the limit (it queues them)
            and after failures of the dependency. ``limit`` is the current limit; each
            change is a ``bulkhead.limit_changed`` event (at most one a second).

    Returns:
        The ``Bulkhead``: ``in_use`` and ``waiting`` say how many attempts hold a slot and
        how many queue for one, ``limit`` how many it admits at once. A freed slot goes to
        the attempt that has waited longest.

    Raises:
        TypeError, ValueError: a setting is out of range, or conflicts with the existing one.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"bulkhead name must be a non-empty str, got {_validate.shown(name)}")
    given = {k: v for k, v in (("max_concurrent", max_concurrent),
                               ("queue_timeout", queue_timeout), ("adaptive", adaptive))
             if v is not None}
    with _lock:
        if name in _bulkheads:
            return _existing(_bulkheads[name], name, "bulkhead", given)  # type: ignore[no-any-return]
        learns = _validate.flag(given.get("adaptive", False), "adaptive")
        created = Bulkhead(
            name, _validate.attempts(given.get("max_concurrent", 10), "max_concurrent"),
            _validate.seconds(given.get("queue_timeout", 0.0), "queue_timeout"), learns)
        _bulkheads[name] = created
        ADAPTIVE[0] += learns
        return created


def rate_limit(name: str, *, per_s: float | None = None, burst: int | None = None,
               redis: Any = None, redis_url: str | None = None,
               processes: int | None = None,
               redis_timeout: _validate.Duration | None = None,
               adaptive: bool | None = None) -> RateLimit:
    """Return the rate limit called ``name``, creating it with these settings once.

    Settings are keyword-only.

    Args:
        name: The rate limit's name; policies use it with ``rate_limit=NAME``.
        per_s: Attempts allowed per second (1e-6-1e9, default 10).
        burst: Attempts allowed at once before the rate applies (int in 1-10**9,
            default 1).
        redis: A ``redis.Redis`` (or ``RedisCluster``) client: one limit for every process
            using the name, on Redis's clock. Each process leases several tokens per round
            trip (sized from its recent demand), so a healthy call makes no round trip and a
            refusal none while the fleet's latest answer stands; under contention processes
            take turns, so none starves. brace talks to that server with its own timeouts
            (``redis_timeout``). A ``redis.asyncio`` client is a TypeError: pass a
            synchronous one.
        redis_url: Same as ``redis=``, with a client brace builds (one connection pool per
            URL and ``redis_timeout`` per process).
        processes: How many processes share the limit: while Redis is unreachable (or
            without Redis) each applies ``per_s / processes``, and with Redis one lease of
            tokens is at most a process's share (int in 1-10**9, default 1).
        redis_timeout: With Redis: the longest brace waits for one Redis operation
            (seconds or a ``timedelta``, 0.001-60 s, default 0.25). An attempt with less
            time left than this takes a leased token or is refused, without Redis.
        adaptive: Learn the rate from the dependency's answers (default False): a
            throttling answer (a 429, a 503 with Retry-After, ``RESOURCE_EXHAUSTED``, a
            client library's throttling code) cuts it to 0.7 x the rate then sent, and it
            grows back along CUBIC's curve, as botocore's adaptive mode does, up to
            ``per_s`` (the ceiling) and at most twice the rate actually sent. ``rate`` is
            the rate now; each change of 5 % or more is a ``rate_limit.rate_changed``
            event (at most one a second). With Redis, each process asks the fleet's bucket
            at the rate it learned.

    Returns:
        The ``RateLimit``; ``rate`` is the rate it applies now.

    Raises:
        TypeError, ValueError: a setting is out of range, or conflicts with the existing one.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"rate limit name must be a non-empty str, got {_validate.shown(name)}")
    given = {k: v for k, v in (("per_s", per_s), ("burst", burst), ("processes", processes),
                               ("redis_timeout", redis_timeout), ("adaptive", adaptive))
             if v is not None}
    with _lock:
        if name in _rate_limits:
            return _existing(_rate_limits[name], name, "rate limit", given)  # type: ignore[no-any-return]
        rate = _validate.number(given.get("per_s", 10.0), "per_s", low=1e-6,
                                high=_validate.MAX_PER_S,
                                unit=" of attempts per second")
        size = _validate.attempts(given.get("burst", 1), "burst")
        processes = _validate.attempts(given.get("processes", 1), "processes")
        learns = _validate.flag(given.get("adaptive", False), "adaptive")
        timeout = _validate.redis_timeout(redis_timeout, redis is not None or redis_url is not None)
        shared = None
        if redis is not None or redis_url is not None:
            if redis is not None and redis_url is not None:
                raise TypeError("pass redis= or redis_url=, not both")
            from brace import _redis  # the redis client only when a limit is shared

            client, server = _redis.client_for(redis, redis_url, timeout)
            shared = _redis.SharedRateLimit(name, client, server, rate, size, processes, timeout)
        created = _rate_limits[name] = RateLimit(name, rate, size, shared, processes, learns)
        ADAPTIVE[0] += learns
        return created


def throttle(name: str, *, k: float | None = None,
             window: _validate.Duration | None = None) -> Throttle:
    """Return the throttle called ``name``, creating it with these settings once.

    Settings are keyword-only. A policy passes every attempt through it with
    ``throttle=NAME``, after the breaker and before the rate limit and the bulkhead.

    Args:
        name: The throttle's name; policies use it with ``throttle=NAME``.
        k: How many attempts per accepted one may reach the dependency before the
            throttle refuses some (1-1000, default 2.0, the SRE book's value: refusals
            start once the dependency accepts fewer than half). Lower refuses sooner.
        window: The seconds of attempts it counts (seconds or a ``timedelta``,
            0.01-1e7 s, default 120). A shorter window forgets an outage sooner; the
            share of attempts let through grows about k-fold per window of recovery.

    Returns:
        The ``Throttle``: ``probability`` is the share of attempts it refuses right now.
        A refusal is a ``ThrottledError`` (a ``brace.BraceError``), never retried, and a
        ``throttle.rejected`` event.

    Raises:
        TypeError, ValueError: a setting is out of range, or conflicts with the existing one.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"throttle name must be a non-empty str, got {_validate.shown(name)}")
    given = {key: value for key, value in (("k", k), ("window", window)) if value is not None}
    with _lock:
        if name in _throttles:
            return _existing(_throttles[name], name, "throttle", given)  # type: ignore[no-any-return]
        created = _throttles[name] = Throttle(
            name, _validate.number(given.get("k", 2.0), "k", low=1.0, high=1000.0),
            _validate.seconds(given.get("window", 120.0), "window", low=0.01))
        ADAPTIVE[0] += 1
        return created


def find_throttle(name: str) -> Throttle:
    """The throttle ``name`` (created with defaults on first use)."""
    return _throttles.get(name) or throttle(name)


def find_throttle_if(name: str) -> Throttle | None:
    """The throttle ``name`` if it exists (looking does not create it)."""
    return _throttles.get(name)


def find_bulkhead_if(name: str) -> Bulkhead | None:
    """The bulkhead ``name`` if it exists (looking does not create it)."""
    return _bulkheads.get(name)


def find_rate_limit_if(name: str) -> RateLimit | None:
    """The rate limit ``name`` if it exists (looking does not create it)."""
    return _rate_limits.get(name)


def find_bulkhead(name: str) -> Bulkhead:
    """The bulkhead ``name`` (created with defaults on first use)."""
    return _bulkheads.get(name) or bulkhead(name)


def find_rate_limit(name: str) -> RateLimit:
    """The rate limit ``name`` (created with defaults on first use)."""
    return _rate_limits.get(name) or rate_limit(name)


def forget(name: str) -> bool:
    """Forget the bulkhead, rate limit and throttle called ``name``; False if none existed.

    The next ``brace.bulkhead(name, ...)`` (``rate_limit``, ``throttle``) creates them
    afresh. Attempts holding a slot or a token of the old ones finish with them (so for a
    moment the old bulkhead's attempts and the new one's may both run).
    """
    with _lock:
        found = [registry.pop(name, None) for registry in (_bulkheads, _rate_limits,
                                                           _throttles)]
        ADAPTIVE[0] -= sum(_learns(gate) for gate in found)
        return any(gate is not None for gate in found)


def _learns(gate: object) -> bool:
    # Whether ``gate`` learns from outcomes (counted in ADAPTIVE while it exists).
    return isinstance(gate, Throttle) or getattr(gate, "adaptive", False) is True


_config.forgetters.append(forget)


def reset() -> None:
    """Forget every bulkhead, rate limit and throttle (tests)."""
    with _lock:
        _bulkheads.clear()
        _rate_limits.clear()
        _throttles.clear()
        ADAPTIVE[0] = 0
