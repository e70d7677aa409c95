"""tracker report quality"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE


@click.group()
def report() -> None:
    """Reports over the clinic's monitoring (for clinical audit and planning)."""


@report.command("quality")
@click.option("--from", "start", type=DATE, required=True, help="First day of the period (items due, alerts raised).")
@click.option("--to", "end", type=DATE, required=True,
              help="Last day of the period, at most today; every figure is as it stood on this day.")
@click.option("--drug", help="Only this drug's draws, checkpoints and alerts (a protocol id, name or alias).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object to stdout: from, to, drug, windows (the "
              "settings used; clinic_default names those no source gives), clinic and drugs (per group: draws, "
              "checkpoints, alerts), forecast (the 12 weeks after --to).")
@click.option("--html", "out", type=click.Path(dir_okay=False, writable=True),
              help="Write the report with its charts as one self-contained HTML file (to mail or print).")
@pass_app
def quality(app, start, end, drug, as_json, out):
    """Monitoring quality over a period: per drug and for the whole clinic, the share of draws done within
    their window (due date + [alerts] overdue_grace_days), median days late, overdue counts, checkpoints
    judged on time, alerts acknowledged within [alerts] ack_within_days (clinic default), and the draws
    planned in each of the 12 weeks after --to."""
    from tracker.errors import InputError
    from tracker.services.quality import quality as build, report_json

    if as_json and out:
        raise InputError("html", out, "give --json or --html, not both")
    with app.clinic(write=False) as clinic:
        data = report_json(build(clinic, start, end, drug))
    if as_json:
        from tracker.cli.render import emit_json

        emit_json(data)
    elif out:
        from tracker.private_files import open_private
        from tracker.web.quality import standalone_html

        page = standalone_html(data)
        try:
            with open_private(out, "w", encoding="utf-8") as fh:
                fh.write(page)
        except OSError as exc:  # a missing directory, a full disk: one line naming the option
            raise InputError("html", out, exc.strerror or str(exc)) from None
        click.echo(f"Wrote {out} (monitoring quality {data['from']} to {data['to']}).")
    else:
        show(data)


def _pct(share) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def _days(value) -> str:
    return "-" if value is None else f"{value:g}"


def show(data: dict) -> None:
    from tracker.cli.render import say, table

    windows = data["windows"]

    def marked(key: str) -> str:
        return f"{windows[key]} days{' (clinic default)' if key in windows['clinic_default'] else ''}"

    groups = [*data["drugs"], data["clinic"]]
    name = lambda g: "whole clinic" if g["name"] == "clinic" else g["name"]  # noqa: E731

    def late(count: int, median) -> str:
        return str(count) if median is None else f"{count} ({_days(median)} d)"

    title = f"Monitoring quality {data['from']} to {data['to']}" + (f" · {data['drug']}" if data["drug"] else "")
    table(["drug", "draws", "in window", "done late", "open late", "overdue"],
          [[name(g), str(d["draws"]), f"{_pct(d['on_time_share'])} ({d['on_time']})",
            late(d["late"], d["median_days_late_done"]), late(d["open_late"], d["median_days_late_open"]),
            str(d["overdue"])] for g in groups for d in [g["draws"]]],
          f"{title}: lab draws",
          legend=f"In window: taken by the due date + {marked('overdue_grace_days')}. Late: how many (median "
                 f"days after the due date). Open and overdue as on {data['to']}.")
    table(["drug", "checkpoints", "on time", "late", "missed"],
          [[name(g), str(c["checkpoints"]), f"{_pct(c['on_time_share'])} ({c['on_time']})", str(c["late"]),
            str(c["missed"])] for g in groups for c in [g["checkpoints"]]],
          "Checkpoints", legend=f"On time: judged on an assessment by its date + {marked('checkpoint_window_days')}.")
    table(["drug", "alerts", "in time", "late", "unanswered", "closed"],
          [[name(g), str(a["alerts"]), f"{_pct(a['in_time_share'])} ({a['in_time']})", str(a["late"]),
            str(a["unanswered"]), str(a["closed_by_system"])] for g in groups for a in [g["alerts"]]],
          "Alerts", legend=f"In time: acknowledged (or resolved by hand) within {marked('ack_within_days')}; "
                           f"closed: the system resolved it before anyone had to.")
    table(["week", "draws", "by drug"],
          [[f"{w['start']} to {w['end']}", str(w["draws"]),
            ", ".join(f"{d} {n}" for d, n in w["by_drug"].items())] for w in data["forecast"]],
          f"Draws planned, the {len(data['forecast'])} weeks after {data['to']}")
    say("Cancelled items and a stopped course's later items are left out; shares are of decided items.")


COMMANDS = [report]
