"""What may leave the process: every text brace logs or reports passes through ``redact``.

``redact`` reads a text by its structure, once, left to right, and removes:

- URL userinfo, whatever characters the password holds (``@ / ' " <``, a space):
  ``redis://***@cache:6379``; and long random-looking segments of a URL's path (webhook
  secrets, tokens in paths: 24 characters or more with digits and letters of both cases,
  or 32 hex digits and more; UUIDs stay);
- the value of every entry whose name is sensitive, at any depth and in every notation:
  query strings (``?token=***``, and URL-encoded ones nested in other values:
  ``access_token%3D***``), ``name=value`` keywords (libpq DSNs, environment, a call's
  repr), ``Name: value`` header lines, JSON and Python-literal mappings (``{"password":
  "***"}``; a mapping or a list under a sensitive name goes whole: ``{"credentials": ***}``,
  ``{"tokens": ***}``), header and keyword pairs (``("Authorization", "***")``), HAR-style
  entries (``{"name": "X-Api-Key", "value": "***"}``), command-line flags (``--password
  ***``, ``--token=***``, ``['--password', '***']``), XML elements
  (``<password>***</password>``) and SQL (``PASSWORD '***'``, ``IDENTIFIED BY '***'``).
  A name is sensitive when it contains token, secret, password, passwd, passphrase,
  passcode, pwd, key, auth, signature, sig, credential, session or cookie
  (``client_secret``, ``X-Amz-Credential``, ``CB-ACCESS-PASSPHRASE``, ``api%5Fkey``,
  ``PGPASSWORD``, ``private_key``), or is ``pw`` or ``pass`` as a whole word (``pw=``,
  ``db_pass:``). An exception's class name (``KeyError: ...``) names no value;
- ``Authorization``-like schemes: the credential after ``Bearer``; after ``Basic``,
  ``Token``, ``ApiKey`` or ``Negotiate`` when it is not a plain word;
- JWTs anywhere (``eyJ...`` with two or more dot-separated parts) and well-known token
  formats (``ghp_``, ``github_pat_``, ``xoxb-``, ``sk_live_``, ``sk-``, ``glpat-``,
  ``AKIA``, ``AIza``...);
- the body of PEM blocks whose label says PRIVATE, SECRET or ENCRYPTED;
- SQL data: SQLAlchemy's ``[parameters: ...]``, PostgreSQL's ``DETAIL:`` (with its
  continuation lines), which quotes row values, and its ``LINE n:`` when it quotes a string
  literal (the statement around a syntax error, cut anywhere); also in a message whose
  lines were joined into one.

Call arguments, headers and results are never logged at all. ``redact_url_error`` is for an
error about a URL the caller knows (the CLI's ``--redis-url``): any piece of its password
goes too, wherever the error quotes it.

What cannot be told apart stays: a secret with no name, no structure and no known format
(a bare password in prose), and the part of a value glued to the next name without any
separator (``token=abcX-Api-Key: k`` masks ``abcX-Api-Key:``, not ``k``).

Cost: one pass over the text. A scan for literal words finds the places that may need
redacting, at C speed; each is judged by its context with simple patterns (no nested
quantifiers, no lazy match followed by a look-ahead) over a bounded or consumed stretch, so
every character is examined a bounded number of times: time is linear in the length. A text
longer than ``MAX_CHARS`` is cut to that length first and ends with a marker saying how much
was cut. Most texts (an error type and a short message) hold nothing to redact: the scan
says so and ``redact`` returns the text itself. Such a text, when short, is remembered (a
bounded set): the same error described again on the next retry is a set look-up, not a
scan. Only texts that redaction leaves unchanged are remembered, so the set holds nothing
that brace would not log as it is.
"""

from __future__ import annotations

import bisect
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

__all__ = ["MAX_CHARS", "redact", "redact_url_error"]

#: The longest text ``redact`` reads (characters): the rest is cut, with a marker, first.
MAX_CHARS = 64 * 1024
_CUT = " [... {} more characters cut by brace]"
_MASK = "***"

