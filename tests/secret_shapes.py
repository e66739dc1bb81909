"""Every shape of secret brace must never let out: one table, read by every channel's test.

To cover a new shape, add one ``Shape`` row: ``text`` is what an error message (or a name)
holds, ``secret`` what must never leave the process, ``keep`` some harmless context that
must survive redaction (so a row cannot pass by erasing everything). tests/test_redact.py
checks each row against ``brace._redact.redact``; tests/test_secrets.py sends each row
through every channel (structlog JSON, observers, Prometheus, OpenTelemetry, the CLI).

A secret is checked whole and piece by piece: no run of 4 or more of its characters
between spaces and quotes may survive either.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Shape(NamedTuple):
    id: str
    text: str
    secret: str
    keep: str


SHAPES: list[Shape] = [
    # -- URL userinfo: whatever the password holds ----------------------------------------
    Shape("url-userinfo", "GET https://alice:hunter2@api.example.com/v1", "hunter2",
          "api.example.com/v1"),
    Shape("url-userinfo-single-quote", "redis://:pa'ss9wd@cache:6379/0 refused", "pa'ss9wd",
          "cache:6379/0 refused"),
    Shape("url-userinfo-double-quote", 'redis://app:pa"ss8wd@cache:6379/0 refused',
          'pa"ss8wd', "cache:6379/0 refused"),
    Shape("url-userinfo-space", "redis://:open sesame77@cache:6379/0 refused",
          "open sesame77", "cache:6379/0 refused"),
    Shape("url-userinfo-angle", "amqp://guest:gu<est55@rabbit:5672/ down", "gu<est55",
          "rabbit:5672/ down"),
    Shape("url-userinfo-at-slash", "postgresql://u:pa/s@s12@db/orders refused", "pa/s@s12",
          "db/orders refused"),
    Shape("url-userinfo-at", "redis://:p@ss-word@cache:6379/0", "ss-word", "cache:6379/0"),
    Shape("url-user-only-token", "git fetch https://ghtok9x8y7z@github.com/org/repo.git",
          "ghtok9x8y7z", "github.com/org/repo.git"),
    Shape("url-dsn-in-message", "could not connect with postgresql://brace:dsnpw-41@db:5432/app",
          "dsnpw-41", "db:5432/app"),
    Shape("url-socket-path", "unix://:s0cket-pw@/tmp/redis.sock?db=0 refused", "s0cket-pw",
          "/tmp/redis.sock?db=0 refused"),
    # -- query strings -------------------------------------------------------------------
    Shape("query-token", "GET https://api.example.com/v1?user=1&token=abc123&x=2", "abc123",
          "user=1"),
    Shape("query-client-secret", "GET https://api.example.com/x?client_secret=sk-live-51Hq"
          "&page=2", "sk-live-51Hq", "page=2"),
    Shape("query-auth", "GET https://h.example/x?auth=AUTH-7f&page=2", "AUTH-7f", "page=2"),
    Shape("query-pct-name", "GET https://h.example/x?api%5Fkey=pct-key-1&page=2", "pct-key-1",
          "page=2"),
    Shape("query-aws-signature", "GET https://s3.example/o?X-Amz-Credential=AKIA-cred"
          "&X-Amz-Signature=sig-abc1&X-Amz-Date=20260101", "sig-abc1", "X-Amz-Date=20260101"),
    Shape("query-azure-sas", "GET https://acct.blob.example/c/b?sv=2022-11-02&se=2030&sig=Az"
          "uR3%2Bsig%3D&sp=r", "uR3%2Bsig", "sv=2022-11-02"),
    Shape("query-fragment", "https://app.example/cb#access_token=frag-99z&token_type=bearer",
          "frag-99z", "app.example/cb"),
    Shape("query-encoded-nested", "redirect=https%3A%2F%2Fapp.example%2Fcb%3Faccess_token%3D"
          "at-55xq%26state%3Dok", "at-55xq", "state%3Dok"),
    Shape("query-double-encoded", "next=%252Fcb%253Faccess_token%253Dat2-77q%2526x%253D1",
          "at2-77q", "x%253D1"),
    Shape("query-encoded-json", "body=%7B%22password%22%3A%22pj-61k%22%2C%22user%22%3A%22app"
          "%22%7D", "pj-61k", "user"),
    Shape("form-body", "grant_type=client_credentials&client_secret=cs-8812&scope=read",
          "cs-8812", "scope=read"),
    # -- JSON and Python literals, at any depth ------------------------------------------
    Shape("json-password", 'payload {"password": "json-pw-3", "user": "app"}', "json-pw-3",
          '"user": "app"'),
    Shape("dict-password", "settings {'password': 'py-dict-pw', 'user': 'app'}",
          "py-dict-pw", "'user': 'app'"),
    Shape("json-nested-under-sensitive", '{"credentials": {"private_key": "nested-pk-1", '
          '"user": "app"}, "region": "eu"}', "nested-pk-1", '"region": "eu"'),
    Shape("json-deep", '{"data": {"db": {"password": "deep-pw-2"}}, "id": 7}', "deep-pw-2",
          '"id": 7'),
    Shape("json-array", '{"tokens": ["tk-a1x", "tk-b2y"], "count": 2}', "tk-b2y",
          '"count": 2'),
    Shape("dict-list", "{'api_keys': ['ak-1x9', 'ak-2y8'], 'n': 2}", "ak-2y8", "'n': 2"),
    Shape("json-number", '{"pin_code": 1, "passcode": 9918273, "ok": true}', "9918273",
          '"ok": true'),
    Shape("har-entry", '[{"name": "X-Api-Key", "value": "har-k-77"}, {"name": "Accept", '
          '"value": "json"}]', "har-k-77", '"Accept"'),
    Shape("har-entry-reversed", '{"value": "har-rev-3", "name": "Authorization"}',
          "har-rev-3", "Authorization"),
    Shape("har-key-value", "{'key': 'api_token', 'value': 'har-kv-5'}", "har-kv-5", "'value'"),
    Shape("header-tuple", "headers=[('Authorization', 'Bearer tup-1x'), ('Accept', 'json')]",
          "tup-1x", "('Accept', 'json')"),
    Shape("header-bytes-tuple", "Headers([(b'x-api-key', b'btk-22x'), (b'accept', b'*/*')])",
          "btk-22x", "(b'accept', b'*/*')"),
    Shape("keyword-tuple", "kwargs (('password', 'kw-tuple-9'), ('user', 'app'))",
          "kw-tuple-9", "('user', 'app')"),
    Shape("argv-list", "Command '['psql', '--password', 'argv-pw-4', '-h', 'db']' returned "
          "non-zero exit status 2.", "argv-pw-4", "returned non-zero exit status 2"),
    Shape("kwargs-repr", "Client(api_key='kwrepr-5', timeout=3)", "kwrepr-5", "timeout=3"),
    Shape("escaped-json", '"{\\"password\\": \\"esc-pw-6\\", \\"user\\": \\"app\\"}"',
          "esc-pw-6", "user"),
    # -- header lines --------------------------------------------------------------------
    Shape("authorization-bearer", "Authorization: Bearer eyJhbGciOi.secret", "eyJhbGciOi",
          "Authorization"),
    Shape("authorization-basic", "Authorization: Basic c3ZjOmh1bnRlcjI=", "c3ZjOmh1bnRlcjI=",
          "Authorization"),
    Shape("authorization-token", "Authorization: Token tok-999", "tok-999", "Authorization"),
    Shape("proxy-authorization", "Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc=",
          "Proxy-Authorization"),
    Shape("x-api-key", "X-Api-Key: xak-0042\nAccept: */*", "xak-0042", "Accept: */*"),
    Shape("cookie", "Cookie: theme=dark; session=ck-8\nHost: h", "ck-8", "Host: h"),
    Shape("set-cookie", "Set-Cookie: sessionid=sc-1234; Path=/; HttpOnly\nVary: Accept",
          "sc-1234", "Vary: Accept"),
    Shape("passphrase-header", "CB-ACCESS-PASSPHRASE: pp-phrase-1\nCB-ACCESS-TIMESTAMP: 17",
          "pp-phrase-1", "CB-ACCESS-TIMESTAMP: 17"),
    Shape("padded-header", "X-Api-Key:        padded-k-3        \nAccept: */*", "padded-k-3",
          "Accept: */*"),
    Shape("headers-one-line", "{Authorization: Bearer ml-tok-5, Accept: json}", "ml-tok-5",
          "Accept: json"),
    Shape("yaml", "password: yaml-pw-4\nhost: db", "yaml-pw-4", "host: db"),
    # -- command-line flags --------------------------------------------------------------
    Shape("flag-space", "pg_dump --password flag-pw-1 --host db", "flag-pw-1", "--host db"),
    Shape("flag-equals", "cli --api-key=flag-k-2 --verbose", "flag-k-2", "--verbose"),
    Shape("flag-quoted", "mysql -u root --password='flag pw 3' -h db", "flag pw 3", "-h db"),
    # -- name=value ----------------------------------------------------------------------
    Shape("dsn", "connection to host=db user=app password=pa55word failed", "pa55word",
          "user=app"),
    Shape("dsn-odd-chars", "host=db password=ab&cd,ef user=x", "ab&cd,ef", "host=db"),
    Shape("pw-whole-name", "login pw=pw-whole-7 user=app", "pw-whole-7", "user=app"),
    Shape("pass-whole-name", "db_pass: pass-w-71\nport: 5432", "pass-w-71", "port: 5432"),
    Shape("env-pgpassword", "PGPASSWORD=pg-pw-881 psql -h db", "pg-pw-881", "psql -h db"),
    Shape("env-aws", "aws_secret_access_key=AKIA5SECRET more text", "AKIA5SECRET",
          "more text"),
    Shape("quoted-phrase", 'password="my h1dden phr4se" user=app', "my h1dden phr4se",
          "user=app"),
    Shape("ado-net", "Server=db;Database=app;User Id=sa;Password=ado-pw-8;", "ado-pw-8",
          "Database=app"),
    Shape("keyword-bearer", "auth=Bearer kwb-tok-3 retry=1", "kwb-tok-3", "retry=1"),
    # -- XML -----------------------------------------------------------------------------
    Shape("xml-element", "<password>xml-pw-1</password><user>app</user>", "xml-pw-1",
          "<user>app</user>"),
    Shape("xml-namespaced", "<ns:Token type='x'>xml-tk-2</ns:Token><id>9</id>", "xml-tk-2",
          "<id>9</id>"),
    Shape("xml-nested", "<credentials><user>u</user><pass>xml-s-3</pass></credentials>"
          "<region>eu</region>", "xml-s-3", "<region>eu</region>"),
    # -- SQL -----------------------------------------------------------------------------
    Shape("sql-password", "[SQL: ALTER ROLE app PASSWORD 'sql-pw-1']", "sql-pw-1",
          "ALTER ROLE app"),
    Shape("sql-password-doubled-quote", "CREATE USER app WITH ENCRYPTED PASSWORD "
          "'sql''pw-2x'", "pw-2x", "CREATE USER app"),
    Shape("sql-identified-by", "CREATE USER 'app'@'%' IDENTIFIED BY 'my-pw-3x'", "my-pw-3x",
          "CREATE USER"),
    Shape("sql-identified-with-by", "CREATE USER x IDENTIFIED WITH caching_sha2_password BY "
          "'my-pw-4y'", "my-pw-4y", "caching_sha2_password"),
    Shape("sql-parameters", "(psycopg.errors.UniqueViolation) dup\n[SQL: INSERT INTO t (a) "
          "VALUES (%(a)s)]\n[parameters: {'a': 'param-secret'}]\n(Background on this error "
          "at: https://sqlalche.me/e/20/gkpj)", "param-secret", "[SQL: INSERT INTO t (a)"),
    Shape("pg-detail", 'duplicate key value violates unique constraint "users_email_key"\n'
          "DETAIL:  Key (email)=(alice@example.com) already exists.", "alice@example.com",
          "users_email_key"),
    Shape("pg-line-cut", 'syntax error at or near "UNTILL"\nLINE 1: ...w-Role-pw9\' VALID '
          "UNTILL 'in...\n                  ^", "w-Role-pw9", "syntax error at or near"),
    # -- PEM -----------------------------------------------------------------------------
    Shape("pem", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7pemsecret\n"
          "-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA7pemsecret",
          "-----END RSA PRIVATE KEY-----"),
    Shape("pem-escaped", '{"cert_bundle": "-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNza'
          'C1rZXktdjE\\n-----END OPENSSH PRIVATE KEY-----\\n"}', "b3BlbnNzaC1rZXktdjE",
          "cert_bundle"),
    # -- schemes, JWTs, well-known tokens ------------------------------------------------
    Shape("bearer-bare", "Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi", "Bearer"),
    Shape("token-bare", "sent Token tok-bare-9 to api", "tok-bare-9", "to api"),
    Shape("basic-bare", "retrying with Basic dXNlcjpwYXNzd29yZA== failed",
          "dXNlcjpwYXNzd29yZA==", "failed"),
    Shape("apikey-bare", "auth header ApiKey ak-bare-10 rejected", "ak-bare-10", "rejected"),
    Shape("jwt-in-text", "invalid jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2Q"
          " rejected", "SflKxwRJSMeKKF2Q", "rejected"),
    Shape("jwt-in-query", "GET https://h.example/x?id_hint=eyJhbGciOiJub25lIn0.eyJzdWIiOjF9."
          "c2lnbmF0dXJl&page=2", "c2lnbmF0dXJl", "page=2"),
    Shape("github-token", "push failed: ghp_16C7e42F292c6912E7710c838347Ae178B4a rejected",
          "16C7e42F292c6912E7710c838347Ae178B4a", "rejected"),
    Shape("slack-bot-token", "post with xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrz "
          "failed", "pdFZKVeTuE8sk7oOcBrz", "failed"),
    Shape("aws-key-id", "InvalidClientTokenId for AKIAIOSFODNN7EXAMPLE in us-east-1",
          "AKIAIOSFODNN7EXAMPLE", "us-east-1"),
    # -- secrets in URL paths (raise_for_status() quotes the URL) ------------------------
    Shape("slack-webhook", "POST https://hooks.slack.com/services/T00000000/B00000000/XxYyZz"
          "1234567890AbCdEfGh failed", "XxYyZz1234567890AbCdEfGh", "hooks.slack.com"),
    Shape("discord-webhook", "Client error '401 Unauthorized' for url 'https://discord.com/api"
          "/webhooks/123456789012345678/Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKl'",
          "Ab3dEfGhIjKlMnOpQrStUvWxYz0123456789", "401 Unauthorized"),
    Shape("telegram-bot", "GET https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSA"
          "s0K5PALDsaw/sendMessage", "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "sendMessage"),
    Shape("hex-path-secret", "Client error '404 Not Found' for url 'https://hooks.example.com"
          "/hook/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'",
          "9f86d081884c7d659a2feaa0c55ad015", "404 Not Found"),
    # -- what leaked before, kept --------------------------------------------------------
    Shape("private-token", "GET https://h.example/x?private_token=PT-19a", "PT-19a",
          "h.example/x"),
    Shape("url-userinfo-slash", "postgresql://u:pa/ss@db/orders", "pa/ss", "db/orders"),
    Shape("query-signature", "GET https://s3.example/o?Signature=sig-abc&X-Amz-Date=20260101"
          "&page=2", "sig-abc", "page=2"),
    Shape("query-credential", "GET https://s3.example/o?X-Amz-Credential=AKIA-cred&page=2",
          "AKIA-cred", "page=2"),
    Shape("db-password", "db_password=dbpw-55 host=db", "dbpw-55", "host=db"),
    Shape("id-and-refresh-token", "id_token=idt-1x refresh_token=rft-2x", "rft-2x",
          "id_token"),
    Shape("private-key-kw", "private_key=pk-77 loaded", "pk-77", "loaded"),
    Shape("sessionid", "sessionid=sid-31 cookie", "sid-31", "cookie"),
]

#: Texts that hold no secret: redaction must give each back unchanged.
HARMLESS: list[str] = [
    "ConnectionError: [Errno 111] Connection refused",
    "HTTPStatusError: 503 Service Unavailable for url http://127.0.0.1:8080/v1/items?page=2",
    "ReadTimeout: HTTPConnectionPool(host='localhost', port=8080): Read timed out. "
    "(read timeout=5)",
    "KeyError: 'session_id'",
    "TypeError: fetch() missing 1 required keyword-only argument: 'token'",
    "OperationalError: connection failed: FATAL:  password authentication failed for user "
    '"brace"',
    "AuthenticationError: invalid username-password pair or user is disabled.",
    "HTTPStatusError: Client error '401 Unauthorized' for url 'https://api.example.com/v1/"
    "users/42?page=2&sort=name'",
    "GET https://api.example.com",
    "ConnectionResetError: [Errno 104] Connection reset by peer",
    "duplicate key value violates unique constraint",
    "https://example.com/docs/Release-Notes-2024-Version-2-Final",
    "GET https://api.example.com/v1/orders/123e4567-e89b-12d3-a456-426614174000",
    "Token expired at 12:00",
    "Basic authentication is disabled",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "RemoteProtocolError: Server disconnected without sending a response.",
    "mail bob@example.com about https://status.example.com/incidents/17",
]

_PIECE = re.compile(r"[^\s'\"]{4,}")


def leaked(secret: str, text: str) -> list[str]:
    """The parts of ``secret`` that ``text`` still holds: itself, or a run of 4+ characters."""
    found = [secret] if secret in text else []
    return found + [piece for piece in _PIECE.findall(secret) if piece in text]
