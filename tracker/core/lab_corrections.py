"""Which stored result a laboratory's correction replaces (pure; services/lab_import.py applies it).

A laboratory corrects a result it sent in two ways:

- HL7 v2: a new ORU^R01 message (a new MSH-10, so a new source id) whose OBX-11 is `C`. It corrects the result
  of the same test, for the same patient, taken the same day, that the same laboratory sent (sending facility,
  MSH-4: the `hl7:<facility>|` part of the source id). Exactly one such result: replaced. None: the correction
  is stored as a new result (tracker never had the first one, e.g. it was preliminary and refused). Several:
  tracker cannot tell which one is meant, and refuses the correction.
- FHIR: the same Observation (same id, so the same source id) sent again as `amended` or `corrected`. It
  replaces the result carrying that source id; sent again unchanged, it is on record and changes nothing.

Corrections may arrive out of order (a second correction before the first). Each result keeps the time the
laboratory reported its values (`reported_at`: HL7 OBR-22 or MSH-7, FHIR issued or meta.lastUpdated), and a
correction reported before the values it would replace is not applied (`superseded`): the newer values stay.
Where either time is unknown, corrections are applied in the order they arrive.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Candidate:
    """A result a correction might replace: one on record (`result_id`) or one earlier in the same file
    (`row`, its position there)."""

    source_id: str
    test: str
    taken_on: dt.date
    result_id: int | None = None
    row: int | None = None
    reported_at: dt.datetime | None = None
    correction: bool = False  # its values are a correction's (OBX-11 C): an original older than it is superseded


@dataclass(frozen=True)
class Target:
    """What a correction replaces: `candidate`, or nothing (store it as new); `ambiguous` lists the
    candidates when more than one would fit (refused)."""

    candidate: Candidate | None = None
    ambiguous: tuple[Candidate, ...] = ()


def sender(source_id: str) -> str | None:
    """The laboratory an HL7 source id came from (`hl7:<facility>|`), None for any other source."""
    if not source_id.startswith("hl7:") or "|" not in source_id:
        return None
    return source_id.split("|", 1)[0] + "|"


def hl7_corrected(source_id: str, test: str, taken_on: dt.date, candidates: Iterable[Candidate]) -> Target:
    """The result an HL7 correction (OBX-11 `C`, source id `source_id`) of `test` taken on `taken_on`
    replaces, among the patient's results from HL7 (`candidates`)."""
    lab = sender(source_id)
    if lab is None:
        return Target()
    fits = tuple(c for c in candidates
                 if c.test == test and c.taken_on == taken_on and sender(c.source_id) == lab)
    if len(fits) == 1:
        return Target(fits[0])
    return Target(None, fits if len(fits) > 1 else ())


def newer_corrections(source_id: str, reported_at: dt.datetime | None,
                      candidates: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The corrections of the result an HL7 original (OBX-11 F, source id `source_id`, reported at `reported_at`)
    reports that were reported after it, among the patient's results of its test that day (`candidates`,
    same laboratory as for `hl7_corrected`). Any: the original arrived after its correction and is superseded,
    never stored beside it as a second current value, whichever order the two arrive in (a correction arriving
    after its original replaces it). Only when both report times are known, as for `superseded`."""
    lab = sender(source_id)
    if lab is None:
        return ()
    return tuple(c for c in candidates
                 if c.correction and sender(c.source_id) == lab and superseded(reported_at, c.reported_at))


def superseded(reported_at: dt.datetime | None, on_record: dt.datetime | None) -> bool:
    """Whether a correction reported at `reported_at` is older than the values on record (reported at
    `on_record`), and so must not replace them. Only when both times are known: a tie, or a time the
    laboratory did not give, leaves the order of arrival to decide (the later one applies)."""
    return reported_at is not None and on_record is not None and reported_at < on_record


def latest_report(reported_at: dt.datetime | None, on_record: dt.datetime | None) -> dt.datetime | None:
    """The report time a result carries once a correction reported at `reported_at` replaced values reported
    at `on_record`: the correction's, or the one on record when the correction gave none."""
    return reported_at if reported_at is not None else on_record


def same_values(stored: dict, checked: dict) -> bool:
    """Whether a correction sent again carries the values already stored (then it is on record)."""
    return all(stored.get(name) == value for name, value in checked.items())


@dataclass(frozen=True)
class ResultIdentity:
    """What makes a result the result it is: the patient, the test, the day the sample was taken and its value
    as the laboratory reported it (a number, or the text a categorical or free-text result holds)."""

    patient_id: int
    test: str
    taken_on: dt.date
    value: float | str | None


def identity_differences(stored: ResultIdentity, incoming: ResultIdentity, *, value: bool = True) -> tuple[str, ...]:
    """What tells a result on record from one sent under the same source id ((), the same result: it is on
    record). A laboratory that reuses an id (a FHIR Observation id, an HL7 message control id) for another
    result sends another patient, test, day or value under it. `value=False` where the values on record may
    rightly differ: they are a correction's (the first version of a corrected result sent again)."""
    out = []
    if stored.patient_id != incoming.patient_id:
        out.append("patient")
    if stored.test != incoming.test:
        out.append("test")
    if stored.taken_on != incoming.taken_on:
        out.append("day")
    if value and stored.value != incoming.value:
        out.append("value")
    return tuple(out)
