"""The site configuration as typed, frozen settings, parsed once. Pure: a dict (the TOML file's tables) in,
`Settings` out; a problem is a one-line ConfigError naming the key and the value.

What needs the outside world stays in the shell (tracker/config.py): finding and reading the file, checking
that the time zone exists, resolving relative paths against the config file's directory and checking the
e-mail `ca_file`. Secrets are never here: e-mail and webhook settings keep only the *name* of the
environment variable that holds them (`password_env`, `token_env`); the channels read it when they send.
(Over 400 lines on purpose: every table and key of the site file, with its bounds and defaults, in one
place, read top to bottom like examples/config.toml.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tracker.core.inputs import DateWindow
from tracker.core.merge import DEFAULT_MERGE_WINDOW_DAYS
from tracker.errors import ConfigError

CHANNELS = ("stdout", "jsonl", "email", "webhook")
SECURITIES = ("none", "starttls", "tls")
LABEL_STYLES = ("mrn_initials", "mrn", "initials", "name")  # how reminders and staff calendars name a patient
DEFAULT_LEAD_DAYS = 3
DEFAULT_BATCH_SIZE = 500
DEFAULT_SCHEDULER_AT = "06:00"  # outside the 02:00-03:00 DST gap (engineering notes, APScheduler)
DEFAULT_GRACE_HOURS = 6
# How soon a day's run that the nightly lock refused is tried again by `scheduler run` (and again, until it
# runs or the next scheduled run comes first). CLINIC DEFAULT (no reference gives one): a `db restore` or an
# inbox import by hand takes minutes, and reminders sent within the hour are still that morning's.
DEFAULT_LOCK_RETRY_MINUTES = 10
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
DEFAULT_FEED_DAYS_BACK = 30
DEFAULT_FEED_DAYS_AHEAD = 180
DEFAULT_FEED_CANCELLED_GRACE_DAYS = 14
DEFAULT_CLINIC_CALENDAR_NAME = "Clinic monitoring"
DEFAULT_MRN_SYSTEM = "urn:tracker:mrn"
DEFAULT_IMPORT_MAX_MB = 50  # clinic_default: ~500,000 result rows
ALERT_WINDOWS = ("baseline_window_days", "checkpoint_window_days", "overdue_grace_days", "limit_lead_days",
                 "restart_repeat_days", "ack_within_days")


@dataclass(frozen=True)
class AlertSettings:
    """`[alerts]` in the site config. The windows are clinic defaults: the reference gives no numbers."""

    baseline_window_days: int = 28  # clinic_default: how old a pre-start assessment may be to count
    checkpoint_window_days: int = 14  # clinic_default: an assessment this many days either side counts
    overdue_grace_days: int = 7  # clinic_default (issue 4): the reference gives no grace period
    # clinic_default: warning lead before a course limit when the protocol gives no `warn_before`
    # (never more than a quarter of the maximum, so a 7-day steroid limit warns one day ahead).
    limit_lead_days: int = 14
    # clinic_default: after an interrupt or withhold alert, the repeat of the offending test is booked this
    # many days after the result (the reference says "restart when recovered" and gives no interval).
    restart_repeat_days: int = 7
    # clinic_default: the reference gives no response time; the quality report (`tracker report quality`)
    # counts an alert acknowledged within this many days of being raised as answered in time.
    ack_within_days: int = 2
    # clinic_default: the reference gives no ages; a female patient whose childbearing potential was never
    # recorded ("unknown") counts as "yes" from this age to this age (inclusive).
    childbearing_age_from: int = 12
    childbearing_age_to: int = 55

    @property
    def childbearing_ages(self) -> tuple[int, int]:
        return (self.childbearing_age_from, self.childbearing_age_to)


@dataclass(frozen=True)
class CalendarSettings:
    """`[calendar]`: merging two drugs' draws, and how exported calendars look."""

    merge_window_days: int = DEFAULT_MERGE_WINDOW_DAYS
    alarm_lead_hours: float | None = None  # None: no VALARM unless asked for
    name: str = DEFAULT_CLINIC_CALENDAR_NAME  # the clinic-wide calendar's name


