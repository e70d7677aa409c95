"""Issue 18 item 1: the pure input rules (tracker/core/inputs.py) and the site config's known keys
(tracker/core/settings.py), on plain values."""

from __future__ import annotations

import datetime as dt

import pytest

from tracker.core import inputs
from tracker.core.inputs import DateWindow
from tracker.core.settings import parse_settings
from tracker.errors import ConfigError, InputError


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e309", "7_0", "1_5", "0x10", "", " ", "1,5",
                                  "١٢", "1e", "--1", "True"])
def test_only_plain_finite_decimals_are_numbers(text):
    with pytest.raises(InputError) as error:
        inputs.finite_number(text, "value")
    assert str(error.value).startswith("value: ")


@pytest.mark.parametrize("text,number", [("12", 12.0), ("0.5", 0.5), (".5", 0.5), ("-3", -3.0), ("+2.", 2.0),
                                         ("1e3", 1000.0), (" 7 ", 7.0)])
def test_plain_numbers_are_read(text, number):
    assert inputs.finite_number(text, "value") == number


def test_bounds():
    assert inputs.finite_number("0.2", "w", low=0.2, high=500) == 0.2
    with pytest.raises(InputError, match="at most 500"):
        inputs.finite_number("501", "w", low=0.2, high=500)
    with pytest.raises(InputError, match="greater than 0"):
        inputs.finite_number("0", "w", positive=True)


def test_reference_limits_are_finite_positive_and_ordered():
    assert inputs.reference_limits(0.0, 40.0) == (0.0, 40.0)
    assert inputs.reference_limits(None, 40.0) == (None, 40.0)
    for low, high, field in ((None, 0.0, "ref_high"), (None, -5.0, "ref_high"), (-1.0, 5.0, "ref_low"),
                             (40.0, 30.0, "ref_low"), (30.0, 30.0, "ref_low"), (None, float("nan"), "ref_high")):
        with pytest.raises(InputError) as error:
            inputs.reference_limits(low, high)
        assert error.value.field == field


@pytest.mark.parametrize("mrn", ["100234\u200b", "DEM\u041e1", "1\x1b[2J2", "12\x7f34", "../../x", "a b", "-1",
                                 "x/", "1" * 33, "", "\u202e123"])
def test_mrns_are_plain_ascii_identifiers(mrn):
    with pytest.raises(InputError):
        inputs.clean_mrn(mrn)


def test_mrns_and_names_are_normalised():
    assert inputs.clean_mrn(" P-001/2 ") == "P-001/2"
    assert inputs.mrn_key("dem01") == inputs.mrn_key("DEM01") == inputs.mrn_key("ＤＥＭ０１")
    assert inputs.clean_text("Jose\u0301", "name") == "Jos\u00e9"
    for bad in ("Ann\nLee", "Ann\u200dLee", "Ann \u202eeeL", "A\udcff", "x" * 201):
        with pytest.raises(InputError):
            inputs.clean_text(bad, "name", max_len=inputs.NAME_MAX)


def test_event_dates_within_the_window():
    today, window = dt.date(2026, 12, 3), DateWindow()
    assert inputs.event_date(dt.date(2026, 12, 1), today, "on", window) is None
    assert inputs.event_date(dt.date(2027, 12, 3), today, "on", window) is None  # exactly a year ahead
    with pytest.raises(InputError, match="days ahead"):
        inputs.event_date(dt.date(2027, 12, 4), today, "on", window)
    with pytest.raises(InputError, match="--historic"):
        inputs.event_date(dt.date(1990, 3, 4), today, "on", window, start=True)
    assert "days ago" in inputs.event_date(dt.date(1990, 3, 4), today, "on", window, start=True, historic=True)
    assert inputs.event_date(dt.date(1990, 3, 4), today, "on", window) is not None  # a stop: warned only
    with pytest.raises(InputError, match="outside"):
        inputs.bounded_date(dt.date(9999, 1, 1), "on")
    inputs.date_range(dt.date(2026, 1, 1), dt.date(2026, 1, 1))
    with pytest.raises(InputError, match="after --to"):
        inputs.date_range(dt.date(2026, 1, 2), dt.date(2026, 1, 1))


@pytest.mark.parametrize("text,ok", [("1w", True), ("7d", True), ("2y", True), ("24m", True), ("104w", True),
                                     ("6d", False), ("1d", False), ("25m", False), ("1000y", False),
                                     ("99999999999y", False), ("0w", False)])
def test_intervals_from_a_week_to_two_years(text, ok):
    if ok:
        assert str(inputs.interval(text)) == text
    else:
        with pytest.raises(InputError):
            inputs.interval(text)


@pytest.mark.parametrize("raw,words", [
    ({"reminder": {"lead_days": 30}}, ["reminder: unknown table", "'reminders'"]),
    ({"alerts": {"overdue_grace_day": 1}}, ["alerts.overdue_grace_day: unknown key", "'overdue_grace_days'"]),
    ({"reminders": {"email": {"hots": "x"}}}, ["reminders.email.hots", "'host'"]),
    ({"zzz": 1}, ["zzz: unknown key", "expected one of"]),
    ({"reminders": {"channels": []}}, ["reminders.channels: []", "at least one channel"]),
    ({"feeds": "http://x"}, ["feeds", "expected a table"]),
    ({"dates": {"max_ahead_days": -1}}, ["dates.max_ahead_days"]),
])
def test_unknown_config_keys_name_the_nearest_known_one(raw, words):
    with pytest.raises(ConfigError) as error:
        parse_settings(raw)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_the_date_window_is_read_from_the_config():
    settings = parse_settings({"dates": {"max_ahead_days": 30, "earliest_start": dt.date(1995, 1, 1),
                                         "warn_back_days": 90}})
    assert settings.dates == DateWindow(30, dt.date(1995, 1, 1), 90)
    assert parse_settings({}).dates == DateWindow()
