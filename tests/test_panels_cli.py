"""Issue 13 items 5, 6, 8 and the planning half of 2, as a clinic sees them through the CLI on a real database:
partial draws in every listing, pauses moving one-off draws, both ciclosporin baseline readings, and the
mean renal baseline in patient show and the alert text. Migration 0005 carries existing rows."""

from __future__ import annotations

from freezegun import freeze_time

from tests.conftest import record_panels
from tests.nightly_support import jsonl_rows, write_config

MISSING = ["cbc: wbc", "cbc: neutrophils", "cbc: lymphocytes", "cbc: platelets", "cbc: hb",
           "cmp: creatinine or egfr", "cmp: albumin"]


def lab(rows, due):
    return next(r for r in rows if r["kind"] == "lab" and r["due"] == due)


def test_a_single_alt_leaves_the_methotrexate_draw_partial_everywhere_until_the_rest_arrives(tracker, tmp_path):
    write_config(tmp_path / "site.toml", """
[reminders]
channels = ["stdout", "jsonl"]
[reminders.jsonl]
path = "out/reminders.jsonl"
""")
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")  # first CBC+CMP draw due 2026-01-19
    with freeze_time("2026-01-19"):
        assert "completed" not in tracker("result add M1 alt 30 --on 2026-01-19").stdout
        row = lab(tracker.json("calendar M1"), "2026-01-19")
        assert (row["status"], row["received"], row["missing"]) == ("partial", ["alt"], MISSING)
        assert lab(tracker.json("due --days 0"), "2026-01-19")["missing"] == MISSING
        human = tracker("due --days 0").stdout
        assert "partial" in human and "missing cbc: wbc," in human
    with freeze_time("2026-01-28"):  # past the 7-day grace: overdue like a missed draw
        overdue = lab(tracker.json("overdue"), "2026-01-19")
        assert overdue["overdue"] and overdue["status"] == "partial" and overdue["missing"] == MISSING
        shown = tracker.json("patient show M1")["next_items"]
        assert lab(shown, "2026-01-19")["missing"] == MISSING
        assert "OVERDUE partial" in tracker("patient show M1").stdout
        tracker("nightly --as-of 2026-01-28")
        sent = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
        alert = next(r for r in sent if r["kind"] == "alert" and r["alert_kind"] == "overdue"
                     and "2026-01-19" in r["message"])
        assert "(partial: missing cbc: wbc, neutrophils, lymphocytes, platelets, hb; cmp: creatinine or egfr, " \
               "albumin (panel requirements: clinic default))" in alert["message"]
        # Part of the rest (taken nearer this draw than the next, due 02-02): the alert text keeps naming
        # what is still missing.
        record_panels(tracker, "M1", "2026-01-25", "cbc")
        alerts = [a for a in tracker.json("alerts") if a["kind"] == "overdue" and "2026-01-19" in a["message"]]
        assert alerts[0]["message"].endswith("(partial: missing cmp: creatinine or egfr, albumin "
                                             "(panel requirements: clinic default))")
        outs = record_panels(tracker, "M1", "2026-01-25", "cmp", skip=("alt",))
        assert "completed: 2026-01-19" in outs[-1] and "resolved alert" in outs[-1]
        row = lab(tracker.json("calendar M1 --all"), "2026-01-19")
        assert (row["status"], row["done_on"], row["missing"]) == ("done", "2026-01-25", [])
        assert lab(tracker.json("calendar M1"), "2026-02-02")["status"] == "planned"  # nothing counted twice


def test_a_due_reminder_in_the_digest_names_what_a_partial_draw_lacks(tracker, tmp_path):
    write_config(tmp_path / "site.toml", '[reminders]\nchannels = ["stdout"]\nlead_days = 3\n')
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
    with freeze_time("2026-01-16"):
        record_panels(tracker, "M1", "2026-01-16", "cbc")
        out = tracker("nightly --as-of 2026-01-16").stdout
    line = next(text for text in out.splitlines() if "2026-01-19" in text and "Methotrexate monitoring" in text)
    assert line.endswith("(partial: missing cmp: alt or ast, creatinine or egfr, albumin "
                         "(panel requirements: clinic default))")


def test_a_single_mcv_leaves_a_baseline_cbc_open_and_partial(tracker):
    with freeze_time("2026-03-02"):
        tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01 --sex m")
        tracker("result add P1 mcv 90 --on 2026-02-25")
        tracker("therapy start P1 ciclosporin --on 2026-03-02")
        cbc = next(r for r in tracker.json("calendar P1") if r["kind"] == "baseline" and r["tests"] == ["cbc"])
        assert cbc["status"] == "partial" and cbc["received"] == ["mcv"]
        assert cbc["missing"] == ["cbc: wbc", "cbc: neutrophils", "cbc: lymphocytes", "cbc: platelets", "cbc: hb"]
        record_panels(tracker, "P1", "2026-03-02", "cbc")
        cbc = next(r for r in tracker.json("calendar P1 --all") if r["kind"] == "baseline" and r["tests"] == ["cbc"])
        assert cbc["status"] == "done"


