"""The study's answers in SQLite: one row per answer, written the moment it arrives (docs/study.md).

WAL journal with ``synchronous=FULL``: a commit is on disk when the participant's request returns, so a killed
server (or a lost power) loses nothing already answered, and ``analyze`` can read while the server writes.
``(participant, trial)`` is the primary key of an answer, so a replayed answer cannot be stored twice.
A participant's session token is kept only as its SHA-256 (the database reveals no live session).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import PainDiffusionError

DB = "results/answers.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS participants (
    id TEXT PRIMARY KEY,              -- P001, P002 … (humans); "observer" (the machine)
    number INTEGER UNIQUE,            -- plan row = number mod cycle; NULL for a machine
    token_sha256 TEXT UNIQUE,         -- the session token's hash; NULL for a machine
    machine INTEGER NOT NULL DEFAULT 0,
    role TEXT, years REAL, frequency TEXT,
    consented_at TEXT NOT NULL,
    finished_at TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS answers (
    participant TEXT NOT NULL REFERENCES participants(id),
    trial TEXT NOT NULL,
    position INTEGER NOT NULL,        -- serial position in the participant's plan (0 = first)
    block TEXT NOT NULL,
    window TEXT NOT NULL,
    clips TEXT NOT NULL,              -- JSON list, in the order shown (left → right)
    sources TEXT NOT NULL,            -- JSON list, in the order shown
    answer TEXT NOT NULL,             -- "left" / "right" (2afc, choice) or "1" … "5" (likert)
    chosen TEXT,                      -- the chosen clip's source (2afc, choice)
    rating INTEGER,                   -- 1-5 (likert)
    comment TEXT,
    rt_ms REAL,                       -- response time from the clips' start, as the page measured it
    shown_at TEXT, answered_at TEXT,  -- the page's clock (ISO 8601)
    stored_at TEXT NOT NULL,          -- the server's clock (UTC, ISO 8601)
    PRIMARY KEY (participant, trial)
);
"""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Participant:
    id: str
    number: int | None
    machine: bool
    finished: bool


class Store:
    """One connection, used from one thread (the server's event loop, or a command)."""

    def __init__(self, study: str | Path, create: bool = True):
        path = Path(study) / DB
        if not create and not path.is_file():
            raise PainDiffusionError("this study has no answers yet (no results/answers.sqlite); serve it first", study)
        try:
            path.parent.mkdir(exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise PainDiffusionError(f"cannot open the study's database ({e})", path) from None
        self.path = path

    def close(self) -> None:
        self.db.close()

    # ---- participants -------------------------------------------------------------------------------------
    def add_participant(self, token: str, role: str, years: float, frequency: str) -> Participant:
        """A new human participant with the next free number (in one transaction: numbers never repeat)."""
        with self._tx():
            n = self.db.execute("SELECT COALESCE(MAX(number), -1) + 1 FROM participants").fetchone()[0]
            pid = f"P{n + 1:03d}"
            self.db.execute("INSERT INTO participants (id, number, token_sha256, role, years, frequency, consented_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", (pid, n, token_hash(token), role, years, frequency, now()))
        return Participant(pid, n, False, False)

    def by_token(self, token: str) -> Participant | None:
        row = self.db.execute("SELECT id, number, machine, finished_at FROM participants WHERE token_sha256 = ?",
                              (token_hash(token),)).fetchone()
        return None if row is None else Participant(row[0], row[1], bool(row[2]), row[3] is not None)

    def set_machine(self, pid: str, note: str, rows: list[dict]) -> None:
        """Replace the machine participant ``pid`` and all its answers with ``rows``, in one transaction (an
        observer run replaces the last one whole, or not at all)."""
        with self._tx():
            self.db.execute("DELETE FROM answers WHERE participant = ?", (pid,))
            self.db.execute("DELETE FROM participants WHERE id = ?", (pid,))
            self.db.execute("INSERT INTO participants (id, machine, consented_at, finished_at, note) VALUES (?, 1, ?, ?, ?)",
                            (pid, now(), now(), note))
            for r in rows:
                self.add_answer(r)

    def finish(self, pid: str) -> None:
        self.db.execute("UPDATE participants SET finished_at = ? WHERE id = ? AND finished_at IS NULL", (now(), pid))

    # ---- answers ------------------------------------------------------------------------------------------
    def add_answer(self, row: dict) -> bool:
        """Store one answer; False if this participant already answered this trial (nothing is changed)."""
        cols = ("participant", "trial", "position", "block", "window", "clips", "sources", "answer", "chosen", "rating",
                "comment", "rt_ms", "shown_at", "answered_at")
        values = [json.dumps(row[c]) if c in ("clips", "sources") else row.get(c) for c in cols]
        try:
            self.db.execute(f"INSERT INTO answers ({', '.join(cols)}, stored_at) VALUES ({', '.join('?' * len(cols))}, ?)",
                            (*values, now()))
        except sqlite3.IntegrityError:
            return False
        return True

    def answered(self, pid: str) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT trial FROM answers WHERE participant = ?", (pid,))}

    def _tx(self):
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): the write lock is taken first, so two servers or commands
    on one database cannot interleave a read-then-write."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def read_tables(study: str | Path) -> tuple[list[dict], list[dict]]:
    """(participants, answers) as dicts, read through a read-only connection (safe while the server runs)."""
    path = Path(study) / DB
    if not path.is_file():
        raise PainDiffusionError("this study has no answers yet (no results/answers.sqlite); serve it first", study)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            people = [dict(r) for r in db.execute("SELECT * FROM participants ORDER BY machine, number, id")]
            answers = [dict(r) for r in db.execute("SELECT * FROM answers ORDER BY participant, position")]
        finally:
            db.close()
    except sqlite3.Error as e:
        raise PainDiffusionError(f"cannot read the study's database ({e})", path) from None
    for a in answers:
        a["clips"], a["sources"] = json.loads(a["clips"]), json.loads(a["sources"])
    return people, answers
