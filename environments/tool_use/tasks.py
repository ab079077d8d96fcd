"""Seeded procedural tool-use tasks, each with its reference tool-call path and answer.

Answers are never written by hand: every reference call is executed with the same tool
functions the environment runs, so a row's answer is what following its path yields.
Row ``index`` of a given ``seed`` is always the same row.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdpo_envs import ProceduralTaskSource

from .builtin import builtin_tools
from .database import CompanyDatabase
from .python_tool import PythonTool
from .tools import Toolbox
from .units import UNIT_NAMES, UNITS

FAMILIES = ("db_lookup", "db_aggregate", "db_join", "convert", "calc_chain", "convert_calc")
# Families whose reference path runs model code: they need a working sandbox, so they are opt-in.
SANDBOX_FAMILIES = ("python",)
ALL_FAMILIES = FAMILIES + SANDBOX_FAMILIES

ROUND2 = " Round your answer to 2 decimal places."
TOL_ROUND2 = {"abs": 0.01, "rel": 0.0}
TOL_EXACT = {"abs": 1e-6, "rel": 0.0}


def num(value: float) -> str:
    """A number as the model reads it in tool output (JSON), for use in later expressions."""
    return json.dumps(value)


@dataclass
class Path:
    """Runs reference calls with the real tools and records them."""

    toolbox: Toolbox
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, tool_name: str, /, **arguments: Any) -> Any:
        tool = self.toolbox[tool_name]
        problems = tool.check_arguments(arguments)
        if problems:  # a generator bug, not a model error
            raise AssertionError(f"reference call {tool_name}({arguments}) is invalid: {problems}")
        value = tool.function(**arguments)
        self.calls.append({"name": tool_name, "arguments": dict(arguments)})
        return value

    def record(self, tool_name: str, /, **arguments: Any) -> None:
        """Record a call without running it (sandboxed tools are not run at generation time)."""
        self.calls.append({"name": tool_name, "arguments": dict(arguments)})


@dataclass
class Spec:
    question: str
    answer: Any
    needed: list[str]
    answer_type: str = "number"
    tolerance: dict[str, float] = field(default_factory=lambda: dict(TOL_EXACT))


class _Company:
    """Facts about the database the question templates draw from."""

    def __init__(self, db: CompanyDatabase) -> None:
        self.db = db
        self.departments = [r[0] for r in db.query("SELECT name FROM departments ORDER BY id")[1]]
        self.employees = [r[0] for r in db.query("SELECT name FROM employees ORDER BY id")[1]]
        self.heads = [
            r[0] for r in db.query("SELECT name FROM employees WHERE manager_id IS NULL ORDER BY id")[1]
        ]
        self.projects = [r[0] for r in db.query("SELECT name FROM projects ORDER BY id")[1]]


def _sql_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def db_lookup(rng: random.Random, path: Path, company: _Company) -> Spec:
    name = rng.choice(company.employees)
    kinds = ["salary", "title", "hire_year", "department"] + ([] if name in company.heads else ["manager"])
    kind = rng.choice(kinds)
    record = path("lookup_employee", name=name)
    question = {
        "salary": f"What is the annual salary of {name}, according to the company database?",
        "title": f"What is the job title of {name}?",
        "hire_year": f"In which year was {name} hired?",
        "department": f"Which department does {name} work in? Give the department's name.",
        "manager": f"Who is the direct manager of {name}? Give the manager's full name.",
    }[kind]
    answer_type = "number" if kind in ("salary", "hire_year") else "text"
    return Spec(question, record[kind], ["lookup_employee"], answer_type)


def db_aggregate(rng: random.Random, path: Path, company: _Company) -> Spec:
    dept = rng.choice(company.departments)
    where_dept = f"JOIN departments d ON d.id = e.department_id WHERE d.name = {_sql_quote(dept)}"
    year = rng.randint(2011, 2022)
    salary = rng.randrange(60, 150) * 1000
    templates: list[tuple[str, str, bool]] = [
        (
            f"How many employees work in the {dept} department?",
            f"SELECT COUNT(*) FROM employees e {where_dept}",
            False,
        ),
        (
            f"What is the average salary in the {dept} department?" + ROUND2,
            f"SELECT ROUND(AVG(e.salary), 2) FROM employees e {where_dept}",
            True,
        ),
        (
            f"What is the highest salary in the {dept} department?",
            f"SELECT MAX(e.salary) FROM employees e {where_dept}",
            False,
        ),
        (
            f"What is the total yearly salary cost of the {dept} department?",
            f"SELECT SUM(e.salary) FROM employees e {where_dept}",
            False,
        ),
        (
            f"How many employees were hired after {year} (not counting those hired in {year})?",
            f"SELECT COUNT(*) FROM employees WHERE hire_year > {year}",
            False,
        ),
        (
            f"What is the total budget of all projects that started in {year + 5} or later?",
            f"SELECT COALESCE(SUM(budget), 0) FROM projects WHERE start_year >= {year + 5}",
            False,
        ),
        (
            f"How many employees earn strictly more than {salary} per year?",
            f"SELECT COUNT(*) FROM employees WHERE salary > {salary}",
            False,
        ),
    ]
    question, query, rounded = rng.choice(templates)
    value = path("sql", query=query)["rows"][0][0]
    return Spec(question, value, ["sql"], "number", dict(TOL_ROUND2 if rounded else TOL_EXACT))


def _top_worker(company: _Company, project: str) -> str | None:
    """The single employee with most hours on ``project``, or None on a tie."""
    _, rows, _ = company.db.query(
        "SELECT e.name, SUM(a.hours) AS h FROM assignments a JOIN employees e ON e.id = a.employee_id "
        "JOIN projects p ON p.id = a.project_id WHERE p.name = ? GROUP BY e.id ORDER BY h DESC LIMIT 2",
        (project,),
    )
    if not rows or (len(rows) == 2 and rows[0][1] == rows[1][1]):
        return None
    return rows[0][0]


def db_join(rng: random.Random, path: Path, company: _Company) -> Spec:
    kind = rng.choice(["hours", "people", "top", "reports", "projects_of", "dept_hours", "owner", "city"])
    # "Who logged the most hours" must have a single answer: tied projects are never asked about.
    projects = [p for p in company.projects if kind != "top" or _top_worker(company, p) is not None]
    project = rng.choice(projects)
    dept = rng.choice(company.departments)
    name = rng.choice(company.employees)
    head = rng.choice(company.heads)
    on_project = (
        "FROM assignments a JOIN projects p ON p.id = a.project_id "
        f"JOIN employees e ON e.id = a.employee_id WHERE p.name = {_sql_quote(project)}"
    )
    question, query, answer_type = {
        "hours": (
            f"How many hours in total have been logged on project {project}?",
            f"SELECT SUM(a.hours) {on_project}",
            "number",
        ),
        "people": (
            f"How many different employees work on project {project}?",
            f"SELECT COUNT(DISTINCT a.employee_id) {on_project}",
            "number",
        ),
        "top": (
            f"Which employee has logged the most hours on project {project}? Give the full name.",
            f"SELECT e.name, SUM(a.hours) AS h {on_project} GROUP BY e.id ORDER BY h DESC LIMIT 1",
            "text",
        ),
        "reports": (
            f"How many employees report directly to {head}?",
            f"SELECT COUNT(*) FROM employees e JOIN employees m ON m.id = e.manager_id WHERE m.name = {_sql_quote(head)}",
            "number",
        ),
        "projects_of": (
            f"On how many projects is {name} working?",
            f"SELECT COUNT(*) FROM assignments a JOIN employees e ON e.id = a.employee_id WHERE e.name = {_sql_quote(name)}",
            "number",
        ),
        "dept_hours": (
            f"How many project hours in total have employees of the {dept} department logged (on any project)?",
            "SELECT COALESCE(SUM(a.hours), 0) FROM assignments a JOIN employees e ON e.id = a.employee_id "
            f"JOIN departments d ON d.id = e.department_id WHERE d.name = {_sql_quote(dept)}",
            "number",
        ),
        "owner": (
            f"Which department owns project {project}? Give the department's name.",
            f"SELECT d.name FROM projects p JOIN departments d ON d.id = p.department_id WHERE p.name = {_sql_quote(project)}",
            "text",
        ),
        "city": (
            f"In which city is the department of {name} located?",
            f"SELECT d.city FROM employees e JOIN departments d ON d.id = e.department_id WHERE e.name = {_sql_quote(name)}",
            "text",
        ),
    }[kind]
    value = path("sql", query=query)["rows"][0][0]
    return Spec(question, value, ["sql"], answer_type)


_QUANTITY_RANGES = {
    "length": (1, 500),
    "mass": (1, 500),
    "volume": (1, 200),
    "time": (1, 1000),
    "speed": (1, 300),
    "area": (1, 5000),
}
_TEMPERATURE_RANGES = {"C": (-30, 100), "F": (-20, 212), "K": (230, 400)}


def convert_family(rng: random.Random, path: Path, company: _Company) -> Spec:
    quantity = rng.choice([*sorted(_QUANTITY_RANGES), "temperature"])
    units = [u for u, (q, _) in UNITS.items() if q == quantity]
    for _ in range(50):
        src, dst = rng.sample(units, 2)
        low, high = _TEMPERATURE_RANGES[src] if quantity == "temperature" else _QUANTITY_RANGES[quantity]
        value = round(rng.uniform(low, high), rng.choice([0, 1, 2]))
        value = int(value) if float(value).is_integer() else value
        result = path.toolbox["convert"].function(value=value, from_unit=src, to_unit=dst)
        if quantity == "temperature" or 0.5 <= abs(result) <= 1e7:  # rounding to 2 places must keep meaning
            break
    result = path("convert", value=value, from_unit=src, to_unit=dst)
    question = f"Convert {num(value)} {UNIT_NAMES[src]} ({src}) to {UNIT_NAMES[dst]} ({dst})." + ROUND2
    return Spec(question, round(result, 2), ["convert"], "number", dict(TOL_ROUND2))


def _money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def calc_chain(rng: random.Random, path: Path, company: _Company) -> Spec:
    calc = lambda expression: path("calculate", expression=expression)  # noqa: E731
    kind = rng.randrange(6)
    if kind == 0:
        n, price, discount, tax = (
            rng.randint(3, 60),
            _money(rng, 1, 40),
            rng.choice([5, 10, 15, 20, 25]),
            rng.choice([5, 7, 8, 19, 20]),
        )
        total = calc(f"{n} * {price}")
        discounted = calc(f"{num(total)} * (1 - {discount} / 100)")
        final = calc(f"{num(discounted)} * (1 + {tax} / 100)")
        question = (
            f"A store sells {n} notebooks at ${price} each. A {discount}% discount is applied to the total, "
            f"then {tax}% sales tax is added to the discounted amount. What is the final price in dollars?"
        )
    elif kind == 1:
        principal, rate, years, withdrawal = (
            rng.randrange(10, 500) * 100,
            rng.choice([1.5, 2, 2.5, 3, 4, 5]),
            rng.randint(2, 15),
            rng.randrange(1, 20) * 50,
        )
        balance = calc(f"{principal} * (1 + {rate} / 100) ** {years}")
        final = calc(f"{num(balance)} - {withdrawal}")
        question = (
            f"You deposit ${principal} at {rate}% annual interest, compounded yearly, for {years} years, "
            f"and then withdraw ${withdrawal}. What is the remaining balance in dollars?"
        )
    elif kind == 2:
        d1, t1, d2, t2 = (
            rng.randint(20, 400),
            rng.choice([0.5, 1, 1.5, 2, 2.5, 3]),
            rng.randint(20, 400),
            rng.choice([0.5, 1, 1.5, 2, 4]),
        )
        distance = calc(f"{d1} + {d2}")
        hours = calc(f"{t1} + {t2}")
        final = calc(f"{num(distance)} / {num(hours)}")
        question = (
            f"A train travels {d1} km in {t1} hours and then {d2} km in {t2} hours. "
            "What is its average speed over the whole trip, in km/h?"
        )
    elif kind == 3:
        servings, grams, wanted = rng.randint(2, 8), rng.randrange(10, 100) * 5, rng.randint(3, 30)
        per = calc(f"{grams} / {servings}")
        final = calc(f"{num(per)} * {wanted}")
        question = f"A recipe for {servings} servings needs {grams} g of flour. How many grams of flour are needed for {wanted} servings?"
    elif kind == 4:
        a, b, c, d, e = (rng.randint(2, 99) for _ in range(5))
        final = calc(f"({a} + {b}) * {c} - {d} / {e}")
        question = f"Compute ({a} + {b}) × {c} − {d} ÷ {e}."
    else:
        bill, tip, people = _money(rng, 30, 400), rng.choice([10, 12, 15, 18, 20]), rng.randint(2, 9)
        with_tip = calc(f"{bill} * (1 + {tip} / 100)")
        final = calc(f"{num(with_tip)} / {people}")
        question = f"A dinner costs ${bill} and a {tip}% tip is added. The total is split equally among {people} people. How much does each person pay, in dollars?"
    return Spec(question + ROUND2, round(final, 2), ["calculate"], "number", dict(TOL_ROUND2))


def convert_calc(rng: random.Random, path: Path, company: _Company) -> Spec:
    kind = rng.randrange(4)
    if kind == 0:
        miles, minutes = round(rng.uniform(2, 30), 1), rng.randint(15, 240)
        km = path("convert", value=miles, from_unit="mi", to_unit="km")
        hours = path("convert", value=minutes, from_unit="min", to_unit="h")
        final = path("calculate", expression=f"{num(km)} / {num(hours)}")
        question = f"A runner covers {miles} miles in {minutes} minutes. What is the average speed in kilometres per hour?"
    elif kind == 1:
        gallons, miles = round(rng.uniform(2, 20), 1), rng.randint(50, 600)
        litres = path("convert", value=gallons, from_unit="gal", to_unit="l")
        km = path("convert", value=miles, from_unit="mi", to_unit="km")
        final = path("calculate", expression=f"{num(litres)} / {num(km)} * 100")
        question = f"A car uses {gallons} US gallons of fuel to drive {miles} miles. What is its consumption in litres per 100 km?"
    elif kind == 2:
        w1, w2 = round(rng.uniform(1, 60), 1), round(rng.uniform(1, 60), 1)
        pounds = path("calculate", expression=f"{w1} + {w2}")
        final = path("convert", value=pounds, from_unit="lb", to_unit="kg")
        question = f"Two parcels weigh {w1} lb and {w2} lb. What is their total weight in kilograms?"
    else:
        f1 = rng.randint(-10, 60)
        f2 = f1 + rng.randint(5, 50)
        c1 = path("convert", value=f1, from_unit="F", to_unit="C")
        c2 = path("convert", value=f2, from_unit="F", to_unit="C")
        final = path("calculate", expression=f"{num(c2)} - {num(c1)}")
        question = f"The temperature rose from {f1} °F to {f2} °F. By how many degrees Celsius did it rise?"
    return Spec(question + ROUND2, round(final, 2), ["convert", "calculate"], "number", dict(TOL_ROUND2))


def _primes_below(n: int) -> int:
    sieve = bytearray([1]) * n
    sieve[:2] = b"\x00\x00"[: min(2, n)]
    for i in range(2, math.isqrt(max(n - 1, 0)) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(sieve[i * i :: i]))
    return sum(sieve)


def python_family(rng: random.Random, path: Path, company: _Company) -> Spec:
    kind = rng.randrange(3)
    if kind == 0:
        n = rng.randrange(1000, 200000)
        code = (
            f"n = {n}\nsieve = [True] * n\nsieve[0:2] = [False, False]\n"
            "for i in range(2, int(n ** 0.5) + 1):\n    if sieve[i]:\n"
            "        sieve[i * i :: i] = [False] * len(sieve[i * i :: i])\nprint(sum(sieve))"
        )
        answer, question = _primes_below(n), f"How many prime numbers are smaller than {n}?"
    elif kind == 1:
        base, power = rng.randint(2, 99), rng.randint(20, 300)
        code = f"print(sum(int(d) for d in str({base} ** {power})))"
        answer, question = (
            sum(int(d) for d in str(base**power)),
            f"What is the sum of the decimal digits of {base}^{power}?",
        )
    else:
        n = rng.randint(30, 300)
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        code = f"a, b = 0, 1\nfor _ in range({n}):\n    a, b = b, a + b\nprint(a)"
        answer, question = (
            a,
            f"What is the {n}th Fibonacci number, with F(1) = F(2) = 1? Give all its digits.",
        )
    path.record("python", code=code)
    return Spec(question, answer, ["python"], "number")


FAMILY_BUILDERS: dict[str, Callable[[random.Random, Path, _Company], Spec]] = {
    "db_lookup": db_lookup,
    "db_aggregate": db_aggregate,
    "db_join": db_join,
    "convert": convert_family,
    "calc_chain": calc_chain,
    "convert_calc": convert_calc,
    "python": python_family,
}
# Offered alongside the needed tools so the model must pick the right one; none can replace them.
_DISTRACTORS = {
    "db_lookup": ["calculate", "convert"],
    "db_aggregate": ["convert", "calculate"],
    "db_join": ["convert", "calculate"],
    "convert": ["lookup_employee", "sql"],
    "calc_chain": ["lookup_employee", "sql"],
    "convert_calc": ["lookup_employee"],
    "python": [],
}


def format_answer(value: Any, answer_type: str) -> str:
    """Answers are stored as strings so a column of them is one Arrow type."""
    if answer_type == "number" and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if answer_type == "number" and isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


class TaskGenerator:
    """``index -> row`` for the chosen families, interleaved: row ``i`` has family ``i % len(families)``."""

    def __init__(self, families: Sequence[str] = FAMILIES, seed: int = 0) -> None:
        unknown = [f for f in families if f not in FAMILY_BUILDERS]
        if unknown or not families:
            raise ValueError(
                f"unknown tool-use task families {unknown}; choose from {', '.join(ALL_FAMILIES)}"
            )
        self.families = tuple(families)
        self.seed = seed
        self._db = CompanyDatabase()
        self._company = _Company(self._db)
        self._toolbox = Toolbox(builtin_tools(self._db, PythonTool()))

    def __call__(self, index: int) -> dict[str, Any]:
        family = self.families[index % len(self.families)]
        # A string seed is hashed with SHA-512 by ``random``: stable across runs and platforms.
        rng = random.Random(f"sdpo-tooluse:{self.seed}:{index}")
        path = Path(self._toolbox)
        spec = FAMILY_BUILDERS[family](rng, path, self._company)
        distractors = rng.sample(_DISTRACTORS[family], min(1, len(_DISTRACTORS[family])))
        tools = [*spec.needed, *distractors]
        rng.shuffle(tools)
        return {
            "task_id": f"tooluse/{family}/{self.seed}/{index}",
            "family": family,
            "question": spec.question,
            "tools": tools,
            "required_tools": list(spec.needed),
            "reference_calls": path.calls,
            "answer": format_answer(spec.answer, spec.answer_type),
            "answer_type": spec.answer_type,
            "tolerance": spec.tolerance,
        }


def procedural_tasks(
    families: str | None = None, *, seed: int = 0, size: int = 10_000
) -> ProceduralTaskSource:
    """Built-in set ``"procedural"`` (default families) or ``"procedural:db_join,convert"``, ``"procedural:all"``."""
    if families is None:
        chosen: tuple[str, ...] = FAMILIES
    elif families.strip() == "all":
        chosen = ALL_FAMILIES
    else:
        chosen = tuple(f.strip() for f in families.split(",") if f.strip())
    generator = TaskGenerator(chosen, seed=seed)
    return ProceduralTaskSource(
        generator, size=size, name=f"tooluse-procedural-{'+'.join(chosen)}-seed{seed}"
    )