def test_a_pause_over_abrocitinib_week_4_moves_the_cbc_and_lipids(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add J1 --name 'Jo Kay' --dob 1980-01-01 --sex m")
        for test in ("tb", "hbv", "hcv"):
            tracker(f"result add J1 {test} negative --on 2026-01-02")
        record_panels(tracker, "J1", "2026-01-02", "cbc")
        tracker("therapy start J1 abrocitinib --on 2026-01-05")
    assert ("2026-02-02", ["cbc", "lipids"]) in [(r["due"], r["tests"]) for r in tracker.json("calendar J1")]
    with freeze_time("2026-01-26"):
        tracker("therapy pause J1 abrocitinib --on 2026-01-26 --reason infection")
    with freeze_time("2026-02-09"):
        tracker("therapy resume J1 abrocitinib --on 2026-02-09")
        labs = [(r["due"], r["tests"]) for r in tracker.json("calendar J1") if r["kind"] == "lab"]
    assert labs[0] == ("2026-02-16", ["cbc", "lipids"])  # week 4 of treatment, 14 paused days later
    assert ("2026-02-02", ["cbc", "lipids"]) not in labs


def test_ciclosporin_plans_both_readings_and_alerts_against_the_mean_baseline(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add C1 --name 'Cy Test' --dob 1970-01-01 --sex m")
        tracker("result add C1 creatinine 80 --on 2025-12-20")
        tracker("therapy start C1 ciclosporin --on 2026-01-05")
        readings = [(r["tests"], r["status"]) for r in tracker.json("calendar C1")
                    if r["kind"] == "baseline" and "reading" in r["title"]]
        assert readings == [(["bp"], "planned"), (["bp"], "planned"), (["creatinine"], "done"),
                            (["creatinine"], "planned"), (["egfr"], "planned"), (["egfr"], "planned")]
        out = tracker("result add C1 creatinine 84 --on 2026-01-04").stdout
        assert "completed: 2026-01-05 Baseline creatinine before Ciclosporin (advisory, reading 2 of 2)" in out
        record_panels(tracker, "C1", "2026-01-02", "bp")
        record_panels(tracker, "C1", "2026-01-05", "bp")
        bp = [r["status"] for r in tracker.json("calendar C1 --all") if r["tests"] == ["bp"] and r["kind"] == "baseline"]
        assert bp == ["done", "done"]
        summary = tracker.json("patient show C1")
        creatinine = next(b for b in summary["baselines"] if b["test"] == "creatinine")
        assert creatinine["value"] == 82 and creatinine["wanted"] == 2
        assert creatinine["text"] == "baseline 82 (mean of 2 readings: 2025-12-20, 2026-01-04)"
        assert "mean of 2 readings" in tracker("patient show C1").stdout
    with freeze_time("2026-01-20"):
        tracker("result add C1 creatinine 108 --on 2026-01-19")  # +32% vs the mean 82 (+29% vs the latest 84)
        rise = [a for a in tracker.json("alerts") if a["kind"] == "threshold" and "creatinine" in a["message"]]
    assert len(rise) == 1 and "+32% vs baseline 82 (mean of 2 readings" in rise[0]["message"]


def test_migration_0005_keeps_every_item_and_adds_empty_columns(tracker, db_url):
    import os

    import pytest

    if os.environ.get("TRACKER_TEST_PG"):
        pytest.skip("rewinds a SQLite file's schema")
    import sqlite3

    from alembic import command

    from tracker.db.engine import SCHEMA_HEAD, _alembic_config, make_engine, resolve_url

    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
        tracker("result add M1 tpmt normal --on 2026-01-02")
    engine = make_engine(resolve_url(db_url))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        command.downgrade(_alembic_config(conn), "0002")
        conn.commit()
    engine.dispose()
    columns = "id, uid, kind, due, tests, status, done_on, sequence"
    with sqlite3.connect(db_url) as conn:
        before = conn.execute(f"SELECT {columns} FROM item ORDER BY id").fetchall()
        assert "received" not in [c[1] for c in conn.execute("PRAGMA table_info(item)")]
    assert before
    with freeze_time("2026-01-05"):
        tracker("db upgrade")
    with sqlite3.connect(db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
        assert conn.execute(f"SELECT {columns} FROM item ORDER BY id").fetchall() == before
        assert conn.execute("SELECT count(*) FROM item WHERE received IS NOT NULL OR reading IS NOT NULL"
                            ).fetchone()[0] == 0


def test_a_note_under_a_panels_own_code_completes_neither_a_draw_nor_a_baseline(tracker):
    """Finding B8: `result add M1 cbc banana` and `cmp banana` marked the methotrexate draw "CBC, CMP" done
    and completed the baseline CBC and CMP with no count or enzyme on record. The note is kept and the items
    show it as received, partial, with every analyte missing; the analytes complete them as before."""
    with freeze_time("2026-11-01"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-11-01")
    with freeze_time("2026-12-05"):
        for panel in ("cbc", "cmp"):
            assert "completed" not in tracker(f"result add M1 {panel} banana --on 2026-11-29").stdout
        rows = tracker.json("calendar M1 --all")
        draw = lab(rows, "2026-11-29")
        assert (draw["status"], draw["received"]) == ("partial", ["cbc", "cmp"])
        assert draw["missing"] == MISSING[:5] + ["cmp: alt or ast", *MISSING[5:]]
        baseline = {r["tests"][0]: r for r in rows if r["kind"] == "baseline" and r["tests"][0] in ("cbc", "cmp")}
        assert {code: r["status"] for code, r in baseline.items()} == {"cbc": "partial", "cmp": "partial"}
        outs = record_panels(tracker, "M1", "2026-11-29", "cbc", "cmp")
        assert "completed: 2026-11-29 Methotrexate monitoring: CBC, CMP" in "".join(outs)
        assert lab(tracker.json("calendar M1 --all"), "2026-11-29")["status"] == "done"
