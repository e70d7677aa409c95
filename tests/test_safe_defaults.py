"""Issue 15 item 7: safe defaults. E-mail is encrypted unless the relay is this machine or plaintext is
explicitly allowed; `config show` never prints a secret carried in a URL; the shipped examples keep the
digest (MRNs, drugs, lab values) out of journals and logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tracker.config import load_settings
from tracker.core.settings import mask_url, parse_settings
from tracker.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _email(**email) -> dict:
    return {"reminders": {"channels": ["email"],
                          "email": {"from": "t@clinic.example", "to": ["n@clinic.example"], **email}}}


def test_email_defaults_to_starttls_on_the_submission_port():
    email = parse_settings(_email(host="smtp.clinic.example")).reminders.email
    assert (email.security, email.port, email.allow_plaintext) == ("starttls", 587, False)


def test_plaintext_email_to_another_host_is_refused_in_one_line():
    with pytest.raises(ConfigError) as caught:
        parse_settings(_email(host="smtp.clinic.example", security="none"))
    assert str(caught.value) == (
        "reminders.email.security: 'none': sends patient data unencrypted to smtp.clinic.example; use "
        "starttls or tls, or set reminders.email.allow_plaintext = true if that network is trusted")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.53", "::1", "[::1]", "relay.localhost"])
def test_plaintext_to_this_machine_is_allowed(host):
    assert parse_settings(_email(host=host, security="none")).reminders.email.port == 25


def test_plaintext_to_another_host_needs_an_explicit_allow():
    email = parse_settings(_email(host="10.0.0.5", security="none", allow_plaintext=True)).reminders.email
    assert (email.security, email.allow_plaintext) == ("none", True)
    with pytest.raises(ConfigError, match=r"^reminders.email.allow_plaintext: 'yes': expected true or false$"):
        parse_settings(_email(host="10.0.0.5", security="none", allow_plaintext="yes"))


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.example/services/T000/B000/XXXXSECRET", "https://hooks.slack.example/***"),
    ("https://hook.example/r?token=SECRET", "https://hook.example/***?***"),
    ("https://user:SECRET@hook.example/", "https://***@hook.example/"),
    ("https://hook.example", "https://hook.example"),
])
def test_masked_urls_keep_only_scheme_and_host(url, shown):
    assert mask_url(url) == shown


def test_config_show_prints_no_secret_from_a_webhook_path(tracker, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[reminders]\nchannels = ["webhook"]\n[reminders.webhook]\n'
                      'url = "https://outlook.office.example/webhookb2/abc/IncomingWebhook/SECRET123/x"\n')
    text = tracker(f"--config {config} config show").stdout
    json_out = tracker(f"--config {config} config show --json").stdout
    assert "SECRET123" not in text and "SECRET123" not in json_out
    assert "https://outlook.office.example/***" in text


def test_the_example_config_sends_no_digest_to_stdout_and_encrypts_email(monkeypatch):
    settings = load_settings(str(EXAMPLES / "config.toml"))
    assert "stdout" not in settings.reminders.channels
    assert settings.reminders.email.security == "starttls" and not settings.reminders.email.allow_plaintext
    assert os.path.isabs(settings.reminders.jsonl_path)


@pytest.mark.parametrize("unit", ["tracker-nightly.service", "tracker-scheduler.service"])
def test_the_example_units_discard_stdout_and_create_private_files(unit):
    lines = (EXAMPLES / unit).read_text().splitlines()
    assert "StandardOutput=null" in lines and "UMask=0077" in lines


def test_the_example_cron_line_logs_stderr_only():
    jobs = [line for line in (EXAMPLES / "crontab").read_text().splitlines()
            if line and not line.startswith("#") and "tracker nightly" in line]
    assert jobs and all(">/dev/null" in job and "2>&1" not in job and "umask 077" in job for job in jobs)
