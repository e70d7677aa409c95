"""Issue 18 item 5: `result import` records set-shaped (services/results_bulk.py) and leaves the clinic as
`result add` one row at a time would: the same results, items completed the same way, the same alerts."""

from __future__ import annotations

import csv
import re

from freezegun import freeze_time
from sqlalchemy import MetaData, select

from tests.conftest import Tracker, fresh_db

HEADER = ["mrn", "test", "value", "unit", "taken_on", "ref_low", "ref_high"]
ROWS = [
    # M1: methotrexate since 2026-01-05: a partial draw, a critical ALT that a later normal one supersedes
    # (the same test twice: two rounds), then a whole CBC and CMP.
    ["M1", "wbc", "6.1", "", "2026-01-20", "", ""],
    ["M1", "neutrophils", "3.2", "10*9/L", "2026-01-20", "", ""],
    ["M1", "alt", "130", "U/L", "2026-02-01", "0", "40"],
    ["M1", "alt", "31", "", "2026-02-20", "", ""],
    ["M1", "wbc", "5.9", "", "2026-02-20", "", ""],
    ["M1", "neutrophils", "3500", "cells/uL", "2026-02-20", "", ""],
    ["M1", "lymphocytes", "1.7", "", "2026-02-20", "", ""],
    ["M1", "platelets", "240", "", "2026-02-20", "", ""],
    ["M1", "hb", "13.1", "g/dL", "2026-02-20", "", ""],
    ["M1", "creatinine", "0.9", "mg/dL", "2026-02-20", "", ""],
    ["M1", "albumin", "41", "", "2026-02-20", "", ""],
    # M2: no course; a screen result.
    ["M2", "tpmt", "normal", "", "2026-02-01", "", ""],
    # M3: methotrexate since 2026-02-02: low neutrophils (an alert), its baseline panel arriving by analyte.
    ["M3", "neutrophils", "0.8", "", "2026-02-16", "", ""],
    ["M3", "wbc", "3.0", "", "2026-02-16", "", ""],
    ["M3", "lymphocytes", "1.1", "", "2026-02-16", "", ""],
    ["M3", "platelets", "180", "", "2026-02-16", "", ""],
    ["M3", "hb", "121", "", "2026-02-16", "", ""],
    ["M3", "alt", "22", "", "2026-02-16", "", ""],
    ["M3", "creatinine", "70", "", "2026-02-16", "", ""],
    ["M3", "albumin", "39", "", "2026-02-16", "", ""],
    ["M3", "neutrophils", "1.9", "", "2026-02-27", "", ""],
    ["M1", "platelets", "230", "", "2026-02-27", "", ""],
]


def _clinic(db: str) -> Tracker:
    tracker = Tracker(db)
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker("patient add M2 --name 'Mia Test' --dob 1972-01-01")
    tracker("patient add M3 --name 'Mo Test' --dob 1980-05-05 --sex m")
    tracker("therapy start M1 methotrexate --on 2026-01-05")
    tracker("therapy start M3 methotrexate --on 2026-02-02")
    return tracker


def _state(db: str) -> dict:
    """Results, items and alerts, with result ids written as what the result is (ids differ by order)."""
    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        mrns = dict(conn.execute(select(meta.tables["patient"].c.id, meta.tables["patient"].c.mrn)).all())
        results = [r._asdict() for r in conn.execute(select(meta.tables["lab_result"])).all()]
        items = [r._asdict() for r in conn.execute(select(meta.tables["item"])).all()]
        alerts = [r._asdict() for r in conn.execute(select(meta.tables["alert"])).all()]
    engine.dispose()
    name = {r["id"]: f"{mrns[r['patient_id']]}/{r['test']}/{r['taken_on']}/{r['value_num'] or r['value_text']}"
            for r in results}

    def named(text):
        if text is None:
            return None
        text = re.sub(r"result #(\d+)", lambda m: f"result {name[int(m.group(1))]}", str(text))
        return re.sub(r"result(\d+)", lambda m: f"result:{name[int(m.group(1))]}", text)

    # changed_xid (PostgreSQL, migration 0021): the writing transaction's id, like created_at a fact of when
    skip = {"id", "created_at", "updated_at", "last_modified", "uid", "changed_xid"}
    return {
        "results": sorted((tuple((k, v) for k, v in r.items() if k not in skip) for r in results), key=repr),
        # (follow-up items are booked in another order, so under other ids)
        "items": sorted((tuple((k, named(v) if isinstance(v, str) else v) for k, v in i.items() if k not in skip)
                        for i in items), key=repr),
        "alerts": sorted((tuple((k, name.get(v) if k == "result_id" else named(v) if isinstance(v, str) else v)
                                for k, v in a.items() if k not in skip) for a in alerts), key=repr),
    }


@freeze_time("2026-03-02")
def test_an_import_leaves_the_clinic_as_result_add_row_by_row_would(db_url, tmp_path, migrated_template):
    path = tmp_path / "labs.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *ROWS])
    imported = _clinic(db_url)
    out = imported(["result", "import", str(path)]).stdout
    assert f"imported {len(ROWS)} results" in out

    one_by_one = _clinic(fresh_db(tmp_path, migrated_template, "one-by-one.db"))
    # In the import's order: oldest first, then as in the file.
    for _, row in sorted(enumerate(ROWS), key=lambda r: (r[1][4], r[0])):
        mrn, test, value, unit, taken_on, ref_low, ref_high = row
        args = ["result", "add", mrn, test, value, "--on", taken_on]
        args += ["--unit", unit] if unit else []
        args += ["--ref-low", ref_low] if ref_low else []
        args += ["--ref-high", ref_high] if ref_high else []
        one_by_one(args)

    got, want = _state(db_url), _state(one_by_one.db)
    assert got["results"] == want["results"]
    assert got["items"] == want["items"]
    # The same alerts, but for what recording a round at once does not go through (services/results_bulk.py):
    # an overdue alert about a partial draw that the same file then completes (one by one, it was raised on
    # the first analyte and resolved on the last; the import never raises it), and the missing-analyte note
    # such an alert's message took on the way. Every live alert is the same, field for field.
    def comparable(alert):
        alert = dict(alert)
        if alert["kind"] == "overdue" and alert["status"] == "resolved":
            alert["message"] = alert["message"].split(" (partial: ")[0]
        return alert

    imported_alerts, added_alerts = list(map(comparable, got["alerts"])), list(map(comparable, want["alerts"]))
    transient = [a for a in added_alerts if a not in imported_alerts]
    assert [a for a in imported_alerts if a not in added_alerts] == []
    assert transient and all(a["kind"] == "overdue" and a["status"] == "resolved" and a["raised_on"] == a["resolved_on"]
                             for a in transient), transient
    assert [a for a in got["alerts"] if dict(a)["status"] != "resolved"] == \
        [a for a in want["alerts"] if dict(a)["status"] != "resolved"]
    assert any(dict(a)["kind"] == "threshold" and dict(a)["severity"] == "critical" for a in got["alerts"])
    assert any(dict(i)["status"] == "done" for i in got["items"])
