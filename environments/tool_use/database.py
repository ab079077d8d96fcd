"""A small fictional company database (sqlite, in memory, read-only) and its tools.

Every environment opens its own copy from ``data/company.sql``. SQL written by the model
runs behind an authorizer that allows reading only (no writes, ATTACH, PRAGMA changes or
nondeterministic functions), a step budget enforced by a progress handler (deterministic,
unlike a wall clock, so the same query always gives the same result), a string-length
cap, and a row cap.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from functools import lru_cache, partial
from importlib import resources
from typing import Any

from .tools import ToolError

SCHEMA_SUMMARY = (
    "departments(id, name, city, budget); "
    "employees(id, name, department_id -> departments.id, title, salary, hire_year, manager_id -> employees.id); "
    "projects(id, name, department_id -> departments.id, budget, start_year); "
    "assignments(employee_id -> employees.id, project_id -> projects.id, hours)"
)

_PROGRESS_EVERY = 1000  # VM instructions between two progress-handler calls
_READ_ONLY_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "foreign_key_list"}
# Denied so the same query always gives the same answer (clock, randomness) and cannot load code.
_DENIED_FUNCTIONS = {
    "random",
    "randomblob",
    "load_extension",
    "date",
    "time",
    "datetime",
    "julianday",
    "unixepoch",
    "strftime",
    "timediff",
    "current_date",
    "current_time",
    "current_timestamp",
}
_SQLITE_RECURSIVE = getattr(sqlite3, "SQLITE_RECURSIVE", 33)


@lru_cache(maxsize=1)
def company_sql() -> str:
    return resources.files(__package__).joinpath("data").joinpath("company.sql").read_text(encoding="utf-8")


def _authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _trigger: str | None) -> int:
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, _SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        return sqlite3.SQLITE_DENY if (arg2 or "").lower() in _DENIED_FUNCTIONS else sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in _READ_ONLY_PRAGMAS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


class CompanyDatabase:
    """One read-only connection to the company data, safe to share between threads."""

    def __init__(self, *, max_rows: int = 50, max_steps: int = 5_000_000, wall_s: float = 5.0) -> None:
        if max_rows < 1 or max_steps < _PROGRESS_EVERY:
            raise ValueError(f"max_rows must be >= 1 and max_steps >= {_PROGRESS_EVERY}")
        self.max_rows, self.max_steps, self.wall_s = max_rows, max_steps, wall_s
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._conn.executescript(company_sql())
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.set_authorizer(_authorize)
        if hasattr(self._conn, "setlimit"):  # Python >= 3.11: cap string/blob sizes a query can build
            self._conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        # Read-only data: a copy sent to another process (a Ray worker) reopens it from the script.
        return partial(
            CompanyDatabase, max_rows=self.max_rows, max_steps=self.max_steps, wall_s=self.wall_s
        ), ()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[str], list[list[Any]], bool]:
        """``(columns, rows, truncated)`` of one read-only statement; errors are ``ToolError``."""
        calls = 0
        deadline = time.monotonic() + self.wall_s

        def progress() -> int:
            nonlocal calls
            calls += 1
            # The step budget decides; the wall clock is only a backstop for a stalled machine.
            return int(calls * _PROGRESS_EVERY > self.max_steps or time.monotonic() > deadline)

        with self._lock:
            self._conn.set_progress_handler(progress, _PROGRESS_EVERY)
            cursor = None
            try:
                cursor = self._conn.execute(sql, params)
                rows = cursor.fetchmany(self.max_rows + 1)
                columns = [d[0] for d in cursor.description or ()]
            except sqlite3.OperationalError as exc:
                if "interrupted" in str(exc):
                    raise ToolError(
                        f"the query was stopped after {self.max_steps:,} steps; "
                        "simplify it (add WHERE conditions, avoid unbounded recursion)"
                    ) from None
                raise ToolError(f"SQL error: {exc}") from None
            except (sqlite3.Error, sqlite3.Warning, OverflowError, ValueError) as exc:
                raise ToolError(f"SQL error: {exc}") from None
            finally:
                if cursor is not None:
                    cursor.close()
                self._conn.set_progress_handler(None, 0)
        truncated = len(rows) > self.max_rows
        return columns, [list(row) for row in rows[: self.max_rows]], truncated

    def close(self) -> None:
        self._conn.close()

    # -- tools (bound methods: their docstrings are the schemas the model sees) --------------
    def sql(self, query: str) -> dict[str, Any]:
        """Run one read-only SQL SELECT query on the company database. Tables: departments(id, name, city, budget); employees(id, name, department_id, title, salary, hire_year, manager_id); projects(id, name, department_id, budget, start_year); assignments(employee_id, project_id, hours). employees.manager_id refers to employees.id.

        Args:
            query: A single SQLite SELECT statement.
        """
        columns, rows, truncated = self.query(query)
        result: dict[str, Any] = {"columns": columns, "rows": rows}
        if truncated:
            result["truncated"] = f"only the first {self.max_rows} rows are shown"
        return result

    def lookup_employee(self, name: str) -> dict[str, Any]:
        """Look up one employee of the company by full name.

        Args:
            name: The employee's full name, e.g. "Ada Albrecht".
        """
        _, rows, _ = self.query(
            "SELECT e.id, e.name, e.title, d.name, e.salary, e.hire_year, m.name "
            "FROM employees e JOIN departments d ON d.id = e.department_id "
            "LEFT JOIN employees m ON m.id = e.manager_id WHERE lower(e.name) = lower(?)",
            (name.strip(),),
        )
        if not rows:
            raise ToolError(f"no employee is named {name!r}")
        keys = ("id", "name", "title", "department", "salary", "hire_year", "manager")
        return dict(zip(keys, rows[0]))
