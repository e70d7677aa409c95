"""The site configuration file (TOML): `--config`, else `$TRACKER_CONFIG`, else
`<XDG config dir>/tracker/config.toml` if it exists. Everything has a default, so no file is needed."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from tracker.errors import ConfigError


@dataclass
class Config:
    path: str | None = None
    timezone: str = "UTC"
    schedules_dir: str | None = None  # clinic protocol overrides
    raw: dict = field(default_factory=dict)

    def section(self, *names: str) -> dict:
        """A nested table of the raw file, e.g. section("reminders", "email"); {} when absent."""
        node = self.raw
        for name in names:
            node = node.get(name, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("tracker", appauthor=False)) / "config.toml"


def load_config(path: str | None = None) -> Config:
    chosen = path or os.environ.get("TRACKER_CONFIG")
    if chosen is None:
        candidate = default_config_path()
        if not candidate.exists():
            return Config()
        chosen = str(candidate)
    try:
        with open(chosen, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config: {chosen!r}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {chosen!r}: not valid TOML ({exc})") from None
    timezone = raw.get("timezone", "UTC")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone)
    except Exception:
        raise ConfigError(f"timezone: {timezone!r}: unknown time zone") from None
    schedules = raw.get("schedules_dir")
    if schedules and not os.environ.get("TRACKER_SCHEDULES"):
        # Relative paths are relative to the config file.
        schedules = str((Path(chosen).parent / schedules).resolve())
    return Config(path=chosen, timezone=timezone, schedules_dir=schedules, raw=raw)


# --- Reminders, privacy and scheduler settings (issue 7) -------------------------------------------------

CHANNELS = ("stdout", "jsonl", "email", "webhook")
SECURITIES = ("none", "starttls", "tls")
DEFAULT_LEAD_DAYS = 3
DEFAULT_SCHEDULER_AT = "06:00"  # outside the 02:00-03:00 DST gap (engineering notes, APScheduler)
DEFAULT_GRACE_HOURS = 6


@dataclass
class EmailSettings:
    host: str
    port: int
    security: str  # none | starttls | tls
    user: str | None
    password_env: str | None
    sender: str
    to: list[str]
    timeout_s: float = 30.0
    ca_file: str | None = None  # CA/cert bundle trusted for STARTTLS/TLS instead of the system's

    def password(self) -> str | None:
        """Read at send time, so the secret never sits in the config file or in memory longer."""
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass
class WebhookSettings:
    url: str
    timeout_s: float = 10.0
    token_env: str | None = None  # sent as "Authorization: Bearer <token>" when set

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None


@dataclass
class ReminderSettings:
    lead_days: int = DEFAULT_LEAD_DAYS
    channels: list[str] = field(default_factory=lambda: ["stdout"])
    batch_size: int = 500  # reminders delivered (and marked sent) per committed batch
    jsonl_path: str | None = None
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    patient_label: str = "mrn_initials"


@dataclass
class SchedulerSettings:
    at: str = DEFAULT_SCHEDULER_AT
    grace_hours: float = DEFAULT_GRACE_HOURS


def _bad(key: str, value: object, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {value!r}: {reason}")


def _int(table: dict, name: str, key: str, default: int, low: int, high: int) -> int:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key, value, f"expected a whole number from {low} to {high}")
    return value


def _number(table: dict, name: str, key: str, default: float, low: float, high: float) -> float:
    value = table.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise _bad(key, value, f"expected a number from {low} to {high}")
    return float(value)


def _text(table: dict, name: str, key: str, default: str | None = None, required: bool = False) -> str | None:
    value = table.get(name, default)
    if value is None:
        if required:
            raise ConfigError(f"{key}: missing (required when the channel is enabled)")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, value, "expected a non-empty string")
    return value


def _relative_to_config(config: "Config", path: str) -> str:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and config.path:
        candidate = Path(config.path).parent / candidate
    return str(candidate)


def _ca_file(config: "Config", email: dict) -> str | None:
    """A PEM bundle the e-mail client trusts; checked now so a typo fails at load, not at 06:00."""
    value = _text(email, "ca_file", "reminders.email.ca_file")
    if value is None:
        return None
    path = _relative_to_config(config, value)
    if not Path(path).is_file():
        raise _bad("reminders.email.ca_file", path, "file not found")
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError, OSError):
        raise _bad("reminders.email.ca_file", path, "not a PEM certificate bundle") from None
    return path


def parse_hhmm(value: object, key: str) -> tuple[int, int]:
    import re

    match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(value).strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise _bad(key, value, "expected a time as HH:MM (24-hour)")
    return int(match.group(1)), int(match.group(2))


def reminder_settings(config: "Config") -> ReminderSettings:
    """The validated `[reminders]` and `[privacy]` tables; a problem is a one-line ConfigError naming the key."""
    from tracker.services.patients import LABEL_STYLES

    table = config.section("reminders")
    out = ReminderSettings()
    out.lead_days = _int(table, "lead_days", "reminders.lead_days", DEFAULT_LEAD_DAYS, 0, 365)
    out.batch_size = _int(table, "batch_size", "reminders.batch_size", 500, 1, 100_000)
    channels = table.get("channels", ["stdout"])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _bad("reminders.channels", channels, f"expected a list of channel names ({', '.join(CHANNELS)})")
    for channel in channels:
        if channel not in CHANNELS:
            raise _bad("reminders.channels", channel, f"unknown channel (expected {', '.join(CHANNELS)})")
    if len(set(channels)) != len(channels):
        raise _bad("reminders.channels", channels, "a channel is listed twice")
    out.channels = list(channels)

    jsonl = config.section("reminders", "jsonl")
    if "jsonl" in channels:
        path = _text(jsonl, "path", "reminders.jsonl.path", required=True)
        out.jsonl_path = _relative_to_config(config, path)

    email = config.section("reminders", "email")
    if "email" in channels:
        security = email.get("security", "none")
        if security not in SECURITIES:
            raise _bad("reminders.email.security", security, f"expected one of {', '.join(SECURITIES)}")
        to = email.get("to")
        if isinstance(to, str):
            to = [to]
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
            raise _bad("reminders.email.to", to, "expected a list of e-mail addresses")
        sender = _text(email, "from", "reminders.email.from", required=True)
        if "@" not in sender:
            raise _bad("reminders.email.from", sender, "expected an e-mail address")
        if "password" in email:
            raise ConfigError("reminders.email.password: not allowed in the file; name an environment "
                              "variable in reminders.email.password_env instead")
        out.email = EmailSettings(
            host=_text(email, "host", "reminders.email.host", required=True),
            port=_int(email, "port", "reminders.email.port", {"tls": 465, "starttls": 587}.get(security, 25),
                      1, 65535),
            security=security,
            user=_text(email, "user", "reminders.email.user"),
            password_env=_text(email, "password_env", "reminders.email.password_env"),
            sender=sender,
            to=to,
            timeout_s=_number(email, "timeout_s", "reminders.email.timeout_s", 30, 0.1, 600),
            ca_file=_ca_file(config, email),
        )

    webhook = config.section("reminders", "webhook")
    if "webhook" in channels:
        url = _text(webhook, "url", "reminders.webhook.url", required=True)
        if not url.startswith(("http://", "https://")):
            raise _bad("reminders.webhook.url", _mask_url(url), "expected an http:// or https:// URL")
        out.webhook = WebhookSettings(
            url=url,
            timeout_s=_number(webhook, "timeout_s", "reminders.webhook.timeout_s", 10, 0.1, 600),
            token_env=_text(webhook, "token_env", "reminders.webhook.token_env"),
        )

    label = config.section("privacy").get("patient_label", "mrn_initials")
    if label not in LABEL_STYLES:
        raise _bad("privacy.patient_label", label, f"expected one of {', '.join(LABEL_STYLES)}")
    out.patient_label = label
    return out


def scheduler_settings(config: "Config") -> SchedulerSettings:
    table = config.section("scheduler")
    at = table.get("at", DEFAULT_SCHEDULER_AT)
    parse_hhmm(at, "scheduler.at")
    grace = _number(table, "grace_hours", "scheduler.grace_hours", DEFAULT_GRACE_HOURS, 0.01, 48)
    return SchedulerSettings(at=at, grace_hours=grace)


def _mask_url(url: str) -> str:
    """Hide credentials and query strings (tokens often travel there)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def effective_config(config: "Config") -> dict:
    """What is in effect, defaults filled in and secrets masked (for `tracker config show`)."""
    reminders = reminder_settings(config)
    scheduler = scheduler_settings(config)
    out: dict = {
        "config_file": config.path,
        "timezone": config.timezone,
        "schedules_dir": config.schedules_dir,
        "reminders": {
            "lead_days": reminders.lead_days,
            "channels": reminders.channels,
            "batch_size": reminders.batch_size,
        },
        "privacy": {"patient_label": reminders.patient_label},
        "scheduler": {"at": scheduler.at, "grace_hours": scheduler.grace_hours},
    }
    if reminders.jsonl_path:
        out["reminders"]["jsonl"] = {"path": reminders.jsonl_path}
    if reminders.email:
        e = reminders.email
        out["reminders"]["email"] = {
            "host": e.host, "port": e.port, "security": e.security, "user": e.user,
            "password_env": e.password_env,
            "password": ("***" if e.password() else "(not set)") if e.password_env else None,
            "from": e.sender, "to": e.to, "timeout_s": e.timeout_s,
            "ca_file": e.ca_file or "(system)",
        }
    if reminders.webhook:
        w = reminders.webhook
        out["reminders"]["webhook"] = {
            "url": _mask_url(w.url), "timeout_s": w.timeout_s, "token_env": w.token_env,
            "token": ("***" if w.token() else "(not set)") if w.token_env else None,
        }
    return out


def validate(config: "Config") -> None:
    """Check every table tracker reads, so a typo fails before anything runs, not at 06:00 tomorrow."""
    reminder_settings(config)
    scheduler_settings(config)
