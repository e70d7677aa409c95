"""The synthetic practice's parameters and the row layout shared by the builder and the loader.

What a synthetic clinic looks like: the drug mix, which analytes a panel or a monitoring draw reports,
value ranges, names, the rates of out-of-range results and missed items; `FIELDS`, the columns (in
tuple order) that `clinic.Builder` builds and `load` writes; and `stamp`, the deterministic timestamp of
a synthetic event. Constants only, no randomness and no database.
"""

from __future__ import annotations

import datetime as dt

# A practice's mix of systemic therapies, most common first (synthetic weights, not clinical data).
# Drugs missing from the library are skipped, so the mix follows whatever protocols are installed.
DRUG_WEIGHTS = {
    "dupilumab": 34, "methotrexate": 18, "upadacitinib": 8, "abrocitinib": 5, "baricitinib": 3,
    "ciclosporin": 7, "tralokinumab": 6, "lebrikizumab": 4, "azathioprine": 4, "mycophenolate": 4,
    "nemolizumab": 2, "prednisolone": 1, "nbuvb": 2, "apremilast": 1,
}
# Analytes a synthetic baseline panel reports, and (fewer, to keep 100,000 patients fast) a monitoring draw.
# What a done baseline test or draw has on record: at least each panel's required analytes
# (schedules/vocabulary.yaml `required`), so synthetic items are done by the same rule as real ones.
PANEL_ANALYTES = {
    "cbc": ("wbc", "neutrophils", "lymphocytes", "platelets", "hb"),
    "cmp": ("alt", "creatinine", "egfr", "albumin"),
    "lipids": ("total_cholesterol", "ldl", "triglycerides"),
    "bp": ("bp_systolic", "bp_diastolic"),
}
LAB_ANALYTES = {"cbc": ("neutrophils", "wbc", "lymphocytes", "platelets", "hb"), "cmp": ("alt", "creatinine", "albumin"),
                "lipids": ("ldl", "total_cholesterol", "triglycerides"), "bp": ("bp_systolic", "bp_diastolic")}
# Display ranges for analytes without both reference limits in the vocabulary (synthetic values only).
FALLBACK_RANGE = {
    "egfr": (90, 120), "hdl": (1.0, 2.0), "ldl": (1.5, 3.0), "total_cholesterol": (3.5, 5.0),
    "triglycerides": (0.6, 1.7), "bp_systolic": (105, 135), "bp_diastolic": (62, 85), "weight": (50, 110),
    "height": (150, 192), "eosinophils": (0.05, 0.45),
}
CATEGORICAL_NORMAL = ("negative", "normal", "immune", "up-to-date", "complete", "none")
FIRST = ["Ada", "Ben", "Cara", "Dev", "Elin", "Finn", "Gita", "Hugo", "Iris", "Jon", "Kemi", "Luca", "Mira",
         "Noor", "Owen", "Pia", "Quin", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe"]
LAST = ["Abbott", "Baker", "Chen", "Dlamini", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones", "Khan",
        "Lopez", "Murphy", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Singh", "Taylor"]
# Fictional responsible clinicians, assigned in turn by patient number (no random draw: adding them left
# every other synthetic value as it was).
CLINICIANS = ["Dr A. Okonjo", "Dr B. Lindqvist", "Dr C. Marsh", "Dr D. Farouk"]

SPAN_DAYS = 3 * 365  # course starts are spread over the last three years
CLINIC_DAYS = (1, 3)  # courses start and stop at clinic visits, on Tuesdays and Thursdays
OUT_OF_RANGE = 0.03  # share of numeric results outside the reference range
# Within-patient variation: each patient has a set point per analyte (drawn once inside the reference
# range's middle 80%); each result is that set point times (1 + a normal deviate of this coefficient of
# variation), the usual size of within-person biological plus analytical variation (synthetic choice:
# creatinine and eGFR about 5%, so a "> 30% above baseline" alert is a real change, not noise).
CV = {"creatinine": 0.05, "egfr": 0.05, "bp_systolic": 0.06, "bp_diastolic": 0.06, "weight": 0.02,
      "height": 0.0, "hb": 0.04, "albumin": 0.04}
DEFAULT_CV = 0.10
# Course lengths: a course with a maximum duration (ciclosporin 8 weeks, prednisolone 7 days, NB-UVB 8 weeks)
# stops between half its maximum and its maximum; this share runs over, by 1 to 28 days.
OVER_LIMIT = 0.03
MISSED_RECENT = 0.15  # share of items due in the last 30 days not yet done (they show as overdue)
MISSED_OLD = 0.01  # older items that were never done
CHUNK = 2000  # patients per batch of inserts
UTC = dt.timezone.utc


def stamp(day: dt.date, hour: int = 9) -> dt.datetime:
    """A deterministic aware UTC timestamp for a synthetic event on `day`."""
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)



# The columns each table's rows are built with, in tuple order. Columns of the table not listed here
# (added to the schema later) are filled with their default, or NULL (see `load._insert_plan`).
FIELDS = {
    "patient": ("id", "mrn", "name", "dob", "sex", "weight_kg", "childbearing", "created_at",
                "updated_at", "clinician"),
    "course": ("id", "patient_id", "drug", "dose", "start_on", "stop_on", "stop_reason", "stop_category",
               "status", "protocol_version", "protocol_hash", "protocol_origin", "planned_through",
               "switched_from_id", "created_at"),
    "dose_change": ("id", "course_id", "changed_on", "dose", "previous_dose", "created_at"),
    "course_pause": ("id", "course_id", "paused_on", "resumed_on", "reason"),
    "item": ("id", "uid", "course_id", "patient_id", "drug", "kind", "due", "tests", "plan_tests", "title",
             "detail", "sources", "gate", "week", "measure", "target", "adjusted", "origin", "reading", "status",
             "done_on", "done_note", "sequence", "created_at", "last_modified"),
    "lab_result": ("id", "patient_id", "test", "value_num", "value_text", "unit", "taken_on", "ref_low",
                   "ref_high", "created_at", "reported_value", "reported_unit"),
    "assessment": ("id", "patient_id", "assessed_on", "easi", "iga", "itch_nrs", "dlqi", "poem", "created_at"),
}
