"""A separate OS process of a fleet sharing brace objects through one redis-server.

Usage: ``python fleet_worker.py MODE JSON`` where JSON holds ``url``, ``name`` and the
mode's settings. The worker says it is ready (``SET NAME:ready:INDEX``), waits (bounded)
for ``NAME:go``, runs its bounded loop and prints one JSON line.

Modes:

- ``trials``: a dependency that always fails behind a shared breaker; every call of the
  body records its wall-clock start time. Output: ``starts``.
- ``long_trial``: the lease is shortened to ``lease`` s; the body takes ``trial_s`` and
  succeeds. Output: ``starts`` and ``ends`` of the bodies.
- ``consecutive``: seeded random errors at ``error_rate``, ``seconds`` long, one call per
  ``pace`` s. Output: ``calls``, ``rejected``, ``failed``.
- ``rate``: calls through a shared rate limit (``per_s``, ``burst``, ``processes``) as fast
  as callers come, each giving up at once without a token. Output: ``admitted`` (times).
- ``forced``: a healthy dependency behind a shared breaker; calls every 10 ms until
  ``NAME:stop``. Output: per call ``[time, outcome]``.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
from typing import Any

import redis

import brace
from brace import _redis


def _ready_then_go(client: Any, name: str, index: int) -> None:
    client.set(f"{name}:ready:{index}", 1)
    deadline = time.monotonic() + 20
    while not client.get(f"{name}:go") and time.monotonic() < deadline:
        time.sleep(0.005)


def trials(client: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    name = cfg["name"]
    brace.breaker(name, redis_url=cfg["url"], fail_max=1, reset_timeout=cfg["reset_timeout"],
                  sync_interval=0.05)
    starts: list[float] = []

    @brace.network(breaker=name, attempts=1)
    def dependency() -> None:
        starts.append(time.time())
        time.sleep(cfg.get("trial_s", 0.0))
        raise ConnectionError("dependency keeps failing")

    _ready_then_go(client, name, cfg["index"])
    stop = time.monotonic() + cfg["seconds"]
    while time.monotonic() < stop:
        with contextlib.suppress(ConnectionError, brace.CircuitOpenError):
            dependency()
        time.sleep(0.002)
    return {"starts": starts}


def long_trial(client: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    name = cfg["name"]
    _redis.TRIAL_LEASE_S = cfg["lease"]  # the trial outlives the lease's default many times
    brace.breaker(name, redis_url=cfg["url"], fail_max=1, reset_timeout=0.1,
                  sync_interval=0.05)
    starts: list[float] = []
    ends: list[float] = []

    @brace.network(breaker=name, attempts=1)
    def dependency() -> None:
        starts.append(time.time())
        time.sleep(cfg["trial_s"])
        ends.append(time.time())

    _ready_then_go(client, name, cfg["index"])
    stop = time.monotonic() + cfg["seconds"]
    while time.monotonic() < stop and not starts:
        with contextlib.suppress(brace.CircuitOpenError):
            dependency()
        time.sleep(0.005)
    return {"starts": starts, "ends": ends}


def consecutive(client: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    name = cfg["name"]
    brace.breaker(name, redis_url=cfg["url"], fail_max=5, reset_timeout=cfg["reset_timeout"])
    rng = random.Random(cfg["seed"])
    failed = rejected = calls = 0

    @brace.network(breaker=name, attempts=1)
    def dependency() -> None:
        if rng.random() < cfg["error_rate"]:
            raise ConnectionError("seeded random error")

    _ready_then_go(client, name, cfg["index"])
    stop = time.monotonic() + cfg["seconds"]
    while time.monotonic() < stop:
        calls += 1
        try:
            dependency()
        except ConnectionError:
            failed += 1
        except brace.CircuitOpenError:
            rejected += 1
        time.sleep(cfg["pace"])
    return {"calls": calls, "rejected": rejected, "failed": failed}


def rate(client: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    name = cfg["name"]
    brace.rate_limit(name, per_s=cfg["per_s"], burst=cfg["burst"],
                     processes=cfg["processes"], redis_url=cfg["url"])
    limited = brace.network(attempts=1, deadline=cfg.get("deadline", 0.001),
                            rate_limit=name)(lambda: None)
    admitted: list[float] = []
    _ready_then_go(client, name, cfg["index"])
    stop = time.monotonic() + cfg["seconds"]
    while time.monotonic() < stop:
        try:
            limited()
            admitted.append(time.time())
        except brace.RateLimitedError:
            time.sleep(0.0005)
    return {"admitted": admitted}


def forced(client: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    name = cfg["name"]
    brace.breaker(name, redis_url=cfg["url"], fail_max=3, reset_timeout=cfg["reset_timeout"],
                  sync_interval=cfg["sync_interval"])
    call = brace.network(breaker=name, attempts=1)(lambda: "ok")
    log: list[tuple[float, str]] = []
    _ready_then_go(client, name, cfg["index"])
    stop = time.monotonic() + cfg["seconds"]
    while time.monotonic() < stop and not client.get(f"{name}:stop"):
        try:
            log.append((time.time(), call()))
        except brace.CircuitOpenError:
            log.append((time.time(), "rejected"))
        time.sleep(0.01)
    return {"log": log}


MODES = {"trials": trials, "long_trial": long_trial, "consecutive": consecutive,
         "rate": rate, "forced": forced}


if __name__ == "__main__":
    config = json.loads(sys.argv[2])
    helper = redis.Redis.from_url(config["url"], socket_timeout=10)
    print(json.dumps(MODES[sys.argv[1]](helper, config)), flush=True)
