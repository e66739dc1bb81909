"""``python -m brace``: see what a policy does before you adopt it.

::

    python -m brace explain http --chart           # a preset, as a schedule table and chart
    python -m brace explain http --attempts 6 --deadline 10 --format json
    python -m brace explain mypkg.resilience:payments   # a team's own Policy, by import path
    python -m brace presets                         # every preset, one line each
    python -m brace breakers --redis-url URL        # every breaker the fleet shares
    python -m brace breakers open NAME --redis-url URL   # isolate a dependency (or close)

The ``brace`` console script is the same program. It parses arguments, calls the library
(``brace._explain``, which ``Policy.explain()`` uses too) and prints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import NoReturn

import brace
from brace import _redis, presets
from brace._explain import explain, preset_lines, render_chart, render_text
from brace._policy import Policy
from brace._redact import redact, redact_url_error

__all__ = ["cli", "explain", "main"]


# -- command line -------------------------------------------------------------------------


class _Error(Exception):
    """A usage problem: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Error(message)


def _load(target: str) -> Policy:
    if ":" not in target:
        return presets.get(target)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise _Error(f"{target!r}: write an import path as module:attribute")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's module may raise anything while importing
        raise _Error(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    value: object = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise _Error(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, Policy):
        raise _Error(f"{target} is {type(value).__name__} {value!r}, not a Policy")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="brace", description="See what brace's policies do.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    ex = commands.add_parser("explain", help="explain a preset or a Policy (module:attr)")
    ex.add_argument("target", metavar="PRESET",
                    help=f"a preset ({', '.join(presets.names())}) or module:attr of a Policy")
    ex.add_argument("--attempts", type=int, help="override attempts")
    ex.add_argument("--deadline", type=float, help="override deadline (seconds)")
    ex.add_argument("--initial", type=float, help="override initial wait (seconds)")
    ex.add_argument("--max-wait", type=float, help="override max wait (seconds)")
    ex.add_argument("--chart", action="store_true", help="add a chart of the waits")
    ex.add_argument("--format", choices=("text", "json"), default="text")
    commands.add_parser("presets", help="list every preset with a one-line summary")
    br = commands.add_parser("breakers", help="list breakers (every one shared in Redis with "
                             "--redis-url), or force one open or closed")
    br.add_argument("action", nargs="?", choices=("list", "open", "close"), default="list")
    br.add_argument("name", nargs="?", help="the breaker to force open or closed")
    br.add_argument("--redis-url", help="the Redis the fleet shares its breakers through "
                    "(redis+cluster://HOST:PORT for a Redis Cluster)")
    br.add_argument("--cluster", action="store_true",
                    help="--redis-url names a node of a Redis Cluster: list every node's")
    br.add_argument("--create", action="store_true",
                    help="force a breaker no process has created yet")
    br.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _breakers(args: argparse.Namespace) -> list[str]:
    if args.action != "list" and (not args.name or not args.redis_url):
        raise _Error(f"breakers {args.action} needs a breaker NAME and --redis-url URL")
    if args.redis_url is None:
        rows = [info._asdict() for info in brace.breakers().values()]
    else:
        try:
            client = _redis.client_from_url(_redis.cluster_url(args.redis_url, args.cluster))
            if args.action != "list":
                _redis.force(client, args.name, "open" if args.action == "open" else "closed",
                             create=args.create)
                return [f"breaker {args.name!r} forced {args.action}: every process sharing "
                        "it obeys within its sync_interval"]
            rows = _redis.shared_breakers(client)
        except LookupError as exc:  # a name nobody created: one line naming it, exit 2
            raise _Error(str(exc)) from None
        except Exception as exc:  # redis's errors, a malformed URL: one line, exit 2
            message = f"Redis at {args.redis_url}: {type(exc).__name__}: {exc}"
            raise _Error(redact_url_error(message, args.redis_url)) from None
    if args.format == "json":
        return [json.dumps(rows, indent=2)]
    columns = ("name", "state", "failures", "fail_max", "ratio", "reset_timeout", "forced",
               "opened_at", "next_trial_s")
    table = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns]
             for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
    return [" ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in [list(columns), *table]]


def _run(argv: list[str] | None) -> list[str]:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        return preset_lines(presets.get(name) for name in presets.names())
    if args.command == "breakers":
        return _breakers(args)
    try:
        policy = _load(args.target)
        overrides = {key: value for key, value in (
            ("attempts", args.attempts), ("deadline", args.deadline),
            ("initial", args.initial), ("max_wait", args.max_wait)) if value is not None}
        if overrides:
            policy = policy.replace(**overrides)
    except (ValueError, TypeError) as exc:
        raise _Error(str(exc)) from None
    data = explain(policy)
    if args.format == "json":
        return [json.dumps(data, indent=2)]
    lines = render_text(data)
    if args.chart:
        lines += ["", *render_chart(data)]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Errors (an unknown preset, a bad override, an unimportable path) print one line,
    ``brace: error: ...``, on stderr and return 2.
    """
    try:
        lines = _run(argv)
    except _Error as exc:
        # Redacted: an import error of a team's module may quote a DSN or a token.
        print(f"brace: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 2
    try:
        print("\n".join(lines))
        sys.stdout.flush()
    except BrokenPipeError:  # `brace presets | head -1`: the reader left, no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cli() -> None:
    """Entry point of the ``brace`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
