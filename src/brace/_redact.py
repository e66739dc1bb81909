"""What may leave the process: every text brace logs or reports passes through ``redact``.

URL userinfo, query and keyword secrets, DSN passwords, bearer tokens and SQL data are
replaced by ``***``; call arguments, headers and results are never logged at all.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

_SENSITIVE = r"(?:token|access_token|api_key|apikey|key|password|passwd|pwd|secret|signature|sig)"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")
_QUERY_SECRET = re.compile(rf"(?P<key>[?&;]{_SENSITIVE}=)[^&#\s]*", re.IGNORECASE)
# DSN-style "password=... " (libpq keyword strings) and "Bearer <token>".
# Not after ?, & or ; : query parameters are _QUERY_SECRET's, and must keep their neighbours.
_KEYWORD_SECRET = re.compile(rf"(?<![?&;])(?P<key>\b{_SENSITIVE}\s*=\s*)(?:'[^']*'|\S+)",
                             re.IGNORECASE)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)\S+", re.IGNORECASE)
# SQLAlchemy appends a statement's bound parameters to its errors' text, and PostgreSQL's
# DETAIL (which psycopg puts in the message) quotes row values: "Key (email)=(...) already
# exists", "Failing row contains (...)". Both are data, so neither is logged.
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n\(Background on this error|\Z)",
                             re.DOTALL)
_PG_DETAIL = re.compile(r"^DETAIL:[^\n]*(?:\n(?!HINT:|CONTEXT:|LINE \d+:|\[SQL|\(Background)"
                        r"[^\n]*)*", re.MULTILINE)


def redact(text: str) -> str:
    """Remove URL userinfo, query secrets, DSN passwords, bearer tokens and SQL data.

    SQL data: SQLAlchemy's ``[parameters: ...]`` and PostgreSQL's DETAIL lines.
    """
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUERY_SECRET.sub(r"\g<key>***", text)
    text = _KEYWORD_SECRET.sub(r"\g<key>***", text)
    text = _SQL_PARAMETERS.sub("[parameters: ***]", text)
    text = _PG_DETAIL.sub("DETAIL:  ***", text)
    return _BEARER.sub(r"\g<key>***", text)
