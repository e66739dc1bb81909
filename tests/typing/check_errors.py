"""Calls both type checkers must reject: each line names the error mypy and pyright report.

Lint fails if an error disappears (the ignore becomes unused) or appears elsewhere.
"""

from __future__ import annotations

import brace

policy = brace.http(deadline=5)


@brace.network
def bare(key: int) -> str:
    return str(key)


@brace.http(attempts=3)
def overridden(key: int) -> str:
    return str(key)


@policy
async def load(key: int) -> str:
    return str(key)


class Repo:
    @brace.http()
    def load(self, key: int) -> str:
        return str(key)

    @brace.http
    def bare(self, key: int) -> str:
        return str(key)

    @policy
    async def fetch(self, key: int) -> str:
        return str(key)

    @staticmethod
    @brace.http()
    def static(key: int) -> str:
        return str(key)

    @classmethod
    @brace.http()
    def build(cls, key: int) -> Repo:
        return cls()


repo = Repo()

# Functions: argument types, arity and the result type are checked.
bare("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
overridden("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
pending = load("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
bare()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
wrong_result: int = bare(1)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

# Methods through an instance: `self` is bound, the rest is checked.
repo.load("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
repo.bare("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
repo.load(key="x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
repo.load(1, 2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
pending_method = repo.fetch("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
wrong_method_result: int = repo.load(1)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

# Methods through the class: `self` must be passed.
Repo.load(1)  # type: ignore[call-arg,arg-type]  # pyright: ignore[reportCallIssue]
Repo.load("x", 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

# Static and class methods.
Repo.static("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
repo.static("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Repo.build("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
repo.build("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

# statistics is a dict of str keys.
repo.load.statistics[1]  # type: ignore[index]  # pyright: ignore[reportArgumentType]