# Patterns run over an ASCII-lowercased copy of the text (same length, same positions): no
# IGNORECASE, which makes Python's re several times slower.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Every place that may need redacting starts with one of these words. A flat alternation of
# literals (no groups, no classes) lets re skip everything else at C speed.
_NAME, _PW, _URL, _SCHEME, _JWT, _PEM, _PARAMS, _DETAIL, _LINE, _IDENTIFIED, _KNOWN = range(11)
_KINDS = {
    **dict.fromkeys(("token", "secret", "passw", "passphrase", "passcode", "pwd", "key",
                     "auth", "sig", "credential", "session", "cookie"), _NAME),
    **dict.fromkeys(("pass", "pw"), _PW),
    "://": _URL,
    **dict.fromkeys(("bearer", "basic", "negotiate"), _SCHEME),
    "eyj": _JWT,
    "-----begin ": _PEM,
    "[parameters: ": _PARAMS,
    "detail:": _DETAIL,
    "line ": _LINE,
    "identified": _IDENTIFIED,
    **dict.fromkeys(("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xoxa-", "xoxb-",
                     "xoxp-", "xoxo-", "xoxr-", "xoxs-", "sk_live_", "rk_live_", "sk_test_",
                     "rk_test_", "sk-",
                     "glpat-", "akia", "asia", "aiza"), _KNOWN),
}
# Hits of these kinds inside a word (after one of these characters) are nothing.
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_INSIDE_WORD = {kind: _WORD_CHARS for kind in (_SCHEME, _JWT, _KNOWN, _IDENTIFIED)}
_INSIDE_WORD.update({_URL: frozenset(" \t\r\n:/\"'<>()[]{},;=&?#"), _PEM: frozenset(),
                     _PARAMS: frozenset(), _DETAIL: _WORD_CHARS, _LINE: _WORD_CHARS})
_RESCAN = 256  # after a value longer than this, scanning restarts past it


def _trie(words: Iterable[str]) -> str:
    """A pattern matching the longest of ``words`` at a place, as a trie of literals.

    ``token|secret|...`` makes re try every word at every character; grouped by their
    first characters (``s(?:e(?:cret|ssion)|ig|...)``) it tries a few: 2 to 3 times faster.
    """
    tree: dict[str, Any] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def pattern(node: dict[str, Any]) -> str:
        branches = [re.escape(char) + pattern(node[char]) for char in sorted(node) if char]
        if not branches:
            return ""
        if len(branches) == 1 and "" not in node:
            return branches[0]
        return f"(?:{'|'.join(branches)})" + ("?" if "" in node else "")

    return pattern(tree)


_ANCHOR = re.compile(_trie(_KINDS))

# -- names ---------------------------------------------------------------------------------
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-%")
_PLAIN_NAME_CHARS = _NAME_CHARS - {"%"}
_SHORT_NAME = 24  # a name=value read at once has at most this many characters before the hit
# A name runs over word characters, dots and dashes, and percent-encoded _ - . (api%5Fkey).
# (Written as runs, never as a repeated alternation: re is slow at those on long runs.)
_NAME_FORWARD = re.compile(r"[\w.-]*(?:%(?:25)*(?:5f|2d|2e)[\w.-]*)*")
# The same, read backwards (over the reversed text).
_NAME_BACKWARD = re.compile(r"(?:[\w.-]*(?:f5|d2|e2)(?:52)*%)*[\w.-]*")
# A percent-encoded delimiter right before a name: the name sits in encoded text (a query
# string or JSON inside another value).
_ENCODED_BEFORE = re.compile(r"(?:25)*(?:3f|26|23|3b|22|27|2c|7b|20|3d)")
# After a name in encoded text: a quote (%22), = : %3D %3A (spaces around), a quote.
_ENCODED_SEPARATOR = re.compile(
    r"(?:%(?:25)*2[27])?(?:%(?:25)*20|[ \t+])*(?:=|:|%(?:25)*3[ad])(?:%(?:25)*20|[ \t+])*"
    r"(?:%(?:25)*2[27])?")
_ENCODED_EQUALS = re.compile(r"%(?:25)*3d")
_BLANKS = re.compile(r"[ \t]*")
_SPACES = re.compile(r"\s*")
_EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning")
# Words that contain a sensitive name but name no value (status lines).
_NOT_NAMES = frozenset({"unauthorized", "unauthorised", "unauthenticated", "authenticated",
                        "authorized", "authorised"})
# Names whose value is secret even after a space when it is quoted: SQL's PASSWORD '...',
# token "..." (but not "key 'x' not found").
_QUOTED_AFTER_SPACE = re.compile(r"passw|passphrase|passcode|secret|token|pwd|credential")
_SCHEME_NAMES = frozenset({"token", "apikey", "api-key", "api_key"})
# {"name": "X-Api-Key", "value": ...}: the keys that name an entry, and the one holding it.
_HAR_NAME_KEY = re.compile(r"[\"']?(?:name|key|header|field|param|parameter)[\"']?[ \t]*[:=]"
                           r"[ \t]*b?\Z")
_HAR_VALUE_KEY = re.compile(r"[\"']?(?:value|val|content)[\"']?[ \t]*[:=][ \t]*")
_HAR_WINDOW = 256
_ENTRY_END = re.compile(r"[}\])]")
_SENSITIVE = re.compile(r"token|secret|passw|passphrase|passcode|pwd|key|auth|sig|credential"
                        r"|session|cookie")
