"""Decorated methods, static methods and class methods keep their types."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from typing_extensions import assert_type

import brace

T = TypeVar("T")
policy = brace.http(deadline=5)


class Repo:
    @brace.http()
    def load(self, key: int) -> str:
        return str(key)

    @brace.http
    def bare(self, key: int, *, fresh: bool = False) -> str:
        return str(key)

    @brace.http(attempts=3)
    def overridden(self) -> int:
        return 1

    @policy
    def from_variable(self, key: int) -> bytes:
        return b""

    @brace.network
    async def fetch(self, key: int) -> str:
        return str(key)

    @staticmethod
    @brace.http()
    def static(key: int) -> str:
        return str(key)

    @staticmethod
    @brace.network
    def static_no_arguments() -> int:
        return 1

    @classmethod
    @brace.http()
    def build(cls, key: int) -> Repo:
        return cls()

    @classmethod
    @policy
    async def abuild(cls, key: int) -> Repo:
        return cls()


repo = Repo()

# Through an instance: `self` is bound, the remaining parameters and the result stay.
assert_type(repo.load(1), str)
assert_type(repo.load(key=1), str)
assert_type(repo.bare(1, fresh=True), str)
assert_type(repo.overridden(), int)
assert_type(repo.from_variable(1), bytes)
bound_retried: brace.Retried[[int], str] = repo.load
bound: Callable[[int], str] = repo.load
bound_keyword: Callable[..., str] = repo.bare

# Through the class: unbound, `self` is the first parameter (as with a plain method).
assert_type(Repo.load(repo, 1), str)
unbound_retried: brace.Retried[[Repo, int], str] = Repo.load
unbound: Callable[[Repo, int], str] = Repo.load

# Async methods: a coroutine of the result.
pending: Coroutine[Any, Any, str] = repo.fetch(1)
unbound_pending: Coroutine[Any, Any, str] = Repo.fetch(repo, 1)

# Static methods, through the class or an instance: nothing is bound.
assert_type(Repo.static(1), str)
assert_type(repo.static(1), str)
assert_type(Repo.static_no_arguments(), int)
assert_type(repo.static_no_arguments(), int)

# Class methods, through the class or an instance: `cls` is bound.
assert_type(Repo.build(1), Repo)
assert_type(repo.build(1), Repo)
built: Coroutine[Any, Any, Repo] = Repo.abuild(1)

# statistics, on bound and unbound methods alike.
assert_type(repo.load.statistics, dict[str, Any])
assert_type(Repo.load.statistics, dict[str, Any])
assert_type(Repo.static.statistics, dict[str, Any])
assert_type(Repo.build.statistics, dict[str, Any])


async def awaits() -> None:
    assert_type(await repo.fetch(1), str)
    assert_type(await Repo.fetch(repo, key=1), str)
    assert_type(await Repo.abuild(1), Repo)
    assert_type(await repo.abuild(1), Repo)


class Box(Generic[T]):
    """A generic class: the method's types follow the instance's type argument."""

    def __init__(self, item: T) -> None:
        self.item = item

    @brace.network
    def get(self, default: T) -> T:
        return self.item


assert_type(Box(1).get(2), int)
assert_type(Box("a").get("b"), str)


class Child(Repo):
    """Inherited decorated methods bind to the subclass."""


assert_type(Child().load(1), str)
assert_type(Child.build(1), Repo)
