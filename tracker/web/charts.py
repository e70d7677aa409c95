"""A trend chart per analyte for the patient page: inline SVG drawn here on the server (no JavaScript),
with the limits of the patient's protocols drawn as dashed lines and labelled with the action."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 150, 16, 28
COLOURS = {"critical": "#b00020", "warning": "#a15c00", "info": "#335"}


@dataclass(frozen=True)
class Limit:
    value: float
    label: str  # e.g. "below 1.0: interrupt (methotrexate)"
    severity: str


def trend_svg(title: str, unit: str | None, points: list[tuple[dt.date, float]], limits: list[Limit]) -> str:
    """One analyte's results over time as an SVG line chart, the limits as dashed horizontal lines."""
    days = [d for d, _ in points]
    values = [v for _, v in points] + [lim.value for lim in limits]
    low, high = min(values), max(values)
    if high == low:
        low, high = low - 1, high + 1
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    first, last = min(days), max(days)
    span = max((last - first).days, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return LEFT + plot_w * ((day - first).days / span if len(days) > 1 else 0.5)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - low) / (high - low))

    label = escape(f"{title} ({unit})" if unit else title)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" role="img" aria-label="{label}: {len(points)} results">',
           f'<title>{label}</title>',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
           f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="11">{high:.4g}</text>',
           f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="11">{low:.4g}</text>',
           f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{first.isoformat()}</text>',
           f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">{last.isoformat()}</text>']
    for lim in limits:
        colour = COLOURS.get(lim.severity, "#333")
        ly = y(lim.value)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ly:.1f}" y2="{ly:.1f}" stroke="{colour}" '
                   f'stroke-dasharray="6 4"><title>{escape(lim.label)}</title></line>')
        out.append(f'<text x="{LEFT + plot_w + 4}" y="{ly + 4:.1f}" font-size="10" fill="{colour}">'
                   f'{escape(lim.label[:28])}</text>')
    coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in points)
    if len(points) > 1:
        out.append(f'<polyline points="{coords}" fill="none" stroke="#1f4e8c" stroke-width="2"/>')
    for d, v in points:
        out.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3.5" fill="#1f4e8c">'
                   f'<title>{d.isoformat()}: {v:g}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def protocol_limits(protocol, analyte: str, unit: str | None, ref_high: float | None, drug: str) -> list[Limit]:
    """The absolute limits a protocol sets on an analyte (below, above, and above N x ULN where the latest
    result gives its ULN); change-from-baseline and categorical rules have no line to draw."""
    out = []
    for rule in protocol.thresholds:
        if rule.analyte != analyte or (rule.unit is not None and unit is not None and rule.unit != unit):
            continue
        if rule.below is not None:
            value, words = rule.below, f"< {rule.below:g}"
        elif rule.above is not None:
            value, words = rule.above, f"> {rule.above:g}"
        elif rule.above_uln is not None and ref_high is not None:
            value, words = rule.above_uln * ref_high, f"> {rule.above_uln:g} x ULN"
        else:
            continue
        out.append(Limit(value, f"{words}: {rule.action} ({drug})", rule.severity))
    return out


def trend_charts(clinic, patient, results: list[dict], courses: list[dict]) -> list[dict]:
    """One chart per numeric analyte with at least one result: {"test", "svg"}."""
    from tracker.db.tables import Course
    from tracker.services.plan_sync import course_protocol

    protocols = []
    for course in courses:
        if course["status"] == "stopped":
            continue
        row = clinic.session.get(Course, course["id"])
        protocols.append((course["drug"], course_protocol(clinic.session, clinic.library, row)))
    by_test: dict[str, list[dict]] = {}
    for row in results:
        if isinstance(row["value"], (int, float)):
            by_test.setdefault(row["test"], []).append(row)
    charts = []
    for test in sorted(by_test):
        rows = sorted(by_test[test], key=lambda r: (r["taken_on"], r["id"]))
        unit = rows[-1]["unit"]
        ref_high = rows[-1]["ref_high"]
        limits = [lim for drug, protocol in protocols for lim in protocol_limits(protocol, test, unit, ref_high, drug)]
        points = [(dt.date.fromisoformat(r["taken_on"]), float(r["value"])) for r in rows]
        charts.append({"test": test, "svg": trend_svg(test, unit, points, limits), "limits": limits})
    return charts