@dataclass(frozen=True)
class EmailSettings:
    host: str
    port: int
    security: str  # none | starttls | tls
    user: str | None
    password_env: str | None  # the name of the variable holding the password, read at send time
    sender: str
    to: tuple[str, ...]
    timeout_s: float = 30.0
    ca_file: str | None = None  # CA/cert bundle trusted for STARTTLS/TLS instead of the system's
    allow_plaintext: bool = False  # security "none" to a host other than this machine (a trusted network)


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    timeout_s: float = 10.0
    token_env: str | None = None  # names the variable sent as "Authorization: Bearer <token>" when set
    proxy: str | None = None  # an http:// proxy; proxy environment variables are never used
    attempts: int = 3  # tries per batch within one run (refused, reset, 5xx, 429) before the next run
    backoff_s: float = 1.0  # wait before the 2nd try, doubling after (capped in the channel)


@dataclass(frozen=True)
class ReminderSettings:
    lead_days: int = DEFAULT_LEAD_DAYS
    channels: tuple[str, ...] = ("stdout",)
    batch_size: int = DEFAULT_BATCH_SIZE  # reminders delivered (and marked sent) per committed batch
    jsonl_path: str | None = None
    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None


@dataclass(frozen=True)
class PrivacySettings:
    patient_label: str = "mrn_initials"  # one of LABEL_STYLES


@dataclass(frozen=True)
class ExportSettings:
    """What an ICS export needs of the site config: `[privacy] patient_label` and `[calendar]`."""

    patient_label: str = "mrn_initials"
    alarm_lead_hours: float | None = None
    clinic_name: str = DEFAULT_CLINIC_CALENDAR_NAME


@dataclass(frozen=True)
class SchedulerSettings:
    at: str = DEFAULT_SCHEDULER_AT
    grace_hours: float = DEFAULT_GRACE_HOURS
    lock_retry_minutes: int = DEFAULT_LOCK_RETRY_MINUTES  # clinic_default


@dataclass(frozen=True)
class FeedSettings:
    base_url: str = DEFAULT_BASE_URL  # without a trailing slash
    # The dates a feed shows, around today: a whole clinic's feed stays small enough for Google Calendar
    # (which drops subscriptions over about 1 MB). Not clinical numbers; `tracker export ics` has no window.
    days_back: int = DEFAULT_FEED_DAYS_BACK
    days_ahead: int = DEFAULT_FEED_DAYS_AHEAD
    # How long a cancelled item stays in feeds (STATUS:CANCELLED, so subscribers drop it) before it leaves.
    cancelled_grace_days: int = DEFAULT_FEED_CANCELLED_GRACE_DAYS


DEFAULT_LABS_HOST = "127.0.0.1"  # loopback unless the clinic names another address
DEFAULT_LABS_PORT = 2575  # the port registered for HL7 over MLLP


@dataclass(frozen=True)
class LabSettings:
    """`[labs]`: where `tracker labs listen` accepts HL7 v2 over MLLP, and the laboratory's local codes mapped
    to tracker test codes (`[labs.codes] "ALT1" = "alt"`; LOINC codes map through the vocabulary)."""

    host: str = DEFAULT_LABS_HOST
    port: int = DEFAULT_LABS_PORT
    codes: tuple[tuple[str, str], ...] = ()
    # `[labs] inbox`: a folder of result files (HL7 v2, FHIR JSON, CSV) the nightly run imports, moving each
    # to done/ or rejected/ (services/lab_inbox.py); relative to the config file. None: no inbox.
    inbox: str | None = None


@dataclass(frozen=True)
class FhirSettings:
    """`[fhir]`: how FHIR exports identify patients (the name only with `[privacy] patient_label = "name"`)."""

    mrn_system: str = DEFAULT_MRN_SYSTEM  # the clinic's identifier system for MRNs (a URI)


@dataclass(frozen=True)
class CalDavSettings:
    """`[caldav]`: a CalDAV collection kept in step with the staff calendar (`tracker calendar push`, and the
    nightly run). Like e-mail, no password in the file: `password_env` names a variable, `password_file` a
    file holding it (read when pushing)."""

    url: str  # the calendar collection's URL
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    timeout_s: float = 30.0
    allow_plaintext: bool = False  # http:// to a host other than this machine (a trusted network)


