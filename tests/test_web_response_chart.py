"""Issue 17: EASI/DLQI over time against the checkpoint targets on the patient page: the targets as values
on plain data (core/response_targets.py), and the chart through the TestClient on a patient of our own
(EASI-50 at half the baseline, the DLQI reduction at baseline minus 4, the checkpoint date marked)."""

from __future__ import annotations

import datetime as dt
import re
from types import SimpleNamespace

import pytest

from tracker.core.protocol import Criterion
from tracker.core.response_targets import checkpoint_targets, target_value
from tracker.protocol_files import library


def test_target_values_on_the_measure_scale():
    baseline = SimpleNamespace(easi=30.0, dlqi=12, iga=3)
    assert target_value(Criterion(measure="easi", improvement_pct=50), baseline) == 15.0
    assert target_value(Criterion(measure="easi", improvement_pct=75), baseline) == pytest.approx(7.5)
    assert target_value(Criterion(measure="dlqi", reduction=4), baseline) == 8
    assert target_value(Criterion(measure="dlqi", reduction=4), SimpleNamespace(easi=3, dlqi=2)) == 0.0
    assert target_value(Criterion(measure="iga", at_most=1), None) == 1.0  # needs no baseline
    assert target_value(Criterion(measure="easi", improvement_pct=50), None) is None
    assert target_value(Criterion(measure="easi", improvement_pct=50), SimpleNamespace(easi=None)) is None


def test_checkpoint_targets_at_the_planned_date():
    dupilumab = library(None).protocols["dupilumab"]
    start = dt.date(2026, 1, 6)
    lines = checkpoint_targets("dupilumab", dupilumab, start, SimpleNamespace(easi=24.0, dlqi=15))
    assert [(t.measure, t.value, t.week, t.due) for t in lines] == [
        ("easi", 12.0, 16, start + dt.timedelta(weeks=16)), ("dlqi", 11.0, 16, start + dt.timedelta(weeks=16))]
    assert lines[0].label.startswith("EASI-50 (dupilumab week 16): 12")
    paused = checkpoint_targets("dupilumab", dupilumab, start, SimpleNamespace(easi=24.0, dlqi=None),
                                {16: dt.date(2026, 5, 12)})
    assert [(t.measure, t.due) for t in paused] == [("easi", dt.date(2026, 5, 12))]  # no DLQI baseline: no line


def test_patient_page_draws_easi_and_dlqi_against_the_targets(tracker):
    from tests.test_web import make_client, sign_in
    from tests.web_clinic import PASSWORD, query

    pytest.importorskip("starlette.testclient")
    tracker("patient add R1 --name 'Rae Ode' --dob 1980-01-01 --sex m --clinician 'Dr Rhea Stone'")
    tracker("assess R1 --on 2026-01-02 --easi 28 --dlqi 14")
    tracker("therapy start R1 dupilumab --on 2026-01-06")
    tracker("assess R1 --on 2026-03-03 --easi 18 --dlqi 9")
    tracker(["user", "add", "nina", "--role", "clinician", "--password-stdin"], input=PASSWORD + "\n")
    client = make_client(tracker.db)
    sign_in(client)
    patient_id = query(tracker.db, "SELECT id FROM patient WHERE mrn = 'R1'")[0][0]
    page = client.get(f"/patients/{patient_id}").text
    section = page.split('<h2 id="h-response">')[1].split("</section>")[0]
    easi, dlqi = re.findall(r"<svg.*?</svg>", section)
    due = (dt.date(2026, 1, 6) + dt.timedelta(weeks=16)).isoformat()
    assert 'role="img"' in easi and 'aria-labelledby="r-easi-title r-easi-desc"' in easi
    assert '<title id="r-easi-title">EASI over time against the checkpoint targets</title>' in easi
    assert "2 EASI assessments from 2026-01-02" in easi and "latest 18 on 2026-03-03" in easi
    assert "EASI-50 (dupilumab week 16): 14 EASI" in easi  # half the baseline of 28
    assert f"dupilumab week 16 checkpoint {due}" in easi
    assert "DLQI reduced &gt;= 4 points (dupilumab week 16): 10 DLQI" in dlqi  # 14 - 4
    assert f"EASI-50 (dupilumab week 16): 14 EASI on {due}" in section  # the caption says it in words
    assert "<script" not in page
