"""The built-in tools every ``ToolUseEnv`` offers, bound to that env's database and sandbox."""

from __future__ import annotations

from .calculator import calculate
from .database import CompanyDatabase
from .python_tool import PythonTool
from .tools import Tool
from .units import convert

BUILTIN_TOOL_NAMES = ("sql", "lookup_employee", "convert", "calculate", "python")


def builtin_tools(database: CompanyDatabase, python_tool: PythonTool) -> list[Tool]:
    return [
        Tool.from_function(database.sql),
        Tool.from_function(database.lookup_employee),
        Tool.from_function(convert),
        Tool.from_function(calculate),
        Tool.from_function(python_tool.python),
    ]
