"""The package's shape: layers that import downwards only, and other libraries' insides
touched in one documented function each (each pinned here, so an upstream change fails
loudly instead of silently changing behaviour)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
import pybreaker
import pytest

import brace
from brace import _breakers, _transport

SRC = Path(brace.__file__).parent


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type checkers)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                todo.extend(child.orelse)
            else:
                todo.append(child)
    return nodes


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("brace"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("brace"))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {("brace." + p.stem if p.stem != "__init__" else "brace"): p
               for p in SRC.glob("*.py")}
    return {name: {dep for dep in _imports(path) if dep in modules and dep not in (name, "brace")}
            for name, path in modules.items()}


def test_no_import_cycles() -> None:
    graph = _graph()
    done: set[str] = set()

    def visit(module: str, stack: list[str]) -> None:
        for dep in sorted(graph[module]):
            assert dep not in stack, " -> ".join([*stack[stack.index(dep):], dep])
            if dep not in done:
                visit(dep, [*stack, dep])
        done.add(module)

    for module in sorted(graph):
        visit(module, [module])


def test_nothing_imports_the_cli() -> None:
    importers = [name for name, deps in _graph().items() if "brace.__main__" in deps]
    assert importers == []


# Reaches into tenacity, pybreaker or httpx internals, and the one function allowed each.
_PRIVATE = re.compile(r"tenacity\._utils|\._local\b|tenacity\.time\b|\._state_storage|"
                      r"\._state\b|\._listeners|_initialize_redis_state|\._mounts\b|"
                      r"probe\._transport|client\._transport")
_ALLOWED = {"_breakers.py": "_storage_of",
            "_transport.py": "_built_transports"}


def test_other_libraries_insides_are_touched_in_one_function_each() -> None:
    for path in SRC.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = ast.get_source_segment(path.read_text(encoding="utf-8"), node) or ""
            code = "\n".join(line for line in body.splitlines()
                             if not line.lstrip().startswith("#"))
            if node.name == _ALLOWED.get(path.name):
                continue
            inner = [n for n in ast.walk(node)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n is not node]
            if any(n.name == _ALLOWED.get(path.name) for n in inner):
                continue
            assert not _PRIVATE.search(code), f"{path.name}:{node.name} reaches into internals"


def test_pybreaker_storage_of_a_breaker_built_elsewhere() -> None:
    # brace reads the storage of a breaker it did not build (breaker=cb): pybreaker has no
    # public accessor. If pybreaker moves it, this fails here first.
    cb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30)
    storage = _breakers._storage_of(cb)
    assert isinstance(storage, pybreaker.CircuitBreakerStorage)
    assert storage.state == cb.current_state == "closed"
    guarded = brace.network(attempts=1, breaker=cb)(_fail)
    with pytest.raises(ConnectionError):
        guarded()
    assert storage.opened_at is not None
    with pytest.raises(brace.CircuitOpenError) as info:
        guarded()
    assert 29 < info.value.remaining_s <= 30  # read from the storage's opened_at


def _fail() -> None:
    raise ConnectionError("down")


def test_httpx_client_transports_are_found_and_wrapped() -> None:
    # brace.http.client() lets httpx build its transports (proxies, mounts), reads them
    # back through the one function that knows where httpx keeps them, and hands them,
    # wrapped, to the real client through transport= and mounts=.
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text="ok")

    inner = httpx.MockTransport(handler)
    mounted = httpx.MockTransport(handler)
    probe = httpx.Client(transport=inner, mounts={"http://mounted.test": mounted})
    base, mounts = _transport._built_transports(probe)
    assert base is inner
    assert mounts == {"http://mounted.test": mounted}
    with brace.http.client(transport=inner,
                           mounts={"http://mounted.test": mounted}) as client:
        assert client.get("http://base.test/x").text == "ok"
        assert client.get("http://mounted.test/y").text == "ok"
    assert seen == ["http://base.test/x", "http://mounted.test/y"]