_XML_TAG_REST = re.compile(r"[^<>]*>")
_XML_CLOSE = re.compile(r"</([\w:.-]+)")
_XML_TEXT_END = re.compile(r"[<\n]")

# -- values --------------------------------------------------------------------------------
_FREE, _QUERY, _ENCODED, _JSON, _HEADER, _SQL = range(6)
_STRING = {q: re.compile(rf"{q}[^{q}\\\n]*(?:\\.[^{q}\\\n]*)*{q}") for q in "\"'"}
_SQL_STRING = re.compile(r"'[^']*(?:''[^']*)*'")
_BRACKET_TOKEN = re.compile(r"[\[\](){}]|\"[^\"\\\n]*(?:\\.[^\"\\\n]*)*\""
                            r"|'[^'\\\n]*(?:\\.[^'\\\n]*)*'")
_UNTIL_SPACE = re.compile(r"\S*")
# A bare value right after name= (not quoted, not bracketed): free text, a query string.
_FREE_VALUE = re.compile(r"[^\s\"'\\{\[(=~>]\S*")
_QUERY_VALUE = re.compile(r"[^&#\s\"'<>]+")
_QUERY_END = re.compile(r"[&#\s\"'<>]")
_ENCODED_END = re.compile(r"[&#\s\"'<>]|%(?:25)*(?:26|23|22|27|7d|5d)")
_JSON_END = re.compile(r"[,}\])\s]")
# A header's value runs to the end of the line, a closing brace, the next ", Name:", or a
# mapping or list that starts after a blank (no credential holds " {" or " [").
_HEADER_END = re.compile(r"[\r\n}]|,[ \t]*[\w\"'-]+[ \t]*:(?![/:])|[ \t][{\[]")
_SCHEME_WORDS = frozenset({"bearer", "basic", "token", "negotiate", "digest", "apikey",
                           "api-key"})
_TOKEN = re.compile(r"[^\s,;\"'<>]+")

# -- URLs ----------------------------------------------------------------------------------
_URL_WINDOW = 512  # userinfo ends within this many characters after ://, on the same line
_URL_AT_TRIES = 8  # and at one of the last 8 @ there
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+.-")
_USER = re.compile(r"[^/?#@:\s'\"<>\[\]]*")
_PORT = re.compile(r"\d{1,5}(?![^/?#\s'\"<>)\],;}])")
_HOST_AFTER_AT = re.compile(r"(?:\[[0-9a-f:.]+\]|[\w.~%-]+)(?![^:/?#\s'\"<>)\],;}])")
_HOST_PORT = re.compile(r"(?:\[[0-9a-f:.]*\]|[\w.~%-]*)(?::\d*)?")
# A path ends at ? # a blank, a quote, or where another URL starts (://).
_PATH = re.compile(r"[^?#\s'\"<>:]*(?::(?!//)[^?#\s'\"<>:]*)*")
_EXTENDING = re.compile(r"://|-----begin ")
_BLANK_OR_QUOTE = re.compile(r"[\s'\"<>]")
_SEGMENT = re.compile(r"[A-Za-z0-9_.:~+=-]{24,}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}\Z")
_HEX = re.compile(r"[0-9a-fA-F]{32,}\Z")
_DIGIT = re.compile(r"\d")

