"""A synthetic demo clinic. Every name and MRN is invented; nothing here is patient data."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field, replace

from sqlmodel import select

from tracker.core.gates import required_members
from tracker.db.tables import Item, Patient, codes, store_setting
from tracker.errors import ConflictError, InputError
from tracker.services.assessments import record_assessment
from tracker.services.context import Clinic
from tracker.services.courses import change_dose, start_course
from tracker.services.patients import add_patient
from tracker.services.results import record_result
from tracker.services.synth.params import CLINICIANS

FIRST = ["Ada", "Ben", "Cara", "Dev", "Elin", "Finn", "Gita", "Hugo", "Iris", "Jon", "Kemi", "Luca", "Mira",
         "Noor", "Owen", "Pia", "Quin", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe"]
LAST = ["Abbott", "Baker", "Chen", "Dlamini", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones", "Khan",
        "Lopez", "Murphy", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Singh", "Taylor"]

# Rough mix of a dermatology clinic's systemic therapies (dupilumab most common).
DRUG_WEIGHTS = {
    "dupilumab": 30, "methotrexate": 20, "upadacitinib": 8, "abrocitinib": 5, "baricitinib": 3,
    "ciclosporin": 8, "azathioprine": 5, "mycophenolate": 4, "tralokinumab": 6, "lebrikizumab": 4,
    "nemolizumab": 2, "apremilast": 1, "prednisolone": 2, "nbuvb": 2,
}

# Plausible normal values for the analytes the demo records (synthetic, for display only).
NORMAL = {"neutrophils": (2.5, 6.0), "alt": (12, 35), "ast": (12, 35), "egfr": (75, 110),
          "creatinine": (60, 95), "ldl": (1.8, 3.0), "hb": (125, 155), "platelets": (180, 350),
          "bp_systolic": (110, 135), "height": (155, 185), "weight": (55, 100), "lymphocytes": (1.2, 3.0),
          "wbc": (4.5, 9.0)}
FIRST_ANALYTE = {"cbc": "neutrophils", "cmp": "alt", "lipids": "ldl", "bp": "bp_systolic"}


@dataclass
class DemoSummary:
    patients: int
    courses: int
    results: int
    worklist: list[dict] = field(default_factory=list)  # overdue, and due within WORKLIST_DAYS, by MRN


WORKLIST_DAYS = 7


DEMO_MARK = "clinic.demo"  # stored by build_demo_clinic: `demo --replace` deletes only such a file


def remove_demo_database(db: str) -> None:
    """Delete the SQLite demo file at `db` (and its WAL/SHM) for `demo --replace`; anything that is not a
    demo database (a clinic's, an older tracker's, not tracker's at all) is refused and left alone."""
    import sqlite3
    from pathlib import Path

    if "://" in db:
        raise InputError("db", db, "--replace only deletes a SQLite demo file, not a server database")
    path = Path(db).expanduser()
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:  # read only: never migrate it
            marked = conn.execute("SELECT 1 FROM setting WHERE key = ?", (DEMO_MARK,)).fetchone() is not None
        conn.close()
    except sqlite3.Error:
        marked = False
    if not marked:
        raise InputError("db", db, "--replace deletes only a demo database, and this is not one "
                                   "(a clinic's database is never deleted)")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def build_demo_clinic(clinic: Clinic, patients: int = 30, seed: int = 7) -> DemoSummary:
    """A fresh synthetic clinic as of `clinic.today` (audited as user "demo"), and its worklist."""
    from tracker.services import audit
    from tracker.services.worklists import due, overdue

    builder = clinic.user
    clinic = replace(clinic, user="demo")
    session, library, today = clinic.session, clinic.library, clinic.today
    if session.exec(select(Patient.id)).first() is not None:
        raise ConflictError("db: the database already has patients; the demo needs a fresh one")
    store_setting(session, DEMO_MARK, "synthetic demo clinic: every patient invented")
    rng = random.Random(seed)
    drugs = {d: w for d, w in DRUG_WEIGHTS.items() if d in library.protocols}
    results = 0
    for n in range(1, patients + 1):
        sex = rng.choice(["f", "m"])
        dob = today - dt.timedelta(days=rng.randint(18 * 365, 75 * 365))
        patient = add_patient(
            clinic, mrn=f"DEMO{n:04d}", name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", dob=dob, sex=sex,
            weight_kg=round(rng.uniform(50, 110), 1),
            childbearing="yes" if sex == "f" and (today - dob).days < 45 * 365 else "unknown",
            clinician=CLINICIANS[n % len(CLINICIANS)],
        )
        drug = rng.choices(list(drugs), weights=list(drugs.values()))[0]
        protocol = library.protocols[drug]
        if protocol.limits is not None:
            # Short courses (steroid bridge, ciclosporin, phototherapy) started recently; a few run past.
            max_days = protocol.limits.max_duration.approx_days()
            start = today - dt.timedelta(days=rng.randint(1, max_days + 3))
        else:
            start = today - dt.timedelta(days=rng.randint(3, 360))
        # Hard-gate tests are on record shortly before the start (on as many days as the rule asks for,
        # 9 days apart, every analyte the initiation limits read); advisory baselines nearly always are.
        for rule in protocol.baseline:
            for test in rule.tests:
                if rule.gate == "hard" or rng.random() < 0.95:
                    for n in range(rule.times):
                        taken = start - dt.timedelta(days=(1 if rule.gate == "hard" else 10) + 9 * n)
                        for code in (required_members(protocol, test, clinic.library.vocabulary)
                                     if rule.gate == "hard" else []) or [test]:
                            results += _record(clinic, patient, code, taken, rng)
        baseline_easi = round(rng.uniform(16, 40), 1)
        baseline_dlqi = rng.randint(10, 25)
        record_assessment(clinic, mrn=patient.mrn, on=start - dt.timedelta(days=7),
                          values={"easi": baseline_easi, "dlqi": baseline_dlqi,
                                               "itch_nrs": rng.randint(6, 9)})
        change = start_course(clinic, mrn=patient.mrn, drug=drug, on=start, dose="standard",
                              override_gate=None)
        if protocol.monitoring and protocol.monitoring.restart_on_dose_change and rng.random() < 0.3:
            changed_on = start + dt.timedelta(days=rng.randint(14, max(15, (today - start).days)))
            if changed_on < today:
                change_dose(clinic, mrn=patient.mrn, drug=drug, on=changed_on, dose="increased")
        # Most past draws were done on time; some were missed and are now overdue.
        past = session.exec(select(Item).where(Item.course_id == change.course.id, Item.status == "planned",
                                               Item.kind == "lab", Item.due < today).order_by(Item.due)).all()
        for item in past:
            if rng.random() < 0.8:
                taken = min(today, item.due + dt.timedelta(days=rng.randint(-2, 3)))
                for test in codes(item.tests):
                    results += _record(clinic, patient, test, taken, rng)
        # Response checkpoints: most were assessed; most patients responded, some did not.
        checkpoints = session.exec(select(Item).where(Item.course_id == change.course.id, Item.status == "planned",
                                                      Item.kind == "checkpoint", Item.due < today)
                                   .order_by(Item.due)).all()
        for item in checkpoints:
            if rng.random() < 0.15:
                continue  # missed: the alert engine will say so
            responded = rng.random() < 0.75
            fall = rng.uniform(0.55, 0.9) if responded else rng.uniform(0.0, 0.35)
            on = min(today, item.due + dt.timedelta(days=rng.randint(-3, 5)))
            record_assessment(clinic, mrn=patient.mrn, on=on, values={
                "easi": round(baseline_easi * (1 - fall), 1),
                "dlqi": max(0, baseline_dlqi - (rng.randint(5, 12) if responded else rng.randint(0, 3))),
                "itch_nrs": rng.randint(1, 4) if responded else rng.randint(5, 9),
            })
    # Who built it, and how: a demo file is told apart from a clinic's by its audit too (`tracker audit`).
    audit.record(session, builder, "demo.build", "clinic", None, None, None,
                 {"patients": patients, "seed": seed, "results": results, "today": today.isoformat()})
    session.flush()
    worklist = overdue(session, today, library.vocabulary) + due(session, today, WORKLIST_DAYS, library.vocabulary)
    worklist.sort(key=lambda r: (r["mrn"], r["due"]))
    return DemoSummary(patients, patients, results, worklist)


def _record(clinic: Clinic, patient, test, taken, rng) -> int:
    if taken > clinic.today or taken < patient.dob:
        return 0
    vocabulary = clinic.library.vocabulary
    code = FIRST_ANALYTE.get(test, test)
    spec = vocabulary.get(code)
    if spec.is_categorical:
        value = "normal" if "normal" in spec.values else spec.values[0]
    elif spec.is_numeric:
        low, high = NORMAL.get(code, (spec.ref_low or 1.0, spec.ref_high or (spec.ref_low or 1.0) * 2))
        value = f"{rng.uniform(low, high):.1f}"
    else:
        value = "done"
    record_result(clinic, mrn=patient.mrn, test=code, value=value, taken_on=taken, unit=None, patient=patient)
    return 1
