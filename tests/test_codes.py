"""Standard codes (issue 16): LOINC/UCUM on the vocabulary, ATC on the drugs; their form is checked, and a
code no public source confirmed is reported missing by `schedules validate` (a warning), never guessed."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from tracker.core.codes import atc_problem, loinc_check_digit, loinc_problem, snomed_problem, ucum_problem, verhoeff_valid
from tracker.core.protocol import Protocol, protocol_hash
from tracker.core.vocabulary import parse_vocabulary
from tracker.errors import ProtocolError
from tracker.protocol_files import load_library, load_vocabulary
from tracker.resources import schedules_dir


@pytest.mark.parametrize("code", ["14682-9", "2160-0", "718-7", "1742-6", "26464-8", "59261-8", "8480-6"])
def test_loinc_check_digits_of_published_codes(code):
    assert loinc_problem(code) is None


@pytest.mark.parametrize("code, why", [("14682-8", "expected 14682-9"), ("14682", "not a LOINC code"),
                                       ("12345678-1", "not a LOINC code"), (14682, "not a LOINC code")])
def test_malformed_loinc_is_named(code, why):
    assert why in loinc_problem(code)


def test_check_digit_is_loincs_mod_10():
    # LOINC's own worked example: 12345 -> check digit 5.
    assert loinc_check_digit("12345") == 5


def test_atc_and_ucum_forms():
    assert atc_problem("L04AX03") is None
    assert "not an ATC code" in atc_problem("L04AX3")
    assert ucum_problem("10*9/L") is None and ucum_problem("mm[Hg]") is None
    assert ucum_problem("mL/min/{1.73_m2}") is None
    assert "not a UCUM unit" in ucum_problem("mm[Hg")


def test_vocabulary_codes_and_their_lookup():
    vocabulary = load_vocabulary()
    creatinine = vocabulary.get("creatinine")
    assert (creatinine.loinc, creatinine.ucum) == ("14682-9", "umol/L")  # the molar variant, as stored
    by_loinc = vocabulary.by_loinc()
    assert by_loinc["14682-9"] == by_loinc["2160-0"] == "creatinine"  # the mass code converts through the unit
    assert by_loinc["1742-6"] == "alt"
    # Every numeric analyte carries its unit in UCUM.
    assert [t.code for t in vocabulary.tests.values() if t.is_numeric and not t.ucum] == []


def test_drugs_carry_atc_codes_and_the_unconfirmed_are_listed():
    library = load_library()
    assert library.get("methotrexate").atc == "L04AX03"
    assert library.get("dupilumab").atc == "D11AH05"
    assert library.get("nemolizumab").atc == "D11AH12"  # the UK SmPC, section 5.1
    # Phototherapy is a procedure: no ATC code exists, and the protocol says so instead of leaving a gap.
    assert [(p.id, p.missing_codes()) for p in library.protocols.values() if p.atc is None] == [("nbuvb", [])]
    assert library.get("azathioprine").rxnorm == "1256" and library.get("ciclosporin").rxnorm == "3008"
    assert library.get("prednisolone").rxnorm == "8638"  # HL7's PDDI CDS IG value set
    # CPIC's drug table: the RxNorm ingredient beside the same ATC code.
    assert (library.get("methotrexate").rxnorm, library.get("mycophenolate").rxnorm) == ("6851", "7145")
    # SNOMED CT substances from HL7 Switzerland's active-ingredient value set (ciclosporin and mycophenolate
    # mofetil also as HL7 Europe's PROTECT-CHILD IG maps them); upadacitinib and apremilast from the German KBV's
    # published value set and substance-to-ATC map.
    assert {p.id: p.snomed for p in library.protocols.values() if p.snomed} == {
        "azathioprine": "372574004", "ciclosporin": "387467008", "dupilumab": "733487000",
        "methotrexate": "387381009", "mycophenolate": "386976000", "prednisolone": "116601002",
        "upadacitinib": "789397000", "apremilast": "703350008"}
    # No public source read so far states the others (RxNorm of the newer biologics, JAK inhibitors and
    # apremilast; SNOMED CT of five of them): they are left out, and `schedules validate` lists each as missing.
    assert sorted(p.id for p in library.protocols.values() if p.rxnorm) == [
        "azathioprine", "ciclosporin", "methotrexate", "mycophenolate", "prednisolone"]
    assert library.get("dupilumab").missing_codes() == ["rxnorm: missing"]
    assert library.get("upadacitinib").missing_codes() == ["rxnorm: missing"]
    assert library.get("baricitinib").missing_codes() == ["snomed: missing", "rxnorm: missing"]
    assert library.get("azathioprine").missing_codes() == []


def test_vocabulary_codes_missing_are_only_those_no_public_source_confirmed():
    """Each test has its LOINC code or a stated reason for none (a review staff record; cmp, a local
    grouping; the chest imaging summary): none is missing."""
    vocabulary = load_vocabulary()
    assert vocabulary.missing_codes() == []
    # NUDT15: the metabolizer interpretation, as TPMT's (HL7 Europe's eHDSI laboratory value set).
    assert vocabulary.get("nudt15").loinc == "93195-6" and vocabulary.by_loinc()["93195-6"] == "nudt15"
    # TPMT: the metabolizer interpretation term, and the code a laboratory sends its interpretation under.
    tpmt = vocabulary.get("tpmt")
    assert (tpmt.loinc, tpmt.also_loinc) == ("79713-4", ("62365-2",))
    assert vocabulary.by_loinc()["62365-2"] == vocabulary.by_loinc()["79713-4"] == "tpmt"
    assert vocabulary.get("cxr").no_loinc.startswith("a clinician's normal/abnormal reading")
    # The molar (SI) variants tracker stores, and Cockcroft-Gault clearance (mL/min).
    assert {code: vocabulary.get(code).loinc for code in ("urea", "urate", "hdl", "ldl", "crcl")} == {
        "urea": "22664-7", "urate": "14933-6", "hdl": "14646-4", "ldl": "22748-8", "crcl": "35591-7"}
    assert (vocabulary.get("cbc").loinc, vocabulary.get("lipids").loinc, vocabulary.get("bp").loinc) == (
        "57021-8", "24331-1", "85354-9")
    assert vocabulary.get("cmp").no_loinc.startswith("a local grouping")
    by_loinc = vocabulary.by_loinc()
    assert (by_loinc["5195-3"], by_loinc["71773-6"], by_loinc["56888-1"]) == ("hbv", "tb", "hiv")
    # A calculated or direct molar LDL and the mass codes a laboratory may send all map to ldl.
    assert {by_loinc[c] for c in ("22748-8", "39469-2", "69419-0", "13457-7", "18262-6")} == {"ldl"}
    assert (by_loinc["3084-1"], by_loinc["2085-9"]) == ("urate", "hdl")
    assert "57021-8" not in by_loinc and vocabulary.panel_by_loinc()["57021-8"] == "cbc"


def test_schedules_show_names_the_drug_codes_or_why_there_is_none(tracker):
    assert tracker(["schedules", "show", "azathioprine"]).stdout.splitlines()[1] == (
        "Codes: ATC L04AX01; SNOMED CT 372574004; RxNorm 1256 [WHO-ATC, RXNORM-IN, SNOMED-CH-TERM]")
    assert tracker(["schedules", "show", "upadacitinib"]).stdout.splitlines()[1] == (
        "Codes: ATC L04AF03; SNOMED CT 789397000; RxNorm not confirmed by a public source [WHO-ATC, SNOMED-KBV-NFD]")
    assert tracker(["schedules", "show", "baricitinib"]).stdout.splitlines()[1] == (
        "Codes: ATC L04AF02; SNOMED CT, RxNorm not confirmed by a public source [WHO-ATC]")
    assert tracker(["schedules", "show", "nbuvb"]).stdout.splitlines()[1].startswith(
        "Codes: no ATC code: a procedure (narrowband UVB light), not a medicinal product")


def test_codes_do_not_change_a_protocols_content_hash():
    """Adding a drug code (and the source it was read from) changes no plan: courses stay on their content."""
    data = yaml.safe_load((schedules_dir() / "methotrexate.yaml").read_text())
    with_codes = Protocol.model_validate(data)
    for key in ("atc", "snomed", "rxnorm", "code_sources"):
        data.pop(key)
    for key in ("WHO-ATC", "CPIC-DRUGS", "SNOMED-CH-TERM"):
        data["sources"].pop(key)
    assert protocol_hash(with_codes) == protocol_hash(Protocol.model_validate(data))


def test_malformed_loinc_in_the_vocabulary_fails():
    with pytest.raises(ProtocolError) as caught:
        parse_vocabulary({"sources": {"S": {"citation": "x"}},
                          "tests": {"alt": {"unit": "U/L", "loinc": "1742-5", "code_sources": ["S"]},
                                    "ast": {"unit": "U/L", "loinc": "1920-8"}}})
    assert caught.value.problems == [
        "vocabulary.yaml: tests.alt.loinc: '1742-5': wrong check digit (expected 1742-6)",
        "vocabulary.yaml: tests.ast.code_sources: a LOINC code needs the source it was taken from",
    ]


def test_validate_fails_on_a_malformed_atc_and_warns_on_a_missing_one(tracker, tmp_path):
    drug = textwrap.dedent(
        """\
        id: clinicdrug
        version: 1
        name: Clinic drug
        class: biologic
        atc: L04X
        code_sources: [LOCAL]
        sources:
          LOCAL:
            citation: Our clinic's protocol
        """
    )
    (tmp_path / "clinicdrug.yaml").write_text(drug)
    result = tracker(["schedules", "validate", str(tmp_path / "clinicdrug.yaml")], ok=False)
    assert result.exit_code == ProtocolError.exit_code
    assert "atc: 'L04X' is not an ATC code" in result.stderr

    (tmp_path / "clinicdrug.yaml").write_text(drug.replace("atc: L04X\ncode_sources: [LOCAL]\n", ""))
    result = tracker(["schedules", "validate", str(tmp_path / "clinicdrug.yaml")])
    assert result.stderr.splitlines() == [f"warning: {tmp_path / 'clinicdrug.yaml'}:1: {field}: missing"
                                          for field in ("atc", "snomed", "rxnorm")]


@pytest.mark.parametrize("field, value, why", [
    ("snomed", '"387467009"', "'387467009': wrong check digit (SNOMED CT identifiers end in a Verhoeff check digit)"),
    ("snomed", '"38746"', "'38746' is not a SNOMED CT identifier (6 to 18 digits)"),
    ("snomed", '"1234567013"', "'1234567013' is not a SNOMED CT concept identifier (partition 01, not 00 or 10)"),
    ("rxnorm", '"68a51"', "'68a51' is not an RxNorm concept id (digits)"),
    ("rxnorm", '"06851"', "'06851' is not an RxNorm concept id (digits)"),
])
def test_validate_fails_on_a_malformed_snomed_or_rxnorm_code_naming_field_and_value(tracker, tmp_path, field, value, why):
    (tmp_path / "clinicdrug.yaml").write_text(textwrap.dedent(
        f"""\
        id: clinicdrug
        version: 1
        name: Clinic drug
        class: biologic
        atc: L04AX03
        {field}: {value}
        code_sources: [LOCAL]
        sources:
          LOCAL:
            citation: Our clinic's protocol
        """))
    result = tracker(["schedules", "validate", str(tmp_path / "clinicdrug.yaml")], ok=False)
    assert result.exit_code == ProtocolError.exit_code
    assert f"{field}: {why}" in result.stderr


def test_a_procedure_without_atc_is_not_reported_missing_snomed_or_rxnorm():
    """Phototherapy states why it has no ATC code; RxNorm and SNOMED CT product codes do not apply either."""
    data = yaml.safe_load((schedules_dir() / "methotrexate.yaml").read_text())
    stated = Protocol.model_validate({**data, "atc": None, "snomed": None, "rxnorm": None, "code_sources": [],
                                      "no_atc": "a procedure"})
    assert stated.missing_codes() == []
    assert Protocol.model_validate(data).missing_codes() == []  # methotrexate: ATC, SNOMED CT and RxNorm


def test_validate_refuses_a_ucum_unit_that_is_not_the_tests_unit(tracker, tmp_path):
    text = (schedules_dir() / "vocabulary.yaml").read_text()
    bad = text.replace('unit: "umol/L", ref_low: 45, ref_high: 110', 'unit: "umol/L", ref_low: 45, ref_high: 110', 1)
    bad = bad.replace('ucum: "umol/L", code_sources: [FHIR-CPG-CREATININE', 'ucum: "mmol/L", code_sources: [FHIR-CPG-CREATININE')
    assert bad != text
    (tmp_path / "vocabulary.yaml").write_text(bad)
    result = tracker(["schedules", "validate", str(tmp_path / "vocabulary.yaml")], ok=False)
    assert "tests.creatinine.ucum: 'mmol/L' is not 'umol/L' (1 mmol/L = 1000 umol/L)" in result.stderr


@pytest.mark.parametrize("code", ["22298006", "73211009", "387381009"])
def test_snomed_identifiers_with_their_verhoeff_check_digit_pass(code):
    assert snomed_problem(code) is None


@pytest.mark.parametrize("code, why", [("22298007", "wrong check digit"), ("22298060", "wrong check digit"),
                                       ("12345", "not a SNOMED CT identifier"), (22298006, "not a SNOMED CT")])
def test_a_mistyped_snomed_identifier_is_named(code, why):
    assert why in snomed_problem(code)


def test_verhoeff_catches_a_transposition():
    assert verhoeff_valid("22298006") and not verhoeff_valid("22928006")


def test_a_stated_reason_for_no_loinc_is_not_reported_missing_and_never_stands_beside_a_code():
    vocabulary = parse_vocabulary({"tests": {"skin_check": {"values": ["normal", "abnormal"],
                                                            "no_loinc": "a clinical review"}}})
    assert vocabulary.tests["skin_check"].no_loinc == "a clinical review"
    assert vocabulary.missing_codes() == []
    with pytest.raises(ProtocolError) as caught:
        parse_vocabulary({"sources": {"S": {"citation": "x"}},
                          "tests": {"alt": {"unit": "U/L", "loinc": "1742-6", "code_sources": ["S"], "no_loinc": "x"},
                                    "tb": {"values": ["negative"], "no_loinc": "  "}}})
    assert [p.split(":")[1].strip() for p in caught.value.problems] == ["tests.alt.no_loinc", "tests.tb.no_loinc"]


def test_a_stated_reason_for_no_atc_is_not_reported_missing_and_leaves_the_content_hash():
    data = yaml.safe_load((schedules_dir() / "methotrexate.yaml").read_text())
    plain = Protocol.model_validate({**data, "atc": None, "snomed": None, "rxnorm": None, "code_sources": []})
    stated = Protocol.model_validate({**data, "atc": None, "snomed": None, "rxnorm": None, "code_sources": [],
                                      "no_atc": "a procedure"})
    assert plain.missing_codes() == ["atc: missing", "snomed: missing", "rxnorm: missing"]
    assert stated.missing_codes() == []
    assert protocol_hash(plain) == protocol_hash(stated)
    with pytest.raises(ValueError, match="no_atc"):
        Protocol.model_validate({**data, "no_atc": "a procedure"})  # beside its ATC code


def test_a_panels_loinc_names_an_order_and_maps_no_incoming_result():
    vocabulary = parse_vocabulary({"sources": {"S": {"citation": "x"}}, "tests": {
        "cbc": {"analytes": ["wbc"], "loinc": "57021-8", "code_sources": ["S"]},
        "wbc": {"unit": "10^9/L", "loinc": "26464-8", "code_sources": ["S"]}}})
    assert vocabulary.by_loinc() == {"26464-8": "wbc"}
    assert vocabulary.panel_by_loinc() == {"57021-8": "cbc"}
