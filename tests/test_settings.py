"""Issue 12: the site settings are parsed once, purely, from the TOML tables (tracker/core/settings.py)."""

from __future__ import annotations

import dataclasses

import pytest

from tracker.core.settings import AlertSettings, CalendarSettings, Settings, parse_settings
from tracker.errors import ConfigError


def test_no_tables_give_the_defaults():
    settings = parse_settings({})
    assert settings == Settings()
    assert settings.calendar.merge_window_days == 3 and settings.reminders.channels == ("stdout",)
    assert settings.alerts == AlertSettings() and settings.feeds.base_url == "http://127.0.0.1:8080"
    assert settings.export.patient_label == "mrn_initials" and settings.export.alarm_lead_hours is None


def test_every_table_is_read_and_frozen():
    settings = parse_settings({
        "timezone": "Europe/London",
        "alerts": {"overdue_grace_days": 10},
        "calendar": {"merge_window_days": 1, "alarm_lead_hours": 12, "name": " Derm clinic "},
        "privacy": {"patient_label": "mrn"},
        "feeds": {"base_url": "https://cal.clinic.example/"},
        "scheduler": {"at": "05:30", "grace_hours": 2},
        "reminders": {"channels": ["email", "webhook"], "lead_days": 5,
                      "email": {"host": "smtp", "from": "t@c.example", "to": "n@c.example",
                                "security": "tls", "password_env": "SMTP_PW"},
                      "webhook": {"url": "https://hook.example/r", "token_env": "HOOK_TOKEN"}},
    })
    assert settings.alerts.overdue_grace_days == 10 and settings.alerts.baseline_window_days == 28
    assert settings.calendar == CalendarSettings(1, 12.0, "Derm clinic")
    assert settings.export.clinic_name == "Derm clinic" and settings.export.patient_label == "mrn"
    assert settings.feeds.base_url == "https://cal.clinic.example"
    assert (settings.scheduler.at, settings.scheduler.grace_hours) == ("05:30", 2.0)
    email = settings.reminders.email
    assert (email.port, email.to, email.password_env) == (465, ("n@c.example",), "SMTP_PW")
    assert settings.reminders.webhook.token_env == "HOOK_TOKEN"  # the name of the secret, never the secret
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.calendar.merge_window_days = 5


@pytest.mark.parametrize("raw, message", [
    ({"calendar": {"merge_window_days": "three"}},
     "calendar.merge_window_days: 'three': expected a whole number of days >= 0"),
    ({"calendar": {"alarm_lead_hours": 1000}}, "calendar.alarm_lead_hours: 1000:"),
    ({"alerts": {"overdue_grace_days": True}}, "alerts.overdue_grace_days: True:"),
    ({"feeds": {"base_url": "calendar.clinic.example"}}, "feeds.base_url: 'calendar.clinic.example':"),
    ({"privacy": {"patient_label": "full"}}, "privacy.patient_label: 'full':"),
    ({"reminders": {"channels": ["webhook"], "webhook": {"url": "ftp://u:pw@x/?t=1"}}},
     "reminders.webhook.url: 'ftp://***@x/?***':"),
])
def test_a_bad_value_is_one_error_naming_key_and_value(raw, message):
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
