"""Shared option types and decorators."""

from __future__ import annotations

import click


class DateType(click.ParamType):
    """An ISO date; a bad one is a one-line InputError naming the option."""

    name = "DATE"

    def convert(self, value, param, ctx):
        from tracker.core.durations import parse_date

        # Name the field as the user typed it (--as-of -> "as-of").
        field = param.opts[0].lstrip("-") if param and param.opts else "date"
        return parse_date(value, field)


DATE = DateType()


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON array to stdout.")(fn)


def as_of_option(fn):
    return click.option("--as-of", type=DATE, help="Evaluate as of this date (default: today).")(fn)