# -- the rest ------------------------------------------------------------------------------
_JWT_TOKEN = re.compile(r"eyj[a-z0-9_-]{5,}\.[a-z0-9_-]{2,}(?:\.[a-z0-9_.-]*)?")
_KNOWN_REST = re.compile(r"[a-z0-9_-]{16,}")
_KNOWN_CASED = {"akia": re.compile(r"AKIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
                "asia": re.compile(r"ASIA[0-9A-Z]{16}(?![0-9A-Za-z])"),
                "aiza": re.compile(r"AIza[0-9A-Za-z_-]{35}")}
_PEM_LABEL = re.compile(r"-----begin ([a-z0-9 ]{0,40})-----")
_SQL_BY = re.compile(r"identified[ \t]+(?:with[ \t]+[\w'\"`-]{1,64}[ \t]+)?by[ \t]+")
# What ends PostgreSQL's DETAIL, on its own line or in a message joined into one line.
_DETAIL_END = re.compile(r"\s(?:hint|context|detail|error|statement|where|query):"
                         r"|\sline \d+:|\[sql|\(background")
_BACKGROUND = "(background on this error"
_LINE_NUMBER = re.compile(r"\d+: ")
_LINE_END = re.compile(r"[\r\n^]")


#: Short texts that redaction leaves unchanged (an error's type and message, a callable's
#: name): a retry loop describes the same error on every attempt. Bounded; emptied when full.
#: Exact ``str`` only (a subclass could define its own equality).
clean: set[str] = set()
_CLEAN_MAX = 1024  # texts remembered at most
_CLEAN_CHARS = 512  # longest text remembered


def redact(text: str) -> str:
    """``text`` without secrets: see the module's docstring for what is removed.

    Time is linear in ``len(text)``; a text longer than ``MAX_CHARS`` is cut first.
    """
    # An exact str only: a subclass could define its own equality.
    if type(text) is str and text in clean:
        return text
    cut = len(text) - MAX_CHARS
    if cut > 0:
        return _redact(text[:MAX_CHARS], truncated=True) + _CUT.format(cut)
    redacted = _redact(text, truncated=False)
    if redacted == text and len(text) <= _CLEAN_CHARS and type(text) is str:
        if len(clean) >= _CLEAN_MAX:
            clean.clear()
        clean.add(text)
    return redacted


def redact_url_error(text: str, url: str) -> str:
    """``text``, an error about ``url``, redacted and without any piece of ``url``'s userinfo.

    ``redact`` finds userinfo in every URL of the text; a client's error may also quote the
    password alone, percent-decoded, or a piece of it: a URL parser splits an unencoded
    password at / ? # @ : and says "Port could not be cast to integer value as 'pa'". Here
    the URL is known, so its secrets are: each goes wherever it appears.
    """
    userinfo = url.partition("://")[2].rpartition("@")[0][:MAX_CHARS]
    password = userinfo.partition(":")[2]
    if not password:
        return redact(text)  # a user alone: redact() finds it in the URL
    secrets = {userinfo, password, urllib.parse.unquote(userinfo),
               urllib.parse.unquote(password)}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    pieces = sorted({piece for piece in re.split(r"[/?#@:]", password) if len(piece) > 1},
                    key=len, reverse=True)
    if pieces:
        alternatives = "|".join(re.escape(piece) for piece in pieces)
        text = re.sub(rf"(?<!\w)(?:{alternatives})(?!\w)", _MASK, text)
    return redact(text)


def _redact(text: str, *, truncated: bool) -> str:
    low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    found = _ANCHOR.search(low)
    if found is None:
        return text
    return _Scan(text, low, truncated).run(found)


class _Scan:
    """One left-to-right reading of a text: the spans to mask, and where reading resumes."""

    __slots__ = ("closings", "floor", "low", "n", "rev", "spans", "text", "truncated",
                 "unquoted")

    def __init__(self, text: str, low: str, truncated: bool) -> None:
        self.text = text
        self.low = low
        self.n = len(text)
        self.truncated = truncated  # the text was cut: a value may run to its end
        # start, end, start, end...: flat, so masking allocates no tuple (nothing for the
        # garbage collector to chase on a text with thousands of values).
        self.spans: list[int] = []
        self.floor = 0  # names never reach back before this (the end of a masked value)
        self.rev: str | None = None  # the text reversed, to read names backwards
        self.closings: dict[str, list[int]] | None = None  # XML closing tags by name
        self.unquoted: tuple[int, int] | None = None  # a LINE n: read, holding no literal

    def run(self, found: re.Match[str]) -> str:
        low = self.low
        n = self.n
        add = self.spans.append
        kinds = _KINDS
        handlers = (self._name, self._pw, self._url, self._scheme, self._jwt, self._pem,
                    self._params, self._detail, self._line, self._identified, self._known)
        resume = found.start()
        while True:
            for hit in _ANCHOR.finditer(low, resume):
                start, end = hit.span()
                if start < resume:  # inside what a handler read already
                    if end <= resume:
                        continue
                    break  # straddles the point reached: scan again from that point
                kind = kinds[hit.group()]
                if kind == _NAME and end < n and low[end] == "=":
                    # The commonest shape, name=value, read here at once: every pair of a
                    # long "a=1 api_key=2 ..." costs one small match.
                    first = start
                    floor = self.floor
                    if floor < start - _SHORT_NAME:
                        floor = start - _SHORT_NAME
                    while first > floor and low[first - 1] in _PLAIN_NAME_CHARS:
                        first -= 1
                    before = low[first - 1] if first else " "
                    if before not in _NAME_CHARS or first <= self.floor:
                        value = (_QUERY_VALUE if before in "?&#;" else _FREE_VALUE).match(
                            low, end + 1)
                        if value is not None:
                            resume = value.end()
                            size = resume - end - 1
                            if not 5 <= size <= 9 or low[end + 1:resume] not in _SCHEME_WORDS:
                                add(end + 1)
                                add(resume)
                                self.floor = resume
                                if size > 2 and (low.find("://", end, resume) >= 0
                                                 or low.find("-----", end, resume) >= 0):
                                    resume = self._inner(end + 1, resume)
                                continue
                elif kind >= _URL and start and low[start - 1] in _INSIDE_WORD[kind]:
                    continue  # "://" after no scheme, "eyJ" or "Bearer" inside a word
                resume = handlers[kind](start, end)
                if resume > end + _RESCAN:
                    break  # a long value was read: scan on from its end
            else:
                return self._apply()

    def _apply(self) -> str:
        spans = self.spans
        if not spans:
            return self.text
        starts = spans[0::2]
        pairs: Iterable[tuple[int, int]] = zip(starts, spans[1::2], strict=True)
        if starts != sorted(starts):  # a value masked behind (HAR's "value" before "name")
            pairs = sorted(pairs)
        text = self.text
        out: list[str] = []
        at = 0
        for start, end in pairs:
            if start < at:  # overlaps the span before: that mask stands for both
                if end > at:
                    at = end
                continue
            out.append(text[at:start])
            out.append(_MASK)
            at = end
        out.append(text[at:])
        return "".join(out)

    def _mask(self, start: int, end: int) -> int:
        if end > start:
            self.spans += (start, end)
            if end > self.floor:
                self.floor = end
        return end

    # -- names and their values -------------------------------------------------------------

    def _pw(self, hit: int, hit_end: int) -> int:
        # pw and pass are names only as whole words: db_pw, pass: (not bypass, passing).
        low = self.low
        if (hit and low[hit - 1].isalnum()) or (hit_end < self.n and low[hit_end].isalnum()):
            return hit_end
        return self._name(hit, hit_end)

    def _name(self, hit: int, hit_end: int) -> int:
        low = self.low
        n = self.n
        start = hit
        if hit > self.floor and low[hit - 1] in _NAME_CHARS:
            if self.rev is None:
                self.rev = low[::-1]
            start = n - _skip(_NAME_BACKWARD, self.rev, n - hit)
            if start < self.floor:
                start = self.floor
        end = (hit_end if hit_end < n and low[hit_end] not in _NAME_CHARS
               else _skip(_NAME_FORWARD, low, hit_end))
        if end >= n:
            return end
        before = low[start - 1] if start else " "
        if before == "%":
            encoded = _ENCODED_BEFORE.match(low, start)
            if encoded is not None and encoded.end() < end:
                separator = _ENCODED_SEPARATOR.match(low, end)
                if separator is None:
                    return end
                return self._value(separator.end(), _ENCODED, end)
        # The name's closing quote, maybe escaped (\"password\": ...).
        at = end
        c = low[at]
        quoted = False  # "name" or 'name', closed too: a key (not "Authorization: x")
        if (before == '"' or before == "'") and (c == before or c == "\\"):
            while c == "\\" and at + 1 < n:
                at += 1
                c = low[at]
            if c == before:
                at += 1
                quoted = True
            else:
                at = end
        if at < n and low[at] in " \t":
            at = _skip(_BLANKS, low, at)
        if at >= n:
            return end
        c = low[at]
        if c == "=" or (c == ":" and low.startswith("=", at + 1)):  # = := =>
            at += 1 if c == "=" else 2
            if at < n and low[at] in "=~":
                return end  # == =~: a comparison
            if at < n and low[at] == ">":
                at += 1
            mode = _QUERY if before in "?&#;" else (_JSON if quoted else _FREE)
        elif c == ":":
            if low.startswith(("/", ":"), at + 1):
                return end  # a URL's scheme, C++'s ::
            at += 1
            if quoted:
                mode = _JSON
                if low[start:end] == "key":  # {"key": "X-Api-Key", "value": ...}
                    return self._har_key(start, _skip(_SPACES, low, at))
            else:
                if (low[start:end] in _NOT_NAMES
                        or self.text[start:end].endswith(_EXCEPTION_SUFFIXES)):
                    return end
                mode = _HEADER
        elif c == "%":
            equals = _ENCODED_EQUALS.match(low, at)
            if equals is None:
                return end
            at = equals.end()
            mode = _ENCODED
        elif c == "," and quoted:  # ("Authorization", "x"), ['--password', 'x'] or HAR
            at = _skip(_SPACES, low, at + 1)
            resume = self._pair(start, at)
            return resume if resume >= 0 else self._har(start, end)
        else:
            return self._no_separator(start, end, before, quoted)
        if at < n and low[at] in " \t":
            at = _skip(_BLANKS, low, at)
        return self._value(at, mode, end)

    def _no_separator(self, start: int, end: int, before: str, quoted: bool) -> int:
        low = self.low
        if quoted:  # {"name": "X-Api-Key", "value": ...}
            return self._har(start, end)
        name = low[start:end]
        at = _skip(_SPACES, low, end)
        if at >= self.n:
            return end
        c = low[at]
        if name[0] == "-" and at > end and c != "-":  # --password VALUE
            return self._value(at, _FREE, end)
        if (c == '"' or c == "'") and at > end and _QUOTED_AFTER_SPACE.search(name):
            return self._value(at, _SQL, end)  # SQL's PASSWORD '...'
        if before == "<" or before == ":":
            resume = self._xml(start, end)
            if resume > end:
                return resume
        if name in _SCHEME_NAMES:  # Token abc123, ApiKey abc123
            return self._scheme_value(end, always=False)
        return end

    def _value(self, at: int, mode: int, or_skip: int) -> int:
        """Mask the value that starts at ``at``; return where reading resumes."""
        low = self.low
        n = self.n
        if at >= n:
            return or_skip
        c = low[at]
        if mode in (_QUERY, _ENCODED):
            found = (_QUERY_END if mode == _QUERY else _ENCODED_END).search(low, at)
            stop = n if found is None else found.start()
        elif c == '"' or c == "'":
            return self._string(at, c, sql=mode == _SQL)
        elif c == "\\":
            return self._escaped_string(at, or_skip)
        elif c in "bru" and at + 1 < n and low[at + 1] in "\"'":  # b'...' r"..."
            return self._string(at + 1, low[at + 1], sql=False)
        elif c in "{[(":
            stop = self._bracket_end(at)
        elif mode == _SQL:
            return or_skip
        elif mode == _HEADER:
            found = _HEADER_END.search(low, at)
            stop = n if found is None else found.start()
        elif mode == _JSON:
            found = _JSON_END.search(low, at)
            stop = n if found is None else found.start()
        else:
            stop = _skip(_UNTIL_SPACE, low, at)
            if stop - at < 10 and low[at:stop] in _SCHEME_WORDS:  # auth=Bearer abc: and abc
                stop = _skip(_UNTIL_SPACE, low, _skip(_BLANKS, low, stop))
        if stop == at:
            return or_skip
        self.spans += (at, stop)
        if stop > self.floor:
            self.floor = stop
        return stop if c in "{[(" else self._inner(at, stop)

    def _inner(self, at: int, stop: int) -> int:
        """Where reading resumes after the value masked from ``at`` to ``stop``.

        A structure that starts inside the value may run past it (a PEM block after
        "private_key: ", a URL whose password holds a quote or a space): those are read
        too, and only those (names inside are masked already).
        """
        low = self.low
        resume = stop
        read_to = at
        for inner in _EXTENDING.finditer(low, at, stop):
            start, end = inner.span()
            if start < read_to:
                continue
            if low[start] == ":":  # ://
                if not start or low[start - 1] not in _SCHEME_CHARS:
                    continue
                read_to = self._url(start, end)
            else:
                read_to = self._pem(start, end)
            resume = max(resume, read_to)
        return resume

    def _string(self, at: int, quote: str, *, sql: bool) -> int:
        low = self.low
        found = (_SQL_STRING if sql and quote == "'" else _STRING[quote]).match(low, at)
        if found is not None:
            self._mask(at + 1, found.end() - 1)
            return found.end()
        line_end = -1 if sql else low.find("\n", at)
        return self._inner(at, self._mask(at + 1, self.n if line_end < 0 else line_end))

    def _escaped_string(self, at: int, or_skip: int) -> int:
        # \"...\" (JSON inside a string): the value ends at the same escaped quote.
        low = self.low
        n = self.n
        quote_at = at
        while quote_at < n and low[quote_at] == "\\":
            quote_at += 1
        if quote_at >= n or low[quote_at] not in "\"'":
            stop = _skip(_UNTIL_SPACE, low, at)
            return self._mask(at, stop) if stop > at else or_skip
        closing = low[at:quote_at + 1]
        end = low.find(closing, quote_at + 1)
        line_end = low.find("\n", quote_at, n if end < 0 else end)  # (never past the end)
        if line_end >= 0:
            return self._mask(quote_at + 1, line_end)
        if end < 0:
            return self._mask(quote_at + 1, n)
        self._mask(quote_at + 1, end)
        return end + len(closing)

    def _bracket_end(self, at: int) -> int:
        # A mapping or list as a value: it ends where its bracket closes (strings skipped).
        low = self.low
        depth = 0
        for token in _BRACKET_TOKEN.finditer(low, at):
            c = low[token.start()]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
                if depth <= 0:
                    return token.end()
        return self.n

    def _pair(self, start: int, at: int) -> int:
        # ("Authorization", "x") or [b"x-api-key", b"x"]: a pair opened right before the name;
        # ['psql', '--password', 'x']: an argv list, whose next item is the flag's value.
        # Returns where reading resumes, or -1 when this is no pair.
        low = self.low
        flag = low[start] == "-"
        if not flag and not low[max(0, start - 6):start - 1].rstrip(" \tb").endswith(
                ("(", "[")):
            return -1
        # (A value read is masked even when no ")" follows: ("token", "a", "b") loses "a".)
        return self._value(at, _JSON, -1)

    def _har(self, start: int, end: int) -> int:
        """A sensitive name that is the value of a "name" key: mask its "value" sibling."""
        low = self.low
        opening = start - 1
        before = low[max(0, opening - 8):opening].rstrip(" \tb")  # cheap test first
        if not before.endswith((":", "=")) or _HAR_NAME_KEY.search(
                low, max(0, opening - 40), opening) is None:
            return end
        return self._har_sibling(opening, end + 1)

    def _har_key(self, start: int, at: int) -> int:
        # {"key": "X-Api-Key", "value": ...}: "key" is sensitive itself, and when its value
        # names a sensitive entry, the "value" sibling goes too.
        low = self.low
        resume = self._value(at, _JSON, at)
        if at < self.n and low[at] in "\"'" and _SENSITIVE.search(low, at, resume):
            return max(resume, self._har_sibling(start - 1, resume))
        return resume

    def _har_sibling(self, entry_at: int, after: int) -> int:
        low = self.low
        # The "value" after the name, within the same entry...
        limit = min(self.n, after + _HAR_WINDOW)
        close = _ENTRY_END.search(low, after, limit)
        if close is not None:
            limit = close.start()
        found = _HAR_VALUE_KEY.search(low, after, limit)
        if found is not None:
            return max(after, self._value(found.end(), _JSON, after))
        # ...or before it: {"value": "x", "name": "Authorization"}.
        begin = max(0, entry_at - _HAR_WINDOW)
        opened = max(low.rfind("{", begin, entry_at), low.rfind("(", begin, entry_at))
        if opened >= 0:
            found = _HAR_VALUE_KEY.search(low, opened, entry_at)
            if found is not None:
                floor = self.floor
                self._value(found.end(), _JSON, after)
                self.floor = max(floor, after)
        return after

    def _scheme_value(self, end: int, *, always: bool) -> int:
        low = self.low
        at = _skip(_BLANKS, low, end)
        if at == end:
            return end
        token = _TOKEN.match(self.text, at)
        if token is None:
            return end
        if always or _looks_secret(token.group()):
            return self._mask(at, token.end())
        return end

    def _xml(self, start: int, end: int) -> int:
        # <password>...</password>, <ns:Password attr="x">...</ns:Password>.
        low = self.low
        if low[start - 1] == "<":
            lt = start - 1
        else:
            lt = low.rfind("<", max(0, start - 32), start)
            if lt < 0 or _skip(_NAME_FORWARD, low, lt + 1) < start - 1:
                return end
        if low[end] == ">":
            content = end + 1
        else:
            tag = _XML_TAG_REST.match(low, end)
            if tag is None or low[tag.end() - 2] == "/":
                return end
            content = tag.end()
        if self.closings is None:  # every closing tag, once: each look-up is a bisection
            self.closings = {}
            for closing in _XML_CLOSE.finditer(low):
                self.closings.setdefault(closing[1], []).append(closing.start())
        positions = self.closings.get(low[lt + 1:end], [])
        index = bisect.bisect_left(positions, content)
        if index < len(positions):
            return max(content, self._mask(content, positions[index]))
        stop = _XML_TEXT_END.search(low, content)
        return max(content, self._mask(content, self.n if stop is None else stop.start()))

    # -- URLs -------------------------------------------------------------------------------

    def _url(self, at: int, start: int) -> int:
        low = self.low
        n = self.n
        if not at or low[at - 1] not in _SCHEME_CHARS:
            return start
        limit = min(n, start + _URL_WINDOW)
        line_end = low.find("\n", start, limit)
        if line_end >= 0:
            limit = line_end
        other = low.find("://", start, limit)
        if other >= 0:
            limit = other
        user_end = _skip(_USER, low, start, limit)
        userinfo_end = -1
        if user_end < limit and low[user_end] == "@":
            userinfo_end = user_end
        elif user_end < limit and low[user_end] == ":" and _PORT.match(low, user_end + 1) is None:
            # user:password@host, and the password may hold anything (@ / ' " < a space):
            # the userinfo ends at the last @ that a host follows.
            right = limit
            for _ in range(_URL_AT_TRIES):
                right = low.rfind("@", user_end + 1, right)
                if right < 0:
                    break
                if _HOST_AFTER_AT.match(low, right + 1) is not None:
                    userinfo_end = right
                    break
            if userinfo_end < 0:
                if self.truncated and limit == n:
                    return self._mask(start, n)  # cut inside the userinfo
                blank = _BLANK_OR_QUOTE.search(low, start, limit)
                last = low.rfind("@", user_end + 1, limit if blank is None else blank.start())
                if last > 0:
                    userinfo_end = last  # an odd host ([::1, a socket path): still userinfo
        if userinfo_end > start:
            self._mask(start, userinfo_end)
        host = _skip(_HOST_PORT, low, userinfo_end + 1 if userinfo_end >= 0 else start)
        if host >= n or low[host] != "/":
            return host
        path_end = _skip(_PATH, low, host)
        text = self.text
        for segment in _SEGMENT.finditer(text, host, path_end):
            s, e = segment.span()
            if (text[s - 1] == "/" and (e == path_end or text[e] == "/")
                    and _looks_random(segment.group())):
                self._mask(s, e)
        return host  # names in the path (/x;token=...) and the query are read next

    # -- schemes, tokens, blocks -------------------------------------------------------------

    def _scheme(self, at: int, end: int) -> int:
        if at and self.low[at - 1] in _NAME_CHARS:
            return end
        return self._scheme_value(end, always=self.text.startswith("Bearer", at))

    def _jwt(self, at: int, end: int) -> int:
        low = self.low
        if at and low[at - 1] in _NAME_CHARS:
            return end
        token = _JWT_TOKEN.match(low, at)
        return end if token is None else self._mask(at, token.end())

    def _known(self, at: int, end: int) -> int:
        low = self.low
        if at and low[at - 1] in _NAME_CHARS:
            return end
        cased = _KNOWN_CASED.get(low[at:end])
        token = _KNOWN_REST.match(low, end) if cased is None else cased.match(self.text, at)
        return end if token is None else self._mask(at, token.end())

    def _pem(self, at: int, end: int) -> int:
        low = self.low
        label = _PEM_LABEL.match(low, at)
        if label is None:
            return end
        if not any(word in label[1] for word in ("private", "secret", "encrypted")):
            return label.end()
        body = label.end()
        closing = low.find("-----end", body)
        return max(body, self._mask(body, self.n if closing < 0 else closing))

    def _params(self, at: int, end: int) -> int:
        # SQLAlchemy: "[parameters: {...}]\n(Background on this error at: ...)": parameters
        # may span lines and hold "]", so they run to the last "]" before that.
        low = self.low
        background = low.find(_BACKGROUND, end)
        if background < 0:
            background = self.n
        close = low.rfind("]", end, background)
        self._mask(end, close if close >= 0 else background)
        return background

    def _detail(self, at: int, end: int) -> int:
        # PostgreSQL's DETAIL quotes row values; it runs on (over lines) until HINT:,
        # CONTEXT:, LINE n:, SQLAlchemy's [SQL: ...: whether the message keeps its lines or
        # was joined into one.
        if not self.text.startswith("DETAIL:", at):
            return end
        low = self.low
        found = _DETAIL_END.search(low, end)
        stop = self.n if found is None else found.start()
        self._mask(_skip(_BLANKS, low, end), stop)  # "DETAIL:  ***"
        return stop

    def _line(self, at: int, end: int) -> int:
        # PostgreSQL quotes the statement around a syntax error ("LINE 1: ...ORD 'x' VALI..."),
        # cut anywhere: a line that holds a string literal goes whole (up to the caret line
        # that follows, when the message was joined into one line).
        if not self.text.startswith("LINE ", at):
            return end
        low = self.low
        number = _LINE_NUMBER.match(low, end)
        if number is None:
            return end
        begin = number.end()
        if self.unquoted is not None and self.unquoted[0] <= begin < self.unquoted[1]:
            return begin  # a line already read, with no literal in it
        found = _LINE_END.search(low, begin)
        stop = self.n if found is None else found.start()
        if low.find("'", begin, stop) < 0:
            self.unquoted = (begin, stop)
            return begin
        return self._mask(begin, stop)

    def _identified(self, at: int, end: int) -> int:
        by = _SQL_BY.match(self.low, at)
        return end if by is None else self._value(by.end(), _FREE, by.end())


def _skip(pattern: re.Pattern[str], text: str, at: int, end: int | None = None) -> int:
    """Where the run of ``pattern`` (a pattern that may match nothing) from ``at`` ends."""
    found = pattern.match(text, at) if end is None else pattern.match(text, at, end)
    return at if found is None else found.end()


def _looks_secret(token: str) -> bool:
    """Whether the word after ``Basic``, ``Token``... is a credential rather than prose."""
    if len(token) < 6:
        return False
    if token.isalpha():
        # Prose: "expired", "Expired", "EXPIRED"; a credential mixes cases: "dXNlcjpwYXNz".
        return not (token.islower() or token.isupper() or token[1:].islower())
    return True


def _looks_random(segment: str) -> bool:
    """Whether a URL path segment (24+ characters) looks like a secret rather than a name."""
    if _DIGIT.search(segment) is None or _UUID.match(segment) is not None:
        return False
    separators = segment.count("-") + segment.count("_") + segment.count(".")
    if separators * 10 > len(segment):
        return False
    mixed = segment.lower() != segment and segment.upper() != segment
    return mixed or _HEX.match(segment) is not None
