"""The ``convert`` tool: unit conversions within one physical quantity."""

from __future__ import annotations

from .tools import ToolError

# unit -> (quantity, factor to the quantity's base unit); temperatures are affine, handled apart.
UNITS: dict[str, tuple[str, float]] = {
    "m": ("length", 1.0),
    "km": ("length", 1000.0),
    "cm": ("length", 0.01),
    "mm": ("length", 0.001),
    "mi": ("length", 1609.344),
    "yd": ("length", 0.9144),
    "ft": ("length", 0.3048),
    "in": ("length", 0.0254),
    "kg": ("mass", 1.0),
    "g": ("mass", 0.001),
    "lb": ("mass", 0.45359237),
    "oz": ("mass", 0.028349523125),
    "t": ("mass", 1000.0),
    "l": ("volume", 1.0),
    "ml": ("volume", 0.001),
    "gal": ("volume", 3.785411784),
    "qt": ("volume", 0.946352946),
    "cup": ("volume", 0.2365882365),
    "s": ("time", 1.0),
    "min": ("time", 60.0),
    "h": ("time", 3600.0),
    "day": ("time", 86400.0),
    "week": ("time", 604800.0),
    "m/s": ("speed", 1.0),
    "km/h": ("speed", 1000.0 / 3600.0),
    "mph": ("speed", 1609.344 / 3600.0),
    "kn": ("speed", 1852.0 / 3600.0),
    "m2": ("area", 1.0),
    "km2": ("area", 1e6),
    "ft2": ("area", 0.09290304),
    "acre": ("area", 4046.8564224),
    "ha": ("area", 10000.0),
    "C": ("temperature", 1.0),
    "F": ("temperature", 1.0),
    "K": ("temperature", 1.0),
}

UNIT_NAMES = {
    "m": "metres",
    "km": "kilometres",
    "cm": "centimetres",
    "mm": "millimetres",
    "mi": "miles",
    "yd": "yards",
    "ft": "feet",
    "in": "inches",
    "kg": "kilograms",
    "g": "grams",
    "lb": "pounds",
    "oz": "ounces",
    "t": "tonnes",
    "l": "litres",
    "ml": "millilitres",
    "gal": "US gallons",
    "qt": "US quarts",
    "cup": "US cups",
    "s": "seconds",
    "min": "minutes",
    "h": "hours",
    "day": "days",
    "week": "weeks",
    "m/s": "metres per second",
    "km/h": "kilometres per hour",
    "mph": "miles per hour",
    "kn": "knots",
    "m2": "square metres",
    "km2": "square kilometres",
    "ft2": "square feet",
    "acre": "acres",
    "ha": "hectares",
    "C": "degrees Celsius",
    "F": "degrees Fahrenheit",
    "K": "kelvin",
}


def _to_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value + 273.15
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0 + 273.15
    return value


def _from_kelvin(value: float, unit: str) -> float:
    if unit == "C":
        return value - 273.15
    if unit == "F":
        return (value - 273.15) * 9.0 / 5.0 + 32.0
    return value


def convert_value(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, to 10 significant digits."""
    for unit in (from_unit, to_unit):
        if unit not in UNITS:
            raise ToolError(f"unknown unit {unit!r}")
    (quantity, factor_from), (to_quantity, factor_to) = UNITS[from_unit], UNITS[to_unit]
    if quantity != to_quantity:
        raise ToolError(f"cannot convert {quantity} ({from_unit}) to {to_quantity} ({to_unit})")
    if quantity == "temperature":
        result = _from_kelvin(_to_kelvin(value, from_unit), to_unit)
    else:
        result = value * factor_from / factor_to
    return float(f"{result:.10g}")


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert a quantity from one unit to another unit of the same kind (length, mass, volume, time, speed, area, temperature).

    Args:
        value: The amount to convert.
        from_unit: The unit of the amount (choices: ["m", "km", "cm", "mm", "mi", "yd", "ft", "in", "kg", "g", "lb", "oz", "t", "l", "ml", "gal", "qt", "cup", "s", "min", "h", "day", "week", "m/s", "km/h", "mph", "kn", "m2", "km2", "ft2", "acre", "ha", "C", "F", "K"])
        to_unit: The unit to convert to (choices: ["m", "km", "cm", "mm", "mi", "yd", "ft", "in", "kg", "g", "lb", "oz", "t", "l", "ml", "gal", "qt", "cup", "s", "min", "h", "day", "week", "m/s", "km/h", "mph", "kn", "m2", "km2", "ft2", "acre", "ha", "C", "F", "K"])
    """
    return convert_value(value, from_unit, to_unit)
