"""The monitoring-quality report as HTML: its two charts as hand-made inline SVG (as tracker/web/charts.py
draws the trend charts: no plotting library, no JavaScript) and the page partial `_quality.html` that both
the web view's Quality page and the self-contained file of `tracker report quality --html` render.

Charts are accessible without colour: each has a <title> and <desc>, every bar carries its figure as text,
and a bar for a group with nothing to judge says so in words."""

from __future__ import annotations

from html import escape
from importlib import resources

BAR_HEIGHT, BAR_GAP = 22, 8
SHARE_LEFT, SHARE_WIDTH, SHARE_RIGHT = 130, 300, 150
FORECAST_W, FORECAST_H = 640, 240
F_LEFT, F_RIGHT, F_TOP, F_BOTTOM = 44, 12, 24, 48
INK, BAR, MUTED = "#111", "#1f4e8c", "#666"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def on_time_chart(report: dict) -> str:
    """Horizontal bars: the share of draws done within their window, per drug and for the clinic."""
    groups = [*report["drugs"], report["clinic"]]
    height = 2 * BAR_GAP + len(groups) * (BAR_HEIGHT + BAR_GAP) + 20
    width = SHARE_LEFT + SHARE_WIDTH + SHARE_RIGHT
    parts = []
    for row, group in enumerate(groups):
        draws = group["draws"]
        y = BAR_GAP + row * (BAR_HEIGHT + BAR_GAP)
        decided = draws["on_time"] + draws["late"] + draws["open_late"]
        name = "whole clinic" if group["name"] == "clinic" else group["name"]
        weight = ' font-weight="bold"' if group["name"] == "clinic" else ""
        parts.append(f'<text x="{SHARE_LEFT - 6}" y="{y + BAR_HEIGHT - 6}" text-anchor="end" font-size="12" '
                     f'fill="{INK}"{weight}>{escape(name)}</text>')
        parts.append(f'<rect x="{SHARE_LEFT}" y="{y}" width="{SHARE_WIDTH}" height="{BAR_HEIGHT}" fill="none" '
                     f'stroke="#999"/>')
        if draws["on_time_share"] is None:
            words = "no draw decided yet"
        else:
            share = draws["on_time_share"]
            parts.append(f'<rect x="{SHARE_LEFT}" y="{y}" width="{SHARE_WIDTH * share:.1f}" height="{BAR_HEIGHT}" '
                         f'fill="{BAR}"><title>{escape(name)}: {_percent(share)} on time</title></rect>')
            words = f"{_percent(share)} ({draws['on_time']} of {decided})"
        parts.append(f'<text x="{SHARE_LEFT + SHARE_WIDTH + 6}" y="{y + BAR_HEIGHT - 6}" font-size="12" '
                     f'fill="{INK}">{escape(words)}</text>')
    axis_y = BAR_GAP + len(groups) * (BAR_HEIGHT + BAR_GAP) + 10
    for tick in (0, 50, 100):
        x = SHARE_LEFT + SHARE_WIDTH * tick / 100
        parts.append(f'<text x="{x:.0f}" y="{axis_y}" text-anchor="middle" font-size="10" fill="{MUTED}">'
                     f'{tick}%</text>')
    summary = "; ".join(
        f"{'whole clinic' if g['name'] == 'clinic' else g['name']} {_percent(g['draws']['on_time_share'])}"
        for g in groups)
    title = f"Draws done within their window, {report['from']} to {report['to']}"
    grace_default = " (clinic default)" if "overdue_grace_days" in report["windows"]["clinic_default"] else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-labelledby="share-title share-desc" class="quality-chart">'
            f'<title id="share-title">{escape(title)}</title>'
            f'<desc id="share-desc">Share of draws done within due date plus {report["windows"]["overdue_grace_days"]} '
            f'days grace{grace_default}, per drug: {escape(summary)}</desc>{"".join(parts)}</svg>')