@dataclass(frozen=True)
class BackupSettings:
    keep: int = 10  # clinic_default: backups of a database kept in its backups/ folder (older ones rotated)


@dataclass(frozen=True)
class ImportSettings:
    """`[import]`: bounds on files imported (`tracker result import`). Clinic default: no source gives one."""

    max_mb: int = DEFAULT_IMPORT_MAX_MB  # a larger file (or an endless stream) is refused unread

    @property
    def max_bytes(self) -> int:
        return self.max_mb * 1024 * 1024


@dataclass(frozen=True)
class WebSettings:
    """`[web]`: the staff web view's sessions and sign-in lockout (no source gives these: clinic defaults)."""

    idle_timeout_minutes: int = 15  # clinic_default: a session unused this long must sign in again
    session_max_hours: int = 12  # clinic_default: a session this old must sign in again, however much used
    lockout_failures: int = 5  # clinic_default: failed sign-ins in a row that lock an account
    lockout_minutes: int = 15  # clinic_default: how long a locked account stays locked
    secret_file: str | None = None  # the session-signing key; default: web-secret beside the database


@dataclass(frozen=True)
class Settings:
    """Everything tracker reads from the site config, validated; defaults when there is no file."""

    timezone: str | None = None  # None: the machine's local zone (the shell's loader names it)
    schedules_dir: str | None = None  # clinic protocol overrides
    alerts: AlertSettings = field(default_factory=AlertSettings)
    calendar: CalendarSettings = field(default_factory=CalendarSettings)
    reminders: ReminderSettings = field(default_factory=ReminderSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    feeds: FeedSettings = field(default_factory=FeedSettings)
    dates: DateWindow = field(default_factory=DateWindow)
    fhir: FhirSettings = field(default_factory=FhirSettings)
    caldav: CalDavSettings | None = None  # None: no CalDAV push configured
    backups: BackupSettings = field(default_factory=BackupSettings)
    labs: LabSettings = field(default_factory=LabSettings)
    imports: ImportSettings = field(default_factory=ImportSettings)  # the `[import]` table
    web: WebSettings = field(default_factory=WebSettings)
    config_file: str | None = None  # where they were read from (set by the shell's loader)

    @property
    def export(self) -> ExportSettings:
        return ExportSettings(self.privacy.patient_label, self.calendar.alarm_lead_hours, self.calendar.name)


# --- parsing ---------------------------------------------------------------------------------------------

# Every table and key the site config may have; anything else is a typo, named with the nearest valid one
# (a silently ignored `[reminder]` or `overdue_grace_day` would leave the clinic on defaults unawares).
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "": ("timezone", "schedules_dir", "reminders", "privacy", "scheduler", "alerts", "calendar", "feeds",
         "dates", "fhir", "caldav", "backups", "labs", "import", "web"),
    "labs": ("host", "port", "codes", "inbox"),
    "reminders": ("lead_days", "channels", "batch_size", "jsonl", "email", "webhook"),
    "reminders.jsonl": ("path",),
    "reminders.email": ("host", "port", "security", "user", "password_env", "password", "from", "to",
                        "timeout_s", "ca_file", "allow_plaintext"),
    "reminders.webhook": ("url", "timeout_s", "token_env", "attempts", "backoff_s", "proxy"),
    "privacy": ("patient_label",),
    "scheduler": ("at", "grace_hours", "lock_retry_minutes"),
    "alerts": (*ALERT_WINDOWS, "childbearing_age_from", "childbearing_age_to"),
    "calendar": ("merge_window_days", "alarm_lead_hours", "name"),
    "feeds": ("base_url", "days_back", "days_ahead", "cancelled_grace_days"),
    "dates": ("max_ahead_days", "earliest_start", "warn_back_days"),
    "fhir": ("mrn_system",),
    "caldav": ("url", "username", "password", "password_env", "password_file", "timeout_s", "allow_plaintext"),
    "backups": ("keep",),
    "import": ("max_mb",),
    "web": ("idle_timeout_minutes", "session_max_hours", "lockout_failures", "lockout_minutes", "secret_file"),
}
# The settings no clinical source gives, shown as "clinic default" by `tracker config show`.
CLINIC_DEFAULT_KEYS = frozenset({
    "alerts.baseline_window_days", "alerts.checkpoint_window_days", "alerts.overdue_grace_days",
    "alerts.limit_lead_days", "alerts.restart_repeat_days",
    "alerts.childbearing_age_from", "alerts.childbearing_age_to", "alerts.ack_within_days",
    "calendar.merge_window_days",
    "dates.max_ahead_days", "dates.earliest_start", "dates.warn_back_days", "backups.keep", "import.max_mb",
    "feeds.days_back", "feeds.days_ahead", "feeds.cancelled_grace_days",
    "scheduler.lock_retry_minutes", "web.idle_timeout_minutes", "web.session_max_hours", "web.lockout_failures", "web.lockout_minutes",
})


