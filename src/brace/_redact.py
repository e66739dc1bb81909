"""What may leave the process: every text brace logs or reports passes through ``redact``.

Removed: URL userinfo (whatever characters the password holds), the value of every query
parameter, keyword, header, JSON or dict entry whose name contains token, secret, password,
passwd, pwd, key, auth, signature, sig, credential, session or cookie (``client_secret``,
``X-Amz-Credential``, ``api%5Fkey``...), ``Authorization`` values of any scheme, bearer
tokens, SQL parameters and PostgreSQL DETAIL lines. Call arguments, headers and results are
never logged at all.
"""

from __future__ import annotations

import re

__all__ = ["redact"]

# A name that says its value is secret: any name containing one of these (case-insensitive).
_SENSITIVE = (r"(?:token|secret|password|passwd|pwd|key|auth|signature|sig|credential"
              r"|session|cookie)")
# Userinfo runs to the last @ before whitespace or a quote: a password may hold @ and /.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s'\"<>]*@")
# Query parameters: the value ends at the next & (or #, whitespace, a quote).
_QUERY = re.compile(rf"(?P<key>[?&;][\w%.-]*{_SENSITIVE}[\w%.-]*=)[^&#\s'\"]*",
                    re.IGNORECASE)
# name=value elsewhere (DSN keywords, environment, keyword arguments): the value is quoted,
# or runs to whitespace (a libpq password may hold & and ,). The name may be percent-encoded.
_ASSIGNED = re.compile(
    rf"(?P<key>(?<![\w%.?&;-])[\w%.-]*{_SENSITIVE}[\w%.-]*\s*=\s*)"
    r"(?:\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE)
# "name": value and 'name': value (JSON, a Python dict's repr).
_QUOTED = re.compile(
    rf"(?P<key>[\"'][^\"'\n]*{_SENSITIVE}[^\"'\n]*[\"']\s*:\s*)"
    r"(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^,}\]\s]+)", re.IGNORECASE)
# Name: value (headers, YAML, log lines): the value runs to the end of the line, or to the
# next "Name:" on the same line.
_HEADER = re.compile(
    rf"(?P<key>(?<![\w-])[\w-]*{_SENSITIVE}[\w-]*\s*:[ \t]*)"
    r"(?!//)[^\r\n]*?(?=\s*(?:$|[\r\n}]|,\s*[\w\"'-]+\s*:))", re.IGNORECASE | re.MULTILINE)
_BEARER = re.compile(r"(?P<key>\bBearer\s+)[^\s,;\"']+", re.IGNORECASE)
# SQLAlchemy appends a statement's bound parameters to its errors' text, and PostgreSQL's
# DETAIL (which psycopg puts in the message) quotes row values: "Key (email)=(...) already
# exists", "Failing row contains (...)". Both are data, so neither is logged.
_SQL_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\n\(Background on this error|\Z)",
                             re.DOTALL)
_PG_DETAIL = re.compile(r"^DETAIL:[^\n]*(?:\n(?!HINT:|CONTEXT:|LINE \d+:|\[SQL|\(Background)"
                        r"[^\n]*)*", re.MULTILINE)


# Most texts (an error type and a short message) hold nothing to redact: one scan says so.
_MAYBE_SECRET = re.compile(r"token|secret|passw|pwd|key|auth|sig|credential|session|cookie"
                           r"|://|bearer|DETAIL|\[parameters", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` without secrets: see the module's docstring for what is removed."""
    if _MAYBE_SECRET.search(text) is None:
        return text
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _QUOTED.sub(r"\g<key>'***'", text)
    text = _HEADER.sub(r"\g<key>***", text)
    text = _QUERY.sub(r"\g<key>***", text)
    text = _ASSIGNED.sub(r"\g<key>***", text)
    text = _SQL_PARAMETERS.sub("[parameters: ***]", text)
    text = _PG_DETAIL.sub("DETAIL:  ***", text)
    return _BEARER.sub(r"\g<key>***", text)
