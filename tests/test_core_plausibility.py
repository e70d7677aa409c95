"""Issue 13 (units): the plausibility rule and the vocabulary keys it reads, on plain data."""

from __future__ import annotations

import datetime as dt

import pytest

from tracker.core.plausibility import implausible_reason, is_plausible, suggest_unit
from tracker.core.vocabulary import TestCode as Analyte, parse_vocabulary
from tracker.errors import InputError, ProtocolError

NEUTROPHILS = Analyte(code="neutrophils", name="Neutrophils", plain="neutrophils", unit="10^9/L",
                      plausible=(0.0, 100.0), plausible_clinic_default=True,
                      also_reported_in=("cells/uL", "10^3/uL"))
DAY = dt.date(2026, 12, 2)


def test_the_range_is_inclusive_and_an_analyte_without_one_takes_any_number():
    assert is_plausible(NEUTROPHILS, 0) and is_plausible(NEUTROPHILS, 100)
    assert not is_plausible(NEUTROPHILS, -0.1) and not is_plausible(NEUTROPHILS, 100.5)
    assert is_plausible(Analyte(code="x", name="x", plain="x", unit="U/L"), 1e12)


def test_the_suggested_unit_is_the_first_whose_reading_is_plausible():
    # 800 read as cells/uL is 0.8 x10^9/L; read as 10^3/uL it is 800 again.
    assert suggest_unit(NEUTROPHILS, {"10^3/uL": 800.0, "cells/uL": 0.8}) == "cells/uL"
    assert suggest_unit(NEUTROPHILS, {"10^3/uL": 800.0}) is None


def test_the_refusal_names_test_value_unit_date_range_and_the_likely_unit():
    reason = implausible_reason(NEUTROPHILS, 800.0, 800.0, "10^9/L", DAY,
                                {"10^9/L": 800.0, "cells/uL": 0.8, "10^3/uL": 800.0})
    assert reason == ("neutrophils 800 10^9/L on 2026-12-02 is outside 0-100 10^9/L (clinic default); "
                      "did you mean cells/uL?")
    assert implausible_reason(NEUTROPHILS, 4.2, 4.2, "10^9/L", DAY, {}) is None


def test_a_converted_value_is_shown_as_reported_and_as_converted():
    reason = implausible_reason(NEUTROPHILS, 800.0, 800000.0, "cells/uL", DAY,
                                {"10^9/L": 800000.0, "cells/uL": 800.0})
    assert reason.startswith("neutrophils 800000 cells/uL on 2026-12-02 (= 800 10^9/L) is outside 0-100")
    assert "did you mean" not in reason  # the reported unit itself is never suggested


def _vocabulary(**neutrophils):
    return {"sources": {"REF": {"citation": "a reference"}},
            "tests": {"neutrophils": {"unit": "10^9/L", **neutrophils}}}


def test_the_vocabulary_parses_plausible_ranges_molar_masses_and_other_units():
    vocabulary = parse_vocabulary(_vocabulary(plausible={"low": 0, "high": 100, "clinic_default": True},
                                              molar_mass={"g_per_mol": 113.12, "sources": ["REF"]},
                                              also_reported_in=["cells/uL"]))
    test = vocabulary.get("neutrophils")
    assert test.plausible == (0.0, 100.0) and test.plausible_clinic_default
    assert test.molar_mass == 113.12 and test.also_reported_in == ("cells/uL",)


@pytest.mark.parametrize("spec,words", [
    ({"plausible": {"low": 0, "high": 100}}, "plausible: needs sources or clinic_default"),
    ({"plausible": {"low": 9, "high": 1, "clinic_default": True}}, "X <= Y"),
    ({"plausible": [0, 100]}, "expected {low: X, high: Y}"),
    ({"molar_mass": {"g_per_mol": 113.12, "sources": ["NOPE"]}}, "'NOPE' is not defined in sources"),
    ({"molar_mass": {"g_per_mol": 0, "clinic_default": True}}, "X > 0"),
])
def test_an_unmarked_or_malformed_number_in_the_vocabulary_is_a_protocol_error(spec, words):
    with pytest.raises(ProtocolError) as error:
        parse_vocabulary(_vocabulary(**spec))
    assert words in str(error.value)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "lots"])
def test_a_numeric_result_must_be_a_finite_number_and_the_refusal_names_the_day(text):
    vocabulary = parse_vocabulary(_vocabulary())
    with pytest.raises(InputError) as error:
        vocabulary.check_value("neutrophils", text, DAY)
    assert error.value.field == "value" and "neutrophils on 2026-12-02 is numeric (10^9/L)" in str(error.value)