# Tables whose keys are the clinic's own (a laboratory's local codes), checked by their parser.
FREE_TABLES = frozenset({"labs.codes"})


def check_known_keys(raw: dict, path: str = "") -> None:
    """Refuse an unknown table or key, naming the nearest known one."""
    import difflib

    known = KNOWN_KEYS.get(path, ())
    for key, value in raw.items():
        dotted = f"{path}.{key}" if path else str(key)
        if dotted in FREE_TABLES and key in known:
            if not isinstance(value, dict):
                raise _bad(dotted, value, "expected a table [" + dotted + "]")
            continue
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else f" (expected one of {', '.join(known)})"
            what = "table" if isinstance(value, dict) else "key"
            shown = dotted if dotted.isprintable() else repr(dotted)  # a quoted key may hold a newline (fuzz)
            raise ConfigError(f"{shown}: unknown {what}{hint}")
        if isinstance(value, dict) and dotted in KNOWN_KEYS:
            check_known_keys(value, dotted)
        elif isinstance(value, dict) is not (dotted in KNOWN_KEYS):
            raise _bad(dotted, value, "expected a table [" + dotted + "]" if dotted in KNOWN_KEYS
                       else "expected a value, not a table")


def _bad(key: str, value: object, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {value!r}: {reason}")


def _table(raw: dict, *names: str) -> dict:
    """A nested table, e.g. _table(raw, "reminders", "email"); {} when absent."""
    node = raw
    for name in names:
        node = node.get(name, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


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


def parse_hhmm(value: object, key: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise _bad(key, value, "expected a time as HH:MM (24-hour)")
    return int(match.group(1)), int(match.group(2))


def is_loopback(host: str) -> bool:
    """Whether a host name or address is this machine (mail to it never crosses a network)."""
    import ipaddress

    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def mask_url(url: str) -> str:
    """Scheme and host only: credentials, the path and the query are hidden, since tokens travel in all
    three (Slack- and Teams-style webhooks carry theirs in the path)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    path = "/***" if parts.path.strip("/") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))


def parse_alerts(table: dict | None) -> AlertSettings:
    values = {}
    for name in ALERT_WINDOWS:
        if table and name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 365:
                raise ConfigError(f"alerts.{name}: {value!r}: expected a whole number of days 0-365")
            values[name] = value
    for name in ("childbearing_age_from", "childbearing_age_to"):
        if table and name in table:
            value = table[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 120:
                raise ConfigError(f"alerts.{name}: {value!r}: expected a whole number of years 0-120")
            values[name] = value
    if values.get("childbearing_age_from", 12) > values.get("childbearing_age_to", 55):
        raise ConfigError(f"alerts.childbearing_age_from: {values.get('childbearing_age_from', 12)!r}: "
                          f"is above alerts.childbearing_age_to ({values.get('childbearing_age_to', 55)})")
    return AlertSettings(**values)


MERGE_WINDOW_MAX_DAYS = 28


def parse_calendar(table: dict) -> CalendarSettings:
    # Bounded, not a clinical figure: a window of months would merge every draw into a few (review row
    # cfg-merge-huge: 100000 was accepted).
    window = table.get("merge_window_days", DEFAULT_MERGE_WINDOW_DAYS)
    if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MERGE_WINDOW_MAX_DAYS:
        raise ConfigError(f"calendar.merge_window_days: {window!r}: expected a whole number of days >= 0 and "
                          f"at most {MERGE_WINDOW_MAX_DAYS}")
    lead = table.get("alarm_lead_hours")
    if lead is not None and (isinstance(lead, bool) or not isinstance(lead, (int, float)) or not 0 <= lead <= 24 * 28):
        raise ConfigError(f"calendar.alarm_lead_hours: {lead!r}: expected a number of hours from 0 to 672")
    name = table.get("name", DEFAULT_CLINIC_CALENDAR_NAME)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"calendar.name: {name!r}: expected a non-empty text")
    return CalendarSettings(window, float(lead) if lead is not None else None, name.strip())


def parse_reminders(raw: dict) -> ReminderSettings:
    """`[reminders]` and its channel tables; a channel's table is read only when the channel is enabled."""
    table = _table(raw, "reminders")
    lead_days = _int(table, "lead_days", "reminders.lead_days", DEFAULT_LEAD_DAYS, 0, 365)
    batch_size = _int(table, "batch_size", "reminders.batch_size", DEFAULT_BATCH_SIZE, 1, 100_000)
    channels = table.get("channels", ["stdout"])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise _bad("reminders.channels", channels, f"expected a list of channel names ({', '.join(CHANNELS)})")
    for channel in channels:
        if channel not in CHANNELS:
            raise _bad("reminders.channels", channel, f"unknown channel (expected {', '.join(CHANNELS)})")
    if len(set(channels)) != len(channels):
        raise _bad("reminders.channels", channels, "a channel is listed twice")
    if not channels:
        # Reminders would be marked sent to no one and never delivered once a channel is added.
        raise _bad("reminders.channels", channels, f"at least one channel ({', '.join(CHANNELS)})")

    jsonl_path = None
    if "jsonl" in channels:
        jsonl_path = _text(_table(raw, "reminders", "jsonl"), "path", "reminders.jsonl.path", required=True)

    email = None
    if "email" in channels:
        email = _parse_email(_table(raw, "reminders", "email"))

    webhook = None
    if "webhook" in channels:
        hook = _table(raw, "reminders", "webhook")
        url = _text(hook, "url", "reminders.webhook.url", required=True)
        if not url.startswith(("http://", "https://")):
            raise _bad("reminders.webhook.url", mask_url(url), "expected an http:// or https:// URL")
        webhook = WebhookSettings(
            url=url,
            timeout_s=_number(hook, "timeout_s", "reminders.webhook.timeout_s", 10, 0.1, 600),
            token_env=_text(hook, "token_env", "reminders.webhook.token_env"),
            proxy=_proxy(hook),
            attempts=_int(hook, "attempts", "reminders.webhook.attempts", 3, 1, 10),
            backoff_s=_number(hook, "backoff_s", "reminders.webhook.backoff_s", 1, 0, 60),
        )
    return ReminderSettings(lead_days, tuple(channels), batch_size, jsonl_path, email, webhook)


def _proxy(hook: dict) -> str | None:
    proxy = _text(hook, "proxy", "reminders.webhook.proxy")
    if proxy is not None and not proxy.startswith("http://"):
        raise _bad("reminders.webhook.proxy", mask_url(proxy), "expected an http:// proxy URL")
    return proxy


def _parse_email(email: dict) -> EmailSettings:
    security = email.get("security", "starttls")  # digests carry MRNs and lab values: encrypted by default
    if security not in SECURITIES:
        raise _bad("reminders.email.security", security, f"expected one of {', '.join(SECURITIES)}")
    allow_plaintext = email.get("allow_plaintext", False)
    if not isinstance(allow_plaintext, bool):
        raise _bad("reminders.email.allow_plaintext", allow_plaintext, "expected true or false")
    host = _text(email, "host", "reminders.email.host", required=True)
    if security == "none" and not allow_plaintext and not is_loopback(host):
        raise _bad("reminders.email.security", security,
                   f"sends patient data unencrypted to {host}; use starttls or tls, or set "
                   "reminders.email.allow_plaintext = true if that network is trusted")
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
    return EmailSettings(
        host=host,
        port=_int(email, "port", "reminders.email.port", {"tls": 465, "starttls": 587}.get(security, 25),
                  1, 65535),
        security=security,
        user=_text(email, "user", "reminders.email.user"),
        password_env=_text(email, "password_env", "reminders.email.password_env"),
        sender=sender,
        to=tuple(to),
        timeout_s=_number(email, "timeout_s", "reminders.email.timeout_s", 30, 0.1, 600),
        # As written in the file: the shell resolves it against the config file and checks it.
        ca_file=_text(email, "ca_file", "reminders.email.ca_file"),
        allow_plaintext=allow_plaintext,
    )


def parse_privacy(table: dict) -> PrivacySettings:
    label = table.get("patient_label", "mrn_initials")
    if label not in LABEL_STYLES:
        raise _bad("privacy.patient_label", label, f"expected one of {', '.join(LABEL_STYLES)}")
    return PrivacySettings(label)


def parse_scheduler(table: dict) -> SchedulerSettings:
    at = table.get("at", DEFAULT_SCHEDULER_AT)
    parse_hhmm(at, "scheduler.at")
    grace = _number(table, "grace_hours", "scheduler.grace_hours", DEFAULT_GRACE_HOURS, 0.01, 48)
    retry = _int(table, "lock_retry_minutes", "scheduler.lock_retry_minutes", DEFAULT_LOCK_RETRY_MINUTES, 1, 24 * 60)
    return SchedulerSettings(at=at, grace_hours=grace, lock_retry_minutes=retry)


def parse_feeds(table: dict) -> FeedSettings:
    url = table.get("base_url", DEFAULT_BASE_URL)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"feeds.base_url: {url!r}: expected an http:// or https:// URL")
    return FeedSettings(
        url.rstrip("/"),
        days_back=_int(table, "days_back", "feeds.days_back", DEFAULT_FEED_DAYS_BACK, 0, 3660),
        days_ahead=_int(table, "days_ahead", "feeds.days_ahead", DEFAULT_FEED_DAYS_AHEAD, 0, 3660),
        cancelled_grace_days=_int(table, "cancelled_grace_days", "feeds.cancelled_grace_days",
                                  DEFAULT_FEED_CANCELLED_GRACE_DAYS, 0, 3660),
    )


def parse_dates(table: dict) -> DateWindow:
    """`[dates]`: the window course events may be dated in (clinic defaults, tracker.core.inputs)."""
    import datetime as dt

    default = DateWindow()
    earliest = table.get("earliest_start", default.earliest_start)
    if isinstance(earliest, dt.datetime) or not isinstance(earliest, dt.date) or earliest.year < 1900:
        raise _bad("dates.earliest_start", earliest, "expected a date like 2000-01-01 (not before 1900)")
    return DateWindow(
        max_ahead_days=_int(table, "max_ahead_days", "dates.max_ahead_days", default.max_ahead_days, 0, 3660),
        earliest_start=earliest,
        warn_back_days=_int(table, "warn_back_days", "dates.warn_back_days", default.warn_back_days, 0, 36600),
    )


def parse_fhir(table: dict) -> FhirSettings:
    system = table.get("mrn_system", DEFAULT_MRN_SYSTEM)
    if not isinstance(system, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:\S+", system):
        raise _bad("fhir.mrn_system", system, "expected a URI such as urn:oid:1.2.3 or https://clinic.example/mrn")
    return FhirSettings(system)


def parse_caldav(table: dict) -> CalDavSettings | None:
    """`[caldav]`, or None when the table is absent (no push)."""
    if not table:
        return None
    url = _text(table, "url", "caldav.url", required=True)
    if not url.startswith(("http://", "https://")):
        raise _bad("caldav.url", mask_url(url), "expected an http:// or https:// URL")
    if "password" in table:
        raise ConfigError("caldav.password: not allowed in the file; name an environment variable in "
                          "caldav.password_env or a private file in caldav.password_file instead")
    allow_plaintext = table.get("allow_plaintext", False)
    if not isinstance(allow_plaintext, bool):
        raise _bad("caldav.allow_plaintext", allow_plaintext, "expected true or false")
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    if url.startswith("http://") and not allow_plaintext and not is_loopback(host):
        raise _bad("caldav.url", mask_url(url), f"sends patient data unencrypted to {host}; use https://, or "
                   "set caldav.allow_plaintext = true if that network is trusted")
    password_env = _text(table, "password_env", "caldav.password_env")
    password_file = _text(table, "password_file", "caldav.password_file")
    if password_env and password_file:
        raise _bad("caldav.password_file", password_file, "give password_env or password_file, not both")
    return CalDavSettings(
        url=url.rstrip("/") + "/",
        username=_text(table, "username", "caldav.username"),
        password_env=password_env,
        password_file=password_file,
        timeout_s=_number(table, "timeout_s", "caldav.timeout_s", 30, 0.1, 600),
        allow_plaintext=allow_plaintext,
    )


def parse_labs(table: dict) -> LabSettings:
    host = _text(table, "host", "labs.host", DEFAULT_LABS_HOST)
    port = _int(table, "port", "labs.port", DEFAULT_LABS_PORT, 1, 65535)
    codes = []
    for local, test in (table.get("codes") or {}).items():
        if not isinstance(test, str) or not test.strip():
            raise _bad(f"labs.codes.{local}", test, "expected a tracker test code (e.g. \"alt\")")
        codes.append((str(local), test.strip().lower()))
    inbox = _text(table, "inbox", "labs.inbox")
    return LabSettings(host.strip(), port, tuple(codes), inbox.strip() if inbox else None)


def parse_web(table: dict) -> WebSettings:
    default = WebSettings()
    secret = table.get("secret_file")
    if secret is not None and (not isinstance(secret, str) or not secret.strip()):
        raise _bad("web.secret_file", secret, "expected a file path")
    return WebSettings(
        idle_timeout_minutes=_int(table, "idle_timeout_minutes", "web.idle_timeout_minutes",
                                  default.idle_timeout_minutes, 1, 24 * 60),
        session_max_hours=_int(table, "session_max_hours", "web.session_max_hours", default.session_max_hours,
                               1, 7 * 24),
        lockout_failures=_int(table, "lockout_failures", "web.lockout_failures", default.lockout_failures, 1, 100),
        lockout_minutes=_int(table, "lockout_minutes", "web.lockout_minutes", default.lockout_minutes, 1, 24 * 60),
        secret_file=secret,
    )


def parse_settings(raw: dict) -> Settings:
    """Every table tracker reads, validated at once, so a typo fails before anything runs, not at 06:00.

    Paths are returned as written (the shell resolves them against the config file); `timezone` is
    checked to be text here and to name a known zone by the shell, which also puts the machine's local
    zone in its place when the file names none."""
    check_known_keys(raw)
    timezone = raw.get("timezone")
    if timezone is not None and (not isinstance(timezone, str) or not timezone.strip()):
        raise _bad("timezone", timezone, "unknown time zone")
    schedules = raw.get("schedules_dir")
    if schedules is not None and not isinstance(schedules, str):
        raise _bad("schedules_dir", schedules, "expected a directory path")
    return Settings(
        timezone=timezone,
        schedules_dir=schedules or None,
        reminders=parse_reminders(raw),
        privacy=parse_privacy(_table(raw, "privacy")),
        scheduler=parse_scheduler(_table(raw, "scheduler")),
        alerts=parse_alerts(_table(raw, "alerts")),
        calendar=parse_calendar(_table(raw, "calendar")),
        feeds=parse_feeds(_table(raw, "feeds")),
        dates=parse_dates(_table(raw, "dates")),
        fhir=parse_fhir(_table(raw, "fhir")),
        caldav=parse_caldav(_table(raw, "caldav")),
        backups=BackupSettings(keep=_int(_table(raw, "backups"), "keep", "backups.keep", BackupSettings.keep, 1,
                                         10_000)),
        labs=parse_labs(_table(raw, "labs")),
        imports=ImportSettings(_int(_table(raw, "import"), "max_mb", "import.max_mb", DEFAULT_IMPORT_MAX_MB,
                                    1, 100_000)),
        web=parse_web(_table(raw, "web")),
    )
