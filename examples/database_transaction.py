"""A whole SQLite transaction under @brace.database(): "database is locked" re-runs it.

A report job on a second connection holds the write lock (BEGIN IMMEDIATE), so the
transfer's first attempt fails with SQLite's "database is locked" (SQLITE_BUSY). brace
re-runs the *whole* transaction function (read, check, write, commit) once the lock is free,
and the transfer is applied exactly once. A bug ("no such table") is raised at once.

Run it with `.venv/bin/python examples/database_transaction.py`.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

import brace

DB = Path(tempfile.mkdtemp(prefix="brace-example-")) / "bank.db"
attempts = 0


class ReportJob:
    """Another connection that holds the write lock until told to finish."""

    def __init__(self) -> None:
        self.locked = threading.Event()
        self.finish = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        conn = sqlite3.connect(DB, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock, until COMMIT
            conn.execute("INSERT INTO ledger (note) VALUES ('nightly report')")
            self.locked.set()
            self.finish.wait(10)
            conn.execute("COMMIT")
        finally:
            conn.close()
            self.done.set()

    def release(self) -> None:
        self.finish.set()
        self.done.wait(10)


report = ReportJob()


@brace.database(initial=0.02, max_wait=0.1)
def transfer(src: str, dst: str, amount: int) -> None:
    """One transaction, from BEGIN to COMMIT: brace re-runs all of it on a transient error."""
    global attempts
    attempts += 1
    if attempts == 2:  # (demo only) the report job finishes once we have been turned away
        report.release()
    conn = sqlite3.connect(DB, timeout=0, isolation_level=None)  # timeout=0: fail, don't wait
    try:
        conn.execute("BEGIN IMMEDIATE")
        (balance,) = conn.execute("SELECT balance FROM accounts WHERE name = ?",
                                  (src,)).fetchone()
        if balance < amount:
            raise ValueError(f"{src} has only {balance}")
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, src))
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?", (amount, dst))
        conn.execute("INSERT INTO ledger (note) VALUES (?)", (f"{src} -> {dst}: {amount}",))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


@brace.database
def count_typo() -> int:
    """A bug: the table is called accounts. Retrying cannot fix it."""
    conn = sqlite3.connect(DB)
    try:
        return int(conn.execute("SELECT count(*) FROM acounts").fetchone()[0])
    finally:
        conn.close()


def setup() -> None:
    conn = sqlite3.connect(DB)
    with conn:
        conn.execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER)")
        conn.execute("INSERT INTO accounts VALUES ('alice', 100), ('bob', 0)")
        conn.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT)")
    conn.close()


def main() -> None:
    setup()
    report.thread.start()
    report.locked.wait(10)
    print("report job holds the write lock on a second connection (BEGIN IMMEDIATE)")

    transfer("alice", "bob", 30)
    report.thread.join(10)
    print(f"transfer(alice -> bob, 30) committed after {attempts} attempts")

    conn = sqlite3.connect(DB)
    balances = dict(conn.execute("SELECT name, balance FROM accounts ORDER BY name"))
    notes = [row[0] for row in conn.execute("SELECT note FROM ledger ORDER BY id")]
    conn.close()
    print(f"balances: alice={balances['alice']} bob={balances['bob']} "
          f"(the transfer was applied once)")
    print(f"ledger: {notes}")

    try:
        count_typo()
    except sqlite3.OperationalError as exc:
        print(f"a bug is not retried: {exc!r} after "
              f"{count_typo.statistics['attempt_number']} attempt")


if __name__ == "__main__":
    # brace logs to the standard library's logger "brace" (structlog once configured).
    logging.basicConfig(format="%(levelname)-7s %(message)s")
    logging.getLogger("brace").setLevel(logging.INFO)
    try:
        main()
    finally:
        shutil.rmtree(DB.parent, ignore_errors=True)