def forecast_chart(report: dict) -> str:
    """Vertical bars: draws planned in each of the weeks after the period, each labelled with its count."""
    weeks = report["forecast"]
    plot_w, plot_h = FORECAST_W - F_LEFT - F_RIGHT, FORECAST_H - F_TOP - F_BOTTOM
    top = max([w["draws"] for w in weeks] + [1])
    slot = plot_w / max(len(weeks), 1)
    parts = [f'<line x1="{F_LEFT}" x2="{F_LEFT + plot_w}" y1="{F_TOP + plot_h}" y2="{F_TOP + plot_h}" '
             f'stroke="{MUTED}"/>',
             f'<text x="{F_LEFT - 4}" y="{F_TOP + 4}" text-anchor="end" font-size="10" fill="{MUTED}">{top}</text>',
             f'<text x="{F_LEFT - 4}" y="{F_TOP + plot_h}" text-anchor="end" font-size="10" fill="{MUTED}">0</text>']
    for index, week in enumerate(weeks):
        h = plot_h * week["draws"] / top
        x = F_LEFT + index * slot + slot * 0.15
        y = F_TOP + plot_h - h
        label = f"week of {week['start']}: {week['draws']} draw{'' if week['draws'] == 1 else 's'}"
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" fill="{BAR}">'
                     f'<title>{escape(label)}</title></rect>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle" font-size="11" '
                     f'fill="{INK}">{week["draws"]}</text>')
        parts.append(f'<text x="{x + slot * 0.35:.1f}" y="{F_TOP + plot_h + 14}" text-anchor="middle" '
                     f'font-size="10" fill="{INK}">{escape(week["start"][5:])}</text>')
    parts.append(f'<text x="{F_LEFT + plot_w / 2:.0f}" y="{FORECAST_H - 8}" text-anchor="middle" font-size="11" '
                 f'fill="{INK}">week starting (month-day)</text>')
    title = f"Draws planned per week, the {len(weeks)} weeks after {report['to']}"
    desc = "; ".join(f"{w['start']}: {w['draws']}" for w in weeks)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {FORECAST_W} {FORECAST_H}" width="{FORECAST_W}" '
            f'height="{FORECAST_H}" role="img" aria-labelledby="forecast-title forecast-desc" class="quality-chart">'
            f'<title id="forecast-title">{escape(title)}</title><desc id="forecast-desc">{escape(desc)}</desc>'
            f'{"".join(parts)}</svg>')


def charts(report: dict) -> dict:
    return {"on_time": on_time_chart(report), "forecast": forecast_chart(report)}


def _environment():
    import jinja2

    folder = resources.files("tracker.web") / "templates"
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True)


def standalone_html(report: dict) -> str:
    """The report as one self-contained HTML file (its style inline, its charts inline SVG, nothing fetched),
    to mail or print."""
    css = (resources.files("tracker.web") / "static" / "quality.css").read_text(encoding="utf-8")
    template = _environment().get_template("quality_report.html")
    return template.render(q=report, charts=charts(report), css=css)


DEFAULT_PERIOD_DAYS = 90  # the Quality page's period when none is asked for: the last quarter or so


def quality_view(web, user: str, params) -> tuple[int, dict]:
    """The Quality page for GET /quality?from=&to=&drug= (default: the last 90 days to today): its HTTP
    status and its template's context. A bad date or drug is the CLI's one-line refusal, shown on the page."""
    import datetime as dt

    from tracker.core.durations import parse_date
    from tracker.core.inputs import bounded_date
    from tracker.errors import TrackerError
    from tracker.services.quality import quality, report_json

    drug = params.get("drug") or None
    error, q, status = None, None, 200
    with web.clinic(user, write=False) as clinic:
        today = clinic.today
        drugs = [p.id for p in clinic.library]
        start_text = params.get("from") or (today - dt.timedelta(days=DEFAULT_PERIOD_DAYS)).isoformat()
        end_text = params.get("to") or today.isoformat()
        try:
            start = bounded_date(parse_date(start_text, "from"), "from")
            end = bounded_date(parse_date(end_text, "to"), "to")
            q = report_json(quality(clinic, start, end, drug))
        except TrackerError as exc:
            error, status = str(exc), 400
    return status, {"q": q, "charts": charts(q) if q else None, "start": start_text, "end": end_text,
                    "drug": drug, "drugs": drugs, "error": error}
