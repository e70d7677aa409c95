"""The staff web view's Today page as one use case: overdue, partial and due tasks and the open alerts, each
section filtered (drug, clinician, due-date range), counted and paged in the database, so a page costs the
same at 100,000 patients as at 100 (benchmarks/web_pages.py).

Which tasks each section holds is the core's (core/today.py: the worklist's overdue and due windows); a
partial draw is `core.panels.item_state`'s judgement of the tasks in either window that received part of
what they need."""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass

from sqlalchemy import case, func, literal, or_, select, text

from tracker.core.panels import item_state
from tracker.core.terms import SEVERITY_ORDER
from tracker.core.today import today_windows
from tracker.core.worklist import TASK_KINDS, ItemWindow, is_overdue
from tracker.db.tables import PARTIAL_ITEM_SQL, Alert, Item, Patient, codes
from tracker.db.windows import item_where
from tracker.errors import InputError, NotFoundError
from tracker.services.context import Clinic
from tracker.services.horizons import plans_fall_short
from tracker.services.worklists import ROW_COLUMNS, item_values

PAGE_SIZE = 50
SECTIONS = ("alerts", "overdue", "partial", "due")


@dataclass(frozen=True)
class TodayFilter:
    drug: str | None = None
    clinician: str | None = None
    due_from: dt.date | None = None
    due_to: dt.date | None = None


@dataclass
class Section:
    rows: list[dict]
    total: int
    page: int  # 1-based, within 1..pages
    pages: int
    by_severity: dict[str, int] | None = None  # the alerts section: the filter's open alerts per severity


def page_number(value: str | None, field: str) -> int:
    """A page number from a query string: a positive integer (absent: 1)."""
    if value is None or value == "":
        return 1
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= 1_000_000:
        raise InputError(field, value, "expected a page number (1, 2, ...)")
    return int(value)


