"""Issue 17 item 3: `tracker report quality` on a small clinic whose figures can be worked out by hand, its
HTML file parsed (html.parser) with well-formed SVG charts (xml.etree), and its refusals."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from freezegun import freeze_time

from tests.conftest import Tracker, dump_database, record_panels
from tests.web_clinic import query

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def clinic(tracker) -> Tracker:
    """Two patients on methotrexate from 2024-01-01 (lab draws due 01-15, 01-29, 02-12, 03-12, 04-12, ...;
    a week-12 checkpoint due 03-25):
    - P001: the 01-15 draw taken that day (on time); the 02-12 one taken 02-10 (early: on time); the 01-29 one
      never (open); the 03-12 one taken 03-25 (13 days late); assessed at the start and on 03-30 (checkpoint
      judged 5 days after its date, within its 14-day window);
    - P002: no draw ever taken; the course stopped on 02-15 (its later items cancelled).
    Alerts: the overdue alerts the evaluations raise; one acknowledged the day after it was raised."""
    with freeze_time("2024-01-01"):
        tracker("patient add P001 --name 'Ann Lee' --dob 1980-05-01 --sex f --childbearing-potential no")
        tracker("patient add P002 --name 'Bob Ray' --dob 1970-05-01 --sex m")
        tracker("therapy start P001 MTX --on 2024-01-01 --dose '15 mg weekly'")
        tracker("therapy start P002 MTX --on 2024-01-01 --dose '15 mg weekly'")
        tracker("assess P001 --on 2024-01-01 --easi 20")
    with freeze_time("2024-01-16"):
        record_panels(tracker, "P001", "2024-01-15", "cbc", "cmp")
    with freeze_time("2024-02-10"):
        record_panels(tracker, "P001", "2024-02-10", "cbc", "cmp")
        tracker("evaluate")
    with freeze_time("2024-02-11"):
        tracker.alert = query(tracker.db, "SELECT id FROM alert WHERE raised_on = '2024-02-10' ORDER BY id")[0][0]
        tracker(f"alert ack {tracker.alert} --note 'bloods booked'")
    with freeze_time("2024-02-15"):
        tracker("therapy stop P002 methotrexate --on 2024-02-15 --reason other")
    with freeze_time("2024-03-26"):
        record_panels(tracker, "P001", "2024-03-25", "cbc", "cmp")
    with freeze_time("2024-03-31"):
        tracker("assess P001 --on 2024-03-30 --easi 4")
        tracker("evaluate")
    return tracker


def report(tracker, *args, day="2024-04-02"):
    with freeze_time(day):
        return tracker.json(["report", "quality", "--from", "2024-01-01", "--to", "2024-03-31", *args])


def test_draws_checkpoints_and_forecast_worked_out_by_hand(clinic):
    data = report(clinic)
    assert data["from"] == "2024-01-01" and data["to"] == "2024-03-31" and data["drug"] is None
    assert data["windows"] == {"overdue_grace_days": 7, "checkpoint_window_days": 14, "ack_within_days": 2,
                               # the grace period too: no source gives one (A10)
                               "clinic_default": ["overdue_grace_days", "checkpoint_window_days", "ack_within_days"]}
    draws = data["clinic"]["draws"]
    # P001: 01-15 and 02-12 on time, 03-12 late (13 days), 01-29 open (62 days on 03-31);
    # P002: 01-15, 01-29, 02-12 open (76, 62, 48 days); its 03-12 draw was cancelled by the stop.
    assert draws == {"draws": 7, "on_time": 2, "late": 1, "open_late": 4, "pending": 0, "overdue": 4,
                     "on_time_share": 2 / 7, "median_days_late_done": 13.0, "median_days_late_open": 62.0}
    assert [g["name"] for g in data["drugs"]] == ["methotrexate"] and data["drugs"][0]["draws"] == draws
    # P001's week-12 checkpoint (03-25) judged on the 03-30 assessment; P002's was cancelled with the course.
    assert data["clinic"]["checkpoints"] == {"checkpoints": 1, "on_time": 1, "late": 0, "missed": 0, "pending": 0,
                                             "on_time_share": 1.0}
    # The 12 weeks from 04-01: P001's planned draws 04-12 (week 2) and 05-12 (week 6); P002 has none.
    weeks = data["forecast"]
    assert len(weeks) == 12 and weeks[0] == {"start": "2024-04-01", "end": "2024-04-07", "draws": 0, "by_drug": {}}
    assert [w["draws"] for w in weeks] == [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert weeks[1]["by_drug"] == {"methotrexate": 1}


def test_alerts_acknowledged_within_the_clinic_default(clinic, tmp_path):
    data = report(clinic)
    alerts = data["clinic"]["alerts"]
    raised = query(clinic.db, "SELECT id, raised_on, status, resolution FROM alert "
                              "WHERE raised_on BETWEEN '2024-01-01' AND '2024-03-31'")
    assert alerts["alerts"] == len(raised) > 1
    assert alerts["in_time"] == 1  # the one acknowledged the next day
    # Every other alert stayed unanswered: P002's were resolved by the stop only after two days had passed.
    assert alerts["unanswered"] + alerts["pending"] + alerts["closed_by_system"] == len(raised) - 1
    assert alerts["late"] == 0 and alerts["in_time_share"] == 1 / (1 + alerts["unanswered"])
    # As of the day it was raised, the alert acknowledged the next day was still pending.
    with freeze_time("2024-04-02"):
        same_day = clinic.json("report quality --from 2024-02-10 --to 2024-02-10")["clinic"]["alerts"]
    assert same_day["in_time"] == 0 and same_day["pending"] >= 1
    # A stricter clinic: acknowledged after zero days allowed is late.
    config = str(tmp_path / "strict.toml")
    with open(config, "w") as fh:
        fh.write("[alerts]\nack_within_days = 0\n")
    with freeze_time("2024-04-02"):
        strict = clinic.json(["--config", config, "report", "quality", "--from", "2024-01-01", "--to", "2024-03-31"])
    assert strict["clinic"]["alerts"]["in_time"] == 0 and strict["clinic"]["alerts"]["late"] == 1
    assert strict["windows"]["ack_within_days"] == 0


def test_figures_are_as_of_the_last_day(clinic):
    with freeze_time("2024-04-02"):
        data = clinic.json("report quality --from 2024-01-01 --to 2024-03-20")
    draws = data["clinic"]["draws"]
    # On 03-20 P001's 03-12 draw (taken 03-25) was still open, 8 days after its due date: past its window.
    assert (draws["on_time"], draws["late"], draws["open_late"]) == (2, 0, 5)
    assert data["clinic"]["checkpoints"]["checkpoints"] == 0  # due 03-25: after the period


def test_drug_filter_and_text_output(clinic):
    assert report(clinic, "--drug", "mtx")["drug"] == "methotrexate"
    empty = report(clinic, "--drug", "dupilumab")
    assert empty["clinic"]["draws"]["draws"] == 0 and empty["clinic"]["draws"]["on_time_share"] is None
    assert [g["name"] for g in empty["drugs"]] == ["dupilumab"]
    with freeze_time("2024-04-02"):
        text = clinic("report quality --from 2024-01-01 --to 2024-03-31").stdout
    assert "Monitoring quality 2024-01-01 to 2024-03-31: lab draws" in text
    row = next(line for line in text.splitlines() if line.startswith("whole clinic"))
    assert row.split()[2:] == ["7", "29%", "(2)", "1", "(13", "d)", "4", "(62", "d)", "4"]
    assert "(clinic default)" in text and "2024-04-08 to 2024-04-14" in text


class Page(HTMLParser):
    """What the report's HTML holds: tags seen, external references, the SVG documents' text, table cells."""

    def __init__(self, text: str):
        super().__init__()
        self.tags, self.external, self.cells, self.headings = [], [], [], []
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.external.append(value)
        if tag in ("td", "th", "h1", "h2"):
            self._in = tag
            self.cells.append("") if tag in ("td", "th") else self.headings.append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in in ("td", "th"):
            self.cells[-1] += data
        elif self._in in ("h1", "h2"):
            self.headings[-1] += data


def svgs(text: str) -> list[ET.Element]:
    """Each <svg>...</svg> in the page parsed as XML on its own: well-formed, or ParseError."""
    out, at = [], 0
    while (start := text.find("<svg", at)) != -1:
        end = text.index("</svg>", start) + len("</svg>")
        out.append(ET.fromstring(text[start:end]))
        at = end
    return out


def test_html_file_is_self_contained_with_accessible_svg_charts(clinic, tmp_path):
    target = tmp_path / "quality.html"
    with freeze_time("2024-04-02"):
        out = clinic(f"report quality --from 2024-01-01 --to 2024-03-31 --html {target}").stdout
    assert str(target) in out
    assert target.stat().st_mode & 0o077 == 0  # created private, as every file tracker writes
    text = target.read_text(encoding="utf-8")
    page = Page(text)
    assert page.external == [] and "link" not in page.tags and "script" not in page.tags  # nothing fetched
    assert "style" in page.tags and "@media print" in text
    assert "Monitoring quality, 2024-01-01 to 2024-03-31" in page.headings
    assert "whole clinic" in page.cells and "29% (2)" in page.cells and "(clinic default)" in text
    charts = svgs(text)
    assert len(charts) == 2
    share, forecast = charts
    for chart in charts:
        assert chart.tag == SVG + "svg" and chart.get("role") == "img"
        assert chart.find(SVG + "title").text and chart.find(SVG + "desc").text
    share_labels = [t.text for t in share.iter(SVG + "text")]
    assert "methotrexate" in share_labels and "whole clinic" in share_labels
    assert "29% (2 of 7)" in share_labels  # the figure as text on the bar, not colour alone
    assert "whole clinic 29%" in share.find(SVG + "desc").text
    bars = [r for r in forecast.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    assert len(bars) == 12 and [r.find(SVG + "title").text for r in bars][:2] == [
        "week of 2024-04-01: 0 draws", "week of 2024-04-08: 1 draw"]
    assert [t.text for t in forecast.iter(SVG + "text")].count("1") == 3  # the axis's top and two bars


def test_bad_input_is_refused_in_one_line_and_writes_nothing(clinic, tmp_path):
    before = dump_database(clinic.db)
    target = tmp_path / "q.html"
    cases = [
        (["--from", "2024-02-30", "--to", "2024-03-31"], "from: '2024-02-30'"),
        (["--from", "yesterday", "--to", "2024-03-31"], "from: 'yesterday'"),
        (["--from", "2024-03-01", "--to", "2024-02-01"], "from: '2024-03-01': is after --to 2024-02-01"),
        (["--from", "2024-03-01", "--to", "2024-04-03"], "to: '2024-04-03': is after today (2024-04-02)"),
        (["--from", "2024-03-01", "--to", "2024-03-31", "--drug", "aspirin"], "drug: 'aspirin'"),
        (["--from", "2024-03-01", "--to", "2024-03-31", "--json", "--html", str(target)], "give --json or --html"),
        (["--from", "2024-03-01", "--to", "2024-03-31", "--html", str(tmp_path / "no" / "q.html")],
         "html: '" + str(tmp_path / "no" / "q.html") + "': No such file or directory"),
    ]
    for args, says in cases:
        with freeze_time("2024-04-02"):
            result = clinic(["report", "quality", *args], ok=False)
        assert result.exit_code in (2, 3), (args, result.exit_code)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (args, result.stderr)
        assert result.stdout == ""
    with freeze_time("2024-04-02"):
        missing = clinic("report quality --from 2024-03-01", ok=False)
    assert missing.exit_code == 2 and "--to" in missing.stderr
    assert not target.exists()
    assert dump_database(clinic.db) == before
