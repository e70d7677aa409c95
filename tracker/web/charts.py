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
    out += _series(points, x, y, "")
    out.append("</svg>")
    return "".join(out)


def _series(points, x, y, name: str) -> list[str]:
    """The measured values as a line through dots, each dot titled with its date and value."""
    out = []
    if len(points) > 1:
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in points)
        out.append(f'<polyline points="{coords}" fill="none" stroke="#1f4e8c" stroke-width="2"/>')
    for d, v in points:
        out.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3.5" fill="#1f4e8c">'
                   f'<title>{d.isoformat()}: {name + " " if name else ""}{v:g}</title></circle>')
    return out


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


# --- EASI / DLQI over time against the checkpoint targets ------------------------------------------------

RESPONSE_MEASURES = ("easi", "dlqi")  # the measures the checkpoints mostly read; others are in the table


def response_svg(measure_name: str, points: list[tuple[dt.date, float]], targets: list, baselines: list) -> str:
    """One measure's assessments over time (line and points), each checkpoint's target as a dashed line from
    the course's start (its baseline) to the checkpoint date, the checkpoint date marked by a vertical line.
    `targets`: core TargetLine; `baselines`: (course start, drug). Accessible: role img, title and desc."""
    days = [d for d, _ in points] + [t.due for t in targets] + [d for d, _ in baselines]
    values = [v for _, v in points] + [t.value for t in targets]
    first, last = min(days), max(days)
    span = max((last - first).days, 1)
    high = max(values) * 1.1 if values and max(values) > 0 else 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return LEFT + plot_w * ((day - first).days / span if len(set(days)) > 1 else 0.5)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / high)

    slug = measure_name.lower().replace(" ", "-")
    met = "; ".join(t.label for t in targets) or "no checkpoint target to draw"
    desc = (f"{len(points)} {measure_name} assessments from {first.isoformat()} to {last.isoformat()}"
            + (f", latest {points[-1][1]:g} on {points[-1][0].isoformat()}" if points else "") + f". Targets: {met}.")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" role="img" aria-labelledby="r-{slug}-title r-{slug}-desc">',
           f'<title id="r-{slug}-title">{escape(measure_name)} over time against the checkpoint targets</title>',
           f'<desc id="r-{slug}-desc">{escape(desc)}</desc>',
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>',
           f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" font-size="11">{high:.3g}</text>',
           f'<text x="{LEFT - 4}" y="{TOP + plot_h}" text-anchor="end" font-size="11">0</text>',
           f'<text x="12" y="{TOP + plot_h / 2:.0f}" font-size="11" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})" '
           f'text-anchor="middle">{escape(measure_name)}</text>',
           f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11">{first.isoformat()}</text>',
           f'<text x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end" font-size="11">{last.isoformat()}</text>']
    for start, drug in baselines:
        sx = x(start)
        out.append(f'<line x1="{sx:.1f}" x2="{sx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="#999">'
                   f'<title>{escape(drug)} started {start.isoformat()}</title></line>')
    for n, target in enumerate(targets):
        colour = "#a15c00" if target.partial else "#0a5c2a"
        cx, ty = x(target.due), y(target.value)
        out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{TOP}" y2="{TOP + plot_h}" stroke="{colour}" '
                   f'stroke-width="2"><title>{escape(target.drug)} week {target.week} checkpoint '
                   f'{target.due.isoformat()}</title></line>')
        out.append(f'<text x="{cx + 2:.1f}" y="{TOP + 10}" font-size="10" fill="{colour}">wk {target.week}</text>')
        start = next((s for s, d in baselines if d == target.drug), first)
        out.append(f'<line x1="{x(start):.1f}" x2="{cx:.1f}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{colour}" '
                   f'stroke-dasharray="6 4"><title>{escape(target.label)}</title></line>')
        out.append(f'<text x="{LEFT + plot_w + 4}" y="{ty + 4 + 11 * (n % 2):.1f}" font-size="10" fill="{colour}">'
                   f'{escape(target.label.split(" (")[0][:26])}</text>')
    out += _series(points, x, y, measure_name)
    out.append("</svg>")
    return "".join(out)


def response_charts(clinic, patient, courses: list[dict], calendar: list[dict]) -> list[dict]:
    """EASI and DLQI over time, each against its live courses' checkpoint targets (core/response_targets.py;
    the baseline is the one the checkpoint is judged from, core.response.choose_baseline): a chart per
    measure with an assessment or a target, {"measure", "svg", "targets", "points"}."""
    from sqlmodel import select

    from tracker.core.response import choose_baseline
    from tracker.core.response_targets import checkpoint_targets
    from tracker.core.terms import MEASURE_NAMES
    from tracker.db.tables import Assessment, Course
    from tracker.services.plan_sync import course_protocol

    assessments = clinic.session.exec(select(Assessment).where(Assessment.patient_id == patient.id)
                                      .order_by(Assessment.assessed_on, Assessment.id)).all()
    window = clinic.settings.alerts.baseline_window_days
    targets, starts = [], []
    for course in courses:
        if course["status"] == "stopped":
            continue
        row = clinic.session.get(Course, course["id"])
        protocol = course_protocol(clinic.session, clinic.library, row)
        if not protocol.checkpoints:
            continue
        due_of_week = {r["week"]: dt.date.fromisoformat(r["due"]) for r in calendar
                       if r["kind"] == "checkpoint" and course["drug"] in r["drugs"] and r["week"] is not None
                       and r["due"] >= course["start"]}
        baseline = choose_baseline(assessments, row.start_on, window)
        targets += checkpoint_targets(course["drug"], protocol, row.start_on, baseline, due_of_week)
        starts.append((row.start_on, course["drug"]))
    charts = []
    for measure in RESPONSE_MEASURES:
        points = [(a.assessed_on, float(getattr(a, measure))) for a in assessments if getattr(a, measure) is not None]
        mine = [t for t in targets if t.measure == measure]
        if not points and not mine:
            continue
        name = MEASURE_NAMES[measure]
        charts.append({"measure": name, "svg": response_svg(name, points, mine, starts), "targets": mine,
                       "points": points})
    return charts
