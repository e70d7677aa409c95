"""Issue 17 item 3 in the web view: the Quality page through starlette's TestClient on the demo clinic, for
both roles, rendering the same service and partial as `tracker report quality --html`."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from tests.test_report_quality import Page, svgs
from tests.test_web import make_client, sign_in, utc_today
from tests.web_clinic import copy_of, demo_clinic, query  # noqa: F401 (demo_clinic: a fixture, found by name)

pytest.importorskip("starlette.testclient")


@pytest.fixture
def clinic_db(request, tmp_path) -> str:
    return copy_of(request.getfixturevalue("demo_clinic"), tmp_path)


def test_quality_page_needs_a_signed_in_user(clinic_db):
    client = make_client(clinic_db)
    response = client.get("/quality", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"


@pytest.mark.parametrize("name", ["nina", "rita"])  # clinician and read-only alike
def test_quality_page_shows_the_report_with_its_charts(clinic_db, name):
    client = make_client(clinic_db)
    assert sign_in(client, name=name).status_code == 303
    today = utc_today()
    start = today.replace(day=1).isoformat()
    page = client.get("/quality", params={"from": start, "to": today.isoformat()})
    assert page.status_code == 200
    assert 'href="/quality"' in page.text  # the nav links it
    parsed = Page(page.text)
    assert f"Monitoring quality, {start} to {today.isoformat()}" in parsed.headings
    assert "whole clinic" in parsed.cells
    charts = svgs(page.text)
    assert len(charts) == 2 and all(c.find("{http://www.w3.org/2000/svg}title") is not None for c in charts)
    # The figures are the CLI's: the same service, the same numbers.
    planned = query(clinic_db, "SELECT count(*) FROM item WHERE kind = 'lab' AND status != 'cancelled' "
                               "AND due BETWEEN :a AND :b", a=start, b=today.isoformat())[0][0]
    assert f"<td>{planned}</td>" in page.text or planned == 0
    assert client.get("/static/quality.css").status_code == 200


def test_quality_page_filters_by_drug_and_defaults_to_the_last_90_days(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    page = client.get("/quality")
    today = utc_today()
    assert page.status_code == 200
    assert f'value="{today.isoformat()}"' in page.text and "Monitoring quality, " in page.text
    only = client.get("/quality", params={"from": "2026-01-01", "to": today.isoformat(), "drug": "methotrexate"})
    assert only.status_code == 200 and "· methotrexate" in only.text
    rows = [c for c in Page(only.text).cells if c in ("dupilumab", "methotrexate")]
    assert set(rows) <= {"methotrexate"}


def test_quality_page_refuses_bad_dates_in_one_line(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    bad = client.get("/quality", params={"from": "2026-02-30", "to": "2026-03-01"})
    assert bad.status_code == 400 and 'class="error"' in bad.text
    assert "from: &#39;2026-02-30&#39;" in bad.text and "<svg" not in bad.text
    backwards = client.get("/quality", params={"from": "2026-03-01", "to": "2026-02-01"})
    assert backwards.status_code == 400 and "is after --to" in backwards.text


def test_the_html_file_and_the_page_share_the_partial(clinic_db, tmp_path):
    from tests.conftest import Tracker

    today = utc_today()
    target = tmp_path / "q.html"
    Tracker(clinic_db)(["report", "quality", "--from", "2026-01-01", "--to", today.isoformat(), "--html", str(target)])
    client = make_client(clinic_db)
    sign_in(client)
    page = client.get("/quality", params={"from": "2026-01-01", "to": today.isoformat()}).text
    mailed = target.read_text(encoding="utf-8")
    start, end = page.index('<section class="quality"'), page.rindex("</section>")
    assert page[start:end] in mailed
    for chart in svgs(mailed):
        ET.tostring(chart)  # well-formed (parsed by svgs)


def test_page_and_cli_give_the_same_figures(clinic_db):
    from tests.conftest import Tracker

    period = {"from": (utc_today() - dt.timedelta(days=180)).isoformat(), "to": utc_today().isoformat()}
    data = Tracker(clinic_db).json(["report", "quality", "--from", period["from"], "--to", period["to"]])
    client = make_client(clinic_db)
    sign_in(client)
    page = client.get("/quality", params=period).text
    draws = data["clinic"]["draws"]
    assert f"<td>{draws['draws']}</td>" in page and f"<td>{draws['open_late']}</td>" in page
