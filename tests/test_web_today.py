"""Issue 17 item 1: the Today page's filters (drug, clinician, due from/to), its pages (50 rows a section,
page links, totals) and its printable list (every row of the filter), through starlette's TestClient on the
demo clinic; the sections' windows on plain data (core/today.py). Every form control has a label."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser

import pytest

from tests.test_web import csrf_of, make_client, sign_in, utc_today  # noqa: F401
from tests.web_clinic import copy_of, demo_clinic, query  # noqa: F401 (demo_clinic: a fixture, found by name)
from tracker.core.today import MAX_AHEAD_DAYS, today_windows
from tracker.errors import InputError

pytest.importorskip("starlette.testclient")
TODAY = dt.date(2026, 3, 2)


def test_windows_split_a_range_at_today():
    default = today_windows(TODAY)
    assert default.overdue.due_from is None and default.overdue.due_before == TODAY
    assert (default.due.due_from, default.due.due_before) == (TODAY, TODAY + dt.timedelta(days=8))
    past = today_windows(TODAY, dt.date(2026, 2, 1), dt.date(2026, 2, 10))
    assert (past.overdue.due_from, past.overdue.due_before, past.due) == (dt.date(2026, 2, 1),
                                                                           dt.date(2026, 2, 11), None)
    ahead = today_windows(TODAY, dt.date(2026, 3, 5), dt.date(2026, 3, 20))
    assert ahead.overdue is None and (ahead.due.due_from, ahead.due.due_before) == (dt.date(2026, 3, 5),
                                                                                    dt.date(2026, 3, 21))
    across = today_windows(TODAY, dt.date(2026, 2, 20), dt.date(2026, 3, 4))
    assert across.overdue.due_before == TODAY and across.due.due_from == TODAY
    with pytest.raises(InputError, match="from: '2026-03-05': is after --to 2026-03-01"):
        today_windows(TODAY, dt.date(2026, 3, 5), dt.date(2026, 3, 1))
    with pytest.raises(InputError, match="^to: "):
        today_windows(TODAY, None, TODAY + dt.timedelta(days=MAX_AHEAD_DAYS + 1))


@pytest.fixture
def client_db(request, tmp_path):
    db = copy_of(request.getfixturevalue("demo_clinic"), tmp_path)
    client = make_client(db)
    sign_in(client)
    return client, db


def section_count(html: str, section: str) -> int:
    return int(re.search(rf'<h2 id="h-{section}">[^<]*\((\d+)\)</h2>', html).group(1))


def listed_patient_ids(html: str, section: str) -> list[int]:
    body = html.split(f'<h2 id="h-{section}">')[1].split("</section>")[0]
    return [int(i) for i in re.findall(r'href="/patients/(\d+)"', body)]


def test_clinician_filter_shows_only_their_patients(client_db):
    client, db = client_db
    page = client.get("/today")
    names = re.findall(r'<option value="(Dr [^"]+)"', page.text)
    assert len(names) > 1
    everyone = section_count(page.text, "overdue")
    counts = 0
    for name in names:
        mine = client.get("/today", params={"clinician": name})
        assert mine.status_code == 200 and f"· {name}</h1>" in mine.text
        theirs = {r[0] for r in query(db, "SELECT id FROM patient WHERE clinician = :c", c=name)}
        assert set(listed_patient_ids(mine.text, "overdue")) <= theirs
        assert set(listed_patient_ids(mine.text, "alerts")) <= theirs
        counts += section_count(mine.text, "overdue")
    assert counts == everyone  # every demo patient has one clinician
    refused = client.get("/today", params={"clinician": "Dr Nobody"})
    assert refused.status_code == 404 and "clinician: &#39;Dr Nobody&#39;: not found" in refused.text


def test_drug_and_date_filters(client_db):
    client, db = client_db
    today = utc_today()
    sql = ("SELECT count(*) FROM item i WHERE i.status = 'planned' AND i.kind IN ('baseline', 'lab', 'checkpoint') "
           "AND i.due >= :a AND i.due < :b")
    week_ago = today - dt.timedelta(days=7)
    page = client.get("/today", params={"from": week_ago.isoformat(), "to": (today - dt.timedelta(days=1)).isoformat()})
    assert page.status_code == 200
    assert section_count(page.text, "overdue") == query(db, sql, a=week_ago, b=today)[0][0]
    assert section_count(page.text, "due") == 0 and "Nothing due." in page.text
    ahead = client.get("/today", params={"from": today.isoformat(), "to": (today + dt.timedelta(days=30)).isoformat()})
    assert section_count(ahead.text, "overdue") == 0
    assert section_count(ahead.text, "due") == query(db, sql, a=today, b=today + dt.timedelta(days=31))[0][0]
    drug = query(db, "SELECT drug FROM item WHERE status = 'planned' AND due < :d GROUP BY drug "
                     "ORDER BY count(*) DESC LIMIT 1", d=today)[0][0]
    only = client.get("/today", params={"drug": drug})
    assert f"· {drug}</h1>" in only.text
    drugs_shown = re.findall(r'<span class="drug">([^<]*)</span>', only.text.split('id="h-overdue"')[1])
    assert drugs_shown and all(drug in shown.split(", ") for shown in drugs_shown)
    for params, words in (({"from": "soon"}, "from: &#39;soon&#39;: expected a date"),
                          ({"from": "2026-03-05", "to": "2026-03-01"}, "is after --to"),
                          ({"drug": "aspirin"}, "drug: &#39;aspirin&#39;: not found"),
                          ({"overdue_page": "0"}, "overdue_page: &#39;0&#39;: expected a page number")):
        response = client.get("/today", params=params)
        assert response.status_code in (400, 404) and words in response.text, (params, response.text[-400:])


@pytest.fixture(scope="module")
def busy_clinic(tmp_path_factory, migrated_template) -> str:
    """A synthetic clinic with more than a page of overdue tasks, and a staff account."""
    import shutil

    from tests.conftest import Tracker
    from tests.web_clinic import PASSWORD

    base = tmp_path_factory.mktemp("web-busy")
    (base / "empty.toml").write_text("")
    env = {"TRACKER_CONFIG": str(base / "empty.toml"), "TRACKER_DB": None, "TRACKER_SCHEDULES": None}
    db = str(base / "busy.db")
    shutil.copyfile(migrated_template, db)
    tracker = Tracker(db)
    tracker(["synth", "--patients", "500"], env=env)
    tracker(["user", "add", "nina", "--role", "clinician", "--password-stdin"], input=PASSWORD + "\n", env=env)
    return db


def test_sections_are_paged_with_totals_and_print_shows_every_row(busy_clinic, tmp_path):
    if "://" in busy_clinic:
        pytest.skip("SQLite synth clinic")
    db = copy_of(busy_clinic, tmp_path)
    client = make_client(db)
    sign_in(client)
    first = client.get("/today")
    total = section_count(first.text, "overdue")
    assert total > 50
    pages = -(-total // 50)
    assert f"page 1 of {pages}" in first.text
    seen = listed_patient_ids(first.text, "overdue")
    assert len(seen) == 50
    link = re.search(r'href="(/today\?overdue_page=2)"', first.text)
    assert link
    second = client.get(link.group(1).replace("&amp;", "&"))
    assert f"page 2 of {pages}" in second.text and section_count(second.text, "overdue") == total
    assert len(listed_patient_ids(second.text, "overdue")) == min(50, total - 50)
    last = client.get("/today", params={"overdue_page": str(pages + 5)})  # past the end: the last page
    assert f"page {pages} of {pages}" in last.text
    printed = client.get("/today", params={"print": "1"})
    assert len(listed_patient_ids(printed.text, "overdue")) == total and "page 1 of" not in printed.text
    # A filter is kept by the page links (and holds only filter values and page numbers: no MRN).
    name = query(db, "SELECT clinician FROM patient GROUP BY clinician ORDER BY count(*) DESC LIMIT 1")[0][0]
    filtered = client.get("/today", params={"clinician": name})
    links = set(re.findall(r'href="(/today\?[^"]+)"', filtered.text))
    assert links and all("clinician=" in link for link in links)
    assert not [link for link in links if "SYN" in link]


class Controls(HTMLParser):
    """Form controls and the ids that labels point at."""

    def __init__(self):
        super().__init__()
        self.controls, self.labelled = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "label" and attrs.get("for"):
            self.labelled.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in ("hidden", "submit"):
            self.controls.append(attrs)


def unlabelled(html: str) -> list[dict]:
    parser = Controls()
    parser.feed(html)
    return [c for c in parser.controls if c.get("id") not in parser.labelled and not c.get("aria-label")]


def test_every_form_control_is_labelled(client_db):
    client, db = client_db
    patient_id = query(db, "SELECT id FROM patient ORDER BY id LIMIT 1")[0][0]
    for path in ("/today", "/alerts", f"/patients/{patient_id}", "/login"):
        html = client.get(path).text
        assert unlabelled(html) == [], path


def test_a_partial_draw_is_listed_counted_and_filtered(tracker):
    """A draw with part of its panel in is in the Partial draws section (core: panels.item_state), under the
    drug and clinician filters that select it and no others."""
    from freezegun import freeze_time

    from tests.web_clinic import PASSWORD

    with freeze_time("2026-01-20"):
        tracker("patient add P1 --name 'Ann Lee' --dob 1970-01-01 --sex m --clinician 'Dr Rhea Stone'")
        tracker("patient add P2 --name 'Bob Ray' --dob 1970-01-01 --sex m --clinician 'Dr Sam Ode'")
        tracker("therapy start P1 methotrexate --on 2026-01-06")
        tracker("therapy start P2 dupilumab --on 2026-01-06")
        tracker("result add P1 neutrophils 3.5 --on 2026-01-20")  # the week-2 CBC and CMP: one analyte in
        tracker(["user", "add", "nina", "--role", "clinician", "--password-stdin"], input=PASSWORD + "\n")
    partial = query(tracker.db, "SELECT i.due, p.id FROM item i JOIN patient p ON p.id = i.patient_id "
                                "WHERE i.status = 'planned' AND i.received IS NOT NULL")
    assert partial and {patient for _, patient in partial} == {1}  # P1's baseline CBC and week-2 draw
    n, before = len(partial), len([due for due, _ in partial if str(due) < "2026-01-20"])
    with freeze_time("2026-01-22"):
        client = make_client(tracker.db)
        sign_in(client)
        for params, expected in (({}, n), ({"drug": "methotrexate"}, n), ({"drug": "dupilumab"}, 0),
                                 ({"clinician": "Dr Rhea Stone"}, n), ({"clinician": "Dr Sam Ode"}, 0),
                                 ({"from": "2026-01-21"}, 0), ({"to": "2026-01-19"}, before)):
            page = client.get("/today", params=params)
            assert page.status_code == 200 and section_count(page.text, "partial") == expected, params
        page = client.get("/today").text
        assert listed_patient_ids(page, "partial") == [1] * n
        section = page.split('<h2 id="h-partial">')[1].split("</section>")[0]
        assert '<span class="tag">partial</span>' in section and "still needed" in section
