"""Shared option types and decorators."""

from __future__ import annotations

import click


class DateType(click.ParamType):
    """An ISO date; a bad one is a one-line InputError naming the option."""

    name = "DATE"

    def convert(self, value, param, ctx):
        from tracker.core.durations import parse_date
        from tracker.core.inputs import bounded_date

        # Name the field as the user typed it (--as-of -> "as-of").
        field = _field(param, "date")
        return bounded_date(parse_date(value, field), field)


DATE = DateType()


def _field(param, default: str) -> str:
    return param.opts[0].lstrip("-") if param and param.opts else (param.name if param else default)


class NumberType(click.ParamType):
    """A plain, finite decimal number (no `nan`, `inf`, `1e309` or `7_0`); a bad one is a one-line
    InputError naming the option. Ranges are checked where the value is used."""

    name = "NUMBER"

    def convert(self, value, param, ctx):
        from tracker.core.inputs import finite_number

        return finite_number(value, _field(param, "number"))


NUMBER = NumberType()

# A row id as the databases store it (64-bit): a larger one was an OverflowError traceback (fuzz).
ROW_ID = click.IntRange(1, 2**63 - 1)


class NumberRange(NumberType):
    """NUMBER within [low, high]: click's FloatRange lets `nan` through (every comparison with it is false)."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        from tracker.core.inputs import finite_number

        return finite_number(value, _field(param, "number"), low=self.low, high=self.high)


def json_option(fn):
    """--json on a listing: a JSON array (tests/test_terminal_output.py checks each command's help against
    what it prints)."""
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON array to stdout.")(fn)


def json_object_option(fn):
    """--json on a command that shows one thing: a JSON object."""
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON object to stdout.")(fn)


def as_of_option(fn):
    return click.option("--as-of", type=DATE, help="Evaluate as of this date (default: today).")(fn)
