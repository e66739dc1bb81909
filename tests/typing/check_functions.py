"""Decorated plain and async functions keep their types (checked by mypy and pyright)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from typing_extensions import assert_type

import brace

policy = brace.http(deadline=5)


@brace.network
def bare(key: int) -> str:
    return str(key)


@brace.http()
def called(key: int, *, verbose: bool = False) -> str:
    return str(key)


@brace.http(attempts=3)
def overridden(key: int) -> list[str]:
    return [str(key)]


@policy
def from_variable(key: int) -> bytes:
    return b""


@brace.database(attempts=3, breaker="orders-db")
async def load(order_id: int) -> dict[str, int]:
    return {"id": order_id}


@brace.network
async def ping() -> None:
    return None


@brace.http(deadline=5)
def no_arguments() -> int:
    return 1


assert_type(bare(1), str)
assert_type(called(1), str)
assert_type(called(1, verbose=True), str)
assert_type(called(key=1), str)
assert_type(overridden(1), list[str])
assert_type(from_variable(1), bytes)
assert_type(no_arguments(), int)

retried: brace.Retried[[int], str] = bare
retried_from_variable: brace.Retried[[int], bytes] = from_variable

# The statistics tenacity keeps, on every form of the decorator.
assert_type(bare.statistics, dict[str, Any])
assert_type(called.statistics, dict[str, Any])
assert_type(overridden.statistics, dict[str, Any])
assert_type(from_variable.statistics, dict[str, Any])
assert_type(load.statistics, dict[str, Any])

# The decorated function still fits where its plain signature is expected.
as_callable: Callable[[int], str] = bare
as_keyword_callable: Callable[..., str] = called
wrapped: Callable[[int], str] = bare.__wrapped__

# An async function stays a coroutine function: calling it gives a coroutine of its result.
pending: Coroutine[Any, Any, dict[str, int]] = load(1)
awaitable: Awaitable[dict[str, int]] = load(1)
async_callable: Callable[[int], Awaitable[dict[str, int]]] = load


async def awaits() -> None:
    assert_type(await load(1), dict[str, int])
    assert_type(await load(order_id=1), dict[str, int])
    assert_type(await ping(), None)


# A policy used as a plain function call, not as a decorator syntax.
def plain(key: int) -> float:
    return float(key)


assert_type(brace.http(plain)(1), float)
assert_type(policy(plain)(1), float)
assert_type(brace.http(deadline=5)(plain)(1), float)
