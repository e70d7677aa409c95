"""The standard codes an export shows for a planned item (issue 16: "codes appear in every export"). Pure.

A planned test is named by tracker's vocabulary code; its standard form is the LOINC code (and the UCUM
unit) the vocabulary carries. A panel is shown as its own LOINC code, the order's (cbc, lipids, bp; cmp
is a local grouping with none), followed by the codes of its analytes, what the laboratory reports. A test the
vocabulary gives no LOINC (no public source confirmed one) is simply absent: a code is never invented.
A drug's standard codes are its protocol's `atc`, `snomed` and `rxnorm`.

Staff exports (ICS/feeds/CalDAV, the JSON listings) carry these; patient calendars stay plain language.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestCoding:
    test: str  # tracker's vocabulary code of the analyte (or the test itself)
    name: str
    loinc: str
    ucum: str | None = None
    panel: str | None = None  # the planned panel it was expanded from; None when planned as itself

    def as_dict(self) -> dict:
        return {"test": self.test, "loinc": self.loinc, "ucum": self.ucum, "panel": self.panel}

    def line(self) -> str:
        """'LOINC 718-7 Haemoglobin (UCUM g/L)': one line of a staff description."""
        unit = f" (UCUM {self.ucum})" if self.ucum else ""
        return f"LOINC {self.loinc} {self.name}{unit}"


@dataclass(frozen=True)
class DrugCoding:
    drug: str  # tracker's protocol id
    name: str
    atc: str | None = None
    snomed: str | None = None
    rxnorm: str | None = None

    def as_dict(self) -> dict:
        return {"drug": self.drug, "atc": self.atc, "snomed": self.snomed, "rxnorm": self.rxnorm}

    def labelled(self) -> tuple[tuple[str, str | None], ...]:
        """(label, code or None) of each standard the drug may be coded in, in the order they are shown."""
        return ("ATC", self.atc), ("SNOMED CT", self.snomed), ("RxNorm", self.rxnorm)

    def lines(self) -> list[str]:
        """'ATC L04AX03 Methotrexate', then SNOMED CT and RxNorm where the protocol carries them."""
        return [f"{label} {value} {self.name}" for label, value in self.labelled() if value]

    @property
    def coded(self) -> bool:
        return bool(self.atc or self.snomed or self.rxnorm)


def _clean(value) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def test_codings(tests, vocabulary) -> tuple[TestCoding, ...]:
    """The LOINC codings of planned tests (vocabulary codes), in order, each code once: a panel's own code
    (when it has one), then its analytes'; tests with no LOINC give nothing."""
    out: list[TestCoding] = []
    seen: set[str] = set()

    def add(code: str, panel: str | None) -> None:
        spec = vocabulary.tests.get(code) if vocabulary is not None else None
        loinc = _clean(spec.loinc) if spec is not None else None
        if spec is None or loinc is None or loinc in seen:
            return
        seen.add(loinc)
        out.append(TestCoding(code, spec.name, loinc, _clean(spec.ucum), panel))

    for code in tests:
        spec = vocabulary.tests.get(code) if vocabulary is not None else None
        add(code, None)  # the test, or the panel's own (order) code where it has one
        if spec is not None and spec.analytes:
            for analyte in spec.analytes:  # then what the panel reports, to match results back
                add(analyte, code)
    return tuple(out)


def drug_codes_text(protocol) -> str:
    """One line naming a protocol's drug codes for `schedules show` and the Protocols page: 'ATC L04AX01;
    RxNorm 1256', the stated reason where no ATC code can exist, and what is not yet confirmed."""
    labelled = drug_coding(protocol.id, protocol).labelled()
    found = [f"{label} {value}" for label, value in labelled if value]
    stated = {"ATC": protocol.no_atc} if protocol.no_atc else {}
    found += [f"no {label} code: {why}" for label, why in stated.items()]
    missing = [label for label, value in labelled if not value and label not in stated]
    if missing:
        found.append(f"{', '.join(missing)} not confirmed by a public source")
    return "; ".join(found)


def drug_coding(drug: str, protocol) -> DrugCoding:
    """A drug's standard codes from its protocol (None: a drug no protocol in the library describes)."""
    if protocol is None:
        return DrugCoding(drug, drug)
    return DrugCoding(drug, protocol.name, _clean(protocol.atc), _clean(protocol.snomed), _clean(protocol.rxnorm))


def codes_json(tests, drugs, vocabulary, protocols) -> dict:
    """The `codes` object of a JSON row: {"tests": [...], "drugs": [...]}. `protocols` maps a drug id to
    its protocol (a drug missing from it is listed with null codes)."""
    return {"tests": [c.as_dict() for c in test_codings(tests, vocabulary)],
            "drugs": [drug_coding(d, protocols.get(d)).as_dict() for d in dict.fromkeys(d for d in drugs if d)]}
