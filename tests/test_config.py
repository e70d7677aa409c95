"""Issue 7: the site config (TOML): where it is found, what `tracker config show` prints (secrets masked),
and one-line errors naming the key."""

from __future__ import annotations

import pytest

from tests.conftest import dump_database


def test_defaults_without_a_file(tracker):
    info = tracker.json("config show")
    assert info["reminders"] == {"lead_days": 3, "channels": ["stdout"], "batch_size": 500}
    assert info["privacy"] == {"patient_label": "mrn_initials"}
    assert info["scheduler"] == {"at": "06:00", "grace_hours": 6.0, "lock_retry_minutes": 10}


def test_xdg_file_then_env_then_option(tracker, tmp_path, monkeypatch):
    xdg = tmp_path / "xdg-config" / "tracker"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text('timezone = "Europe/London"\n')
    monkeypatch.delenv("TRACKER_CONFIG")
    info = tracker.json("config show")
    assert info["config_file"] == str(xdg / "config.toml") and info["timezone"] == "Europe/London"
    env_file = tmp_path / "env.toml"
    env_file.write_text('timezone = "Europe/Paris"\n')
    monkeypatch.setenv("TRACKER_CONFIG", str(env_file))
    assert tracker.json("config show")["timezone"] == "Europe/Paris"
    option_file = tmp_path / "option.toml"
    option_file.write_text('timezone = "Asia/Tokyo"\n')
    assert tracker.json(f"--config {option_file} config show")["timezone"] == "Asia/Tokyo"


def test_show_masks_secrets_and_resolves_paths(tracker, tmp_path, monkeypatch):
    config = tmp_path / "site.toml"
    config.write_text("""
[reminders]
channels = ["jsonl", "email", "webhook"]
[reminders.jsonl]
path = "data/reminders.jsonl"
[reminders.email]
host = "smtp.clinic.example"
security = "starttls"
user = "tracker"
password_env = "TEST_SMTP_PASSWORD"
from = "tracker@clinic.example"
to = ["nurses@clinic.example"]
[reminders.webhook]
url = "https://hook:pw@hooks.clinic.example/r?token=SECRET"
""")
    monkeypatch.setenv("TRACKER_CONFIG", str(config))
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "hunter2")
    text = tracker("config show").stdout
    assert "hunter2" not in text and "SECRET" not in text and "hook:pw" not in text
    assert "[reminders.email]" in text and 'password = "***"' in text
    info = tracker.json("config show")
    assert info["reminders"]["email"]["port"] == 587  # the STARTTLS default
    assert info["reminders"]["jsonl"]["path"] == str(tmp_path / "data" / "reminders.jsonl")
    assert info["reminders"]["webhook"]["url"] == "https://***@hooks.clinic.example/***?***"  # path too (issue 15)


@pytest.mark.parametrize("body, key", [
    ('[reminders]\nchannels = ["stdout", "pager"]', "reminders.channels: 'pager'"),
    ('[reminders]\nlead_days = -1', "reminders.lead_days: -1"),
    ('[reminders]\nchannels = ["jsonl"]', "reminders.jsonl.path: missing"),
    ('[reminders]\nchannels = ["email"]\n[reminders.email]\nhost = "h"\nfrom = "a@b.example"',
     "reminders.email.to: None"),
    ('[reminders]\nchannels = ["email"]\n[reminders.email]\nhost = "h"\nfrom = "a@b.example"\nto = ["x@y"]\n'
     'security = "ssl"', "reminders.email.security: 'ssl'"),
    ('[reminders]\nchannels = ["email"]\n[reminders.email]\nhost = "h"\nfrom = "a@b.example"\nto = ["x@y"]\n'
     'password = "plain"', "reminders.email.password: not allowed in the file"),
    ('[reminders]\nchannels = ["webhook"]\n[reminders.webhook]\nurl = "ftp://x"', "reminders.webhook.url"),
    ('[privacy]\npatient_label = "full"', "privacy.patient_label: 'full'"),
    ('[scheduler]\nat = "6am"', "scheduler.at: '6am'"),
    ('[web]\nsession_max_hours = 0', "web.session_max_hours: 0"),
    ('[scheduler]\nlock_retry_minutes = 0', "scheduler.lock_retry_minutes: 0"),
    ('[scheduler]\nlock_retry_minutes = "ten"', "scheduler.lock_retry_minutes: 'ten'"),
    ('timezone = "Nowhere/City"', "timezone: 'Nowhere/City'"),
])
def test_invalid_config_is_one_line_naming_the_key_and_nightly_changes_nothing(tracker, tmp_path, body, key):
    config = tmp_path / "bad.toml"
    config.write_text(body + "\n")
    shown = tracker(f"--config {config} config show", ok=False)
    assert shown.exit_code == 8
    assert shown.stderr.startswith(f"error: {key}") and shown.stderr.count("\n") == 1
    before = dump_database(tracker.db)
    ran = tracker(f"--config {config} nightly --as-of 2026-01-16", ok=False)
    assert ran.exit_code == 8 and dump_database(tracker.db) == before