def _pages(total: int, page: int, size: int | None) -> tuple[int, int]:
    """(pages, the page shown: clamped to the last), for `size` rows a page (None: one page of all)."""
    pages = max(1, -(-total // size)) if size else 1
    return pages, min(page, pages)


def _limit(query, page: int, size: int | None):
    return query if size is None else query.limit(size).offset((page - 1) * size)


def today_view(clinic: Clinic, wanted: TodayFilter, pages: dict[str, int], *, everything: bool = False) -> dict:
    """The Today page's sections ({name: Section}) under `wanted`, each at its page of PAGE_SIZE rows (all rows
    with `everything`: the printable list), with the filter's choices and the last evaluation's day."""
    from tracker.services.listings import refresh
    from tracker.services.nightly import last_completed
    from tracker.services.patients import known_clinician

    session, today = clinic.session, clinic.today
    drug = wanted.drug
    if drug is not None and drug not in clinic.library.protocols:
        raise NotFoundError("drug", drug, difflib.get_close_matches(drug, list(clinic.library.protocols), n=3))
    clinician = known_clinician(session, wanted.clinician) if wanted.clinician is not None else None
    windows = today_windows(today, wanted.due_from, wanted.due_to)
    if plans_fall_short(session, today, windows.due_to):
        refresh(clinic, windows.due_to)  # plans reach the range's end (as `tracker due` does)
    size = None if everything else PAGE_SIZE
    vocabulary = clinic.library.vocabulary

    def narrowed(query):
        if drug is not None:
            merged = literal(" ") + func.coalesce(Item.merged_drugs, "") + literal(" ")
            query = query.where(or_(Item.drug == drug, merged.like(f"% {drug} %")))
        if clinician is not None:
            query = query.where(Patient.clinician == clinician)
        return query

    columns = Item.__table__.c
    item_columns = (*(columns[name] for name in ROW_COLUMNS), Patient.mrn, Patient.name, Patient.id)
    width = len(ROW_COLUMNS)

    def shaped(rows) -> list[dict]:
        out = []
        for row in rows:
            values = row[:width]
            facts = _Facts(values[4], values[7], values[5])
            shown = item_values(values, row[width], row[width + 1], is_overdue(facts, today), vocabulary)
            shown["patient_id"] = row[width + 2]
            out.append(shown)
        return out

    def item_section(window: ItemWindow | None, page: int) -> Section:
        if window is None:
            return Section([], 0, 1, 1)
        where = item_where(window)
        count = select(func.count()).select_from(Item)
        if clinician is not None:  # the patient table only when it filters: a count reads the item index alone
            count = count.join(Patient, Patient.id == Item.patient_id)
        count = narrowed(count.where(where))
        total = session.execute(count).scalar_one()
        pages_, page = _pages(total, page, size)
        query = narrowed(select(*item_columns).join(Patient, Patient.id == Item.patient_id).where(where))
        rows = session.execute(_limit(query.order_by(Item.due, Item.id), page, size)).all()
        return Section(shaped(rows), total, page, pages_)

    sections = {
        "overdue": item_section(windows.overdue, pages.get("overdue", 1)),
        "due": item_section(windows.due, pages.get("due", 1)),
        "partial": _partial(session, drug, clinician, windows, vocabulary, item_columns, shaped,
                            pages.get("partial", 1), size),
        "alerts": _alerts(session, drug, clinician, pages.get("alerts", 1), size),
    }
    drugs = sorted(clinic.library.protocols)
    clinicians = session.execute(select(Patient.clinician).where(Patient.clinician.is_not(None))
                                 .distinct().order_by(Patient.clinician)).scalars().all()
    return {"today": today, "sections": sections, "windows": windows, "drug": drug, "clinician": clinician,
            "drugs": drugs, "clinicians": clinicians, "evaluated": last_completed(session)}


class _Facts:
    """What the core's predicates read of an item."""

    __slots__ = ("kind", "status", "due")

    def __init__(self, kind, status, due):
        self.kind, self.status, self.due = kind, status, due


def _partial(session, drug, clinician, windows, vocabulary, item_columns, shaped, page, size) -> Section:
    """Tasks in the overdue or due window that received part of what they need (core: panels.item_state).
    Only items with something received and not done or cancelled are candidates (a small share of the
    table, read through the partial index of migration 0015: the query holds that index's condition and a
    range of its column, and nothing else for the planner to prefer); the window (status and kinds), the
    filter and the state are judged here, in full, so the count is exact; then the page's rows are read."""
    if windows.overdue is None and windows.due is None:
        return Section([], 0, 1, 1)
    first = windows.overdue.due_from if windows.overdue is not None else windows.due.due_from
    window = ItemWindow(TASK_KINDS, due_from=first, due_before=windows.due_to + dt.timedelta(days=1))
    query = (select(Item.id, Item.kind, Item.status, Item.due, Item.tests, Item.received, Item.drug,
                    Item.merged_drugs, Item.patient_id)
             .where(text(PARTIAL_ITEM_SQL), Item.due < window.due_before))
    if window.due_from is not None:
        query = query.where(Item.due >= window.due_from)
    candidates = [row for row in session.execute(query.order_by(Item.due, Item.id)).all()
                  if window.admits(row) and (drug is None or drug == row.drug or drug in codes(row.merged_drugs))
                  and item_state(row.status, codes(row.tests), codes(row.received), vocabulary) == "partial"]
    if clinician is not None and candidates:
        theirs = set()
        patient_ids = sorted({row.patient_id for row in candidates})
        for start in range(0, len(patient_ids), 500):
            theirs.update(session.execute(select(Patient.id).where(
                Patient.id.in_(patient_ids[start:start + 500]), Patient.clinician == clinician)).scalars())
        candidates = [row for row in candidates if row.patient_id in theirs]
    ids = [row.id for row in candidates]
    pages_, page = _pages(len(ids), page, size)
    shown = ids if size is None else ids[(page - 1) * size:page * size]
    rows = []
    for start in range(0, len(shown), 500):
        chunk = shown[start:start + 500]
        rows.extend(session.execute(select(*item_columns).join(Patient, Patient.id == Item.patient_id)
                                    .where(Item.id.in_(chunk))).all())
    order = {item_id: n for n, item_id in enumerate(shown)}
    rows.sort(key=lambda row: order[row[0]])
    return Section(shaped(rows), len(ids), page, pages_)


def _alerts(session, drug, clinician, page, size) -> Section:
    """Open alerts, most severe first, then the oldest; `rows` carry `patient_id`; counted per severity."""
    from tracker.services.row_shapes import alert_row

    where = [Alert.status == "open"]
    if drug is not None:
        where.append(Alert.drug == drug)
    if clinician is not None:
        where.append(Patient.clinician == clinician)
    count = select(Alert.severity, func.count()).select_from(Alert)
    if clinician is not None:
        count = count.join(Patient, Patient.id == Alert.patient_id)
    counts = dict(session.execute(count.where(*where).group_by(Alert.severity)).all())
    total = sum(counts.values())
    pages_, page = _pages(total, page, size)
    rank = case({name: n for name, n in SEVERITY_ORDER.items()}, value=Alert.severity, else_=len(SEVERITY_ORDER))
    query = (select(Alert, Patient.mrn).join(Patient, Patient.id == Alert.patient_id).where(*where)
             .order_by(rank, Alert.raised_on, Alert.id))
    rows = []
    for alert, mrn in session.execute(_limit(query, page, size)).all():
        row = alert_row(alert, mrn)
        row["patient_id"] = alert.patient_id
        rows.append(row)
    by_severity = {sev: counts[sev] for sev in sorted(counts, key=lambda s: SEVERITY_ORDER.get(s, 9))}
    return Section(rows, total, page, pages_, by_severity)
