"""The site configuration file (TOML): `--config`, else `$TRACKER_CONFIG`, else
`<XDG config dir>/tracker/config.toml` if it exists. Everything has a default, so no file is needed.

The one loader: it finds and reads the file, parses it once into `Settings` (tracker/core/settings.py, pure),
then does what needs the outside world: the time zone must exist, relative paths are relative to the config
file, and an e-mail `ca_file` must be a readable PEM bundle. Nothing else reads `$TRACKER_CONFIG`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path

from tracker.core.settings import Settings, mask_url, parse_settings
from tracker.errors import ConfigError


def default_config_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("tracker", appauthor=False)) / "config.toml"


def config_file(path: str | None = None) -> str | None:
    """The file in effect: `path`, else $TRACKER_CONFIG, else the XDG default if it exists."""
    chosen = path or os.environ.get("TRACKER_CONFIG")
    if chosen is None:
        candidate = default_config_path()
        return str(candidate) if candidate.exists() else None
    return chosen


MAX_CONFIG_BYTES = 1_000_000  # a site config is a page of settings


def read_config(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config: {path!r}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config: {path!r}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"config: {path!r}: cannot read ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: {path!r}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config: {path!r}: line {line}: not UTF-8 (byte 0x{data[exc.start]:02x})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path!r}: not valid TOML ({exc})") from None


def load_settings(path: str | None = None) -> Settings:
    """The validated site settings; a problem is a one-line ConfigError naming the key and value."""
    chosen = config_file(path)
    raw = read_config(chosen) if chosen else {}
    if "timezone" in raw:
        _check_timezone(raw["timezone"])
    settings = parse_settings(raw)
    if settings.timezone is None:
        from tracker.dates import local_zone

        # "Today" is the clinic's day: with no zone configured, the machine's own, not UTC's.
        settings = dataclasses.replace(settings, timezone=local_zone())
    reminders = settings.reminders
    if reminders.jsonl_path is not None:
        reminders = dataclasses.replace(reminders, jsonl_path=_relative_to(chosen, reminders.jsonl_path))
        if os.path.isdir(reminders.jsonl_path):  # refused before the nightly writes its run row (cfg-jsonl-dir)
            raise ConfigError(f"reminders.jsonl.path: {reminders.jsonl_path!r}: is a directory, expected a file")
    if reminders.email is not None and reminders.email.ca_file is not None:
        email = dataclasses.replace(reminders.email, ca_file=_ca_file(chosen, reminders.email.ca_file))
        reminders = dataclasses.replace(reminders, email=email)
    if settings.caldav is not None and settings.caldav.password_file is not None:
        caldav = dataclasses.replace(settings.caldav,
                                     password_file=_relative_to(chosen, settings.caldav.password_file))
        settings = dataclasses.replace(settings, caldav=caldav)
    if settings.labs.inbox is not None:
        labs = dataclasses.replace(settings.labs, inbox=_relative_to(chosen, settings.labs.inbox))
        settings = dataclasses.replace(settings, labs=labs)
    web = settings.web
    if web.secret_file is not None:
        web = dataclasses.replace(web, secret_file=_relative_to(chosen, web.secret_file))
    schedules = settings.schedules_dir
    if schedules and chosen and not os.environ.get("TRACKER_SCHEDULES"):
        # Relative paths are relative to the config file.
        schedules = str((Path(chosen).parent / schedules).resolve())
    return dataclasses.replace(settings, reminders=reminders, schedules_dir=schedules, config_file=chosen,
                               web=web)


def _check_timezone(timezone: object) -> None:
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(timezone)
    except Exception:
        raise ConfigError(f"timezone: {timezone!r}: unknown time zone") from None


def _relative_to(config_path: str | None, path: str) -> str:
    candidate = Path(path).expanduser()
    if not candidate.is_absolute() and config_path:
        candidate = Path(config_path).parent / candidate
    return str(candidate)


def _ca_file(config_path: str | None, value: str) -> str:
    """A PEM bundle the e-mail client trusts; checked now so a typo fails at load, not at 06:00."""
    path = _relative_to(config_path, value)
    if not Path(path).is_file():
        raise ConfigError(f"reminders.email.ca_file: {path!r}: file not found")
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError, OSError):
        raise ConfigError(f"reminders.email.ca_file: {path!r}: not a PEM certificate bundle") from None
    return path


def secret(env_name: str | None) -> str | None:
    """A secret named by the config (`password_env`, `token_env`), read from the environment when needed."""
    return os.environ.get(env_name) if env_name else None


def effective_config(settings: Settings) -> dict:
    """What is in effect, defaults filled in and secrets masked (for `tracker config show`)."""
    reminders = settings.reminders
    out: dict = {
        "config_file": settings.config_file,
        "timezone": settings.timezone,
        "schedules_dir": settings.schedules_dir,
        "reminders": {
            "lead_days": reminders.lead_days,
            "channels": list(reminders.channels),
            "batch_size": reminders.batch_size,
        },
        "privacy": {"patient_label": settings.privacy.patient_label},
        "scheduler": {"at": settings.scheduler.at, "grace_hours": settings.scheduler.grace_hours,
                      "lock_retry_minutes": settings.scheduler.lock_retry_minutes},
        "alerts": dataclasses.asdict(settings.alerts),
        "calendar": dataclasses.asdict(settings.calendar),
        "feeds": dataclasses.asdict(settings.feeds),
        "dates": {**dataclasses.asdict(settings.dates),
                  "earliest_start": settings.dates.earliest_start.isoformat()},
        "backups": dataclasses.asdict(settings.backups),
        "labs": {"host": settings.labs.host, "port": settings.labs.port, "codes": dict(settings.labs.codes),
                 "inbox": settings.labs.inbox},
        "import": dataclasses.asdict(settings.imports),
        "web": dataclasses.asdict(settings.web),
    }
    if reminders.jsonl_path:
        out["reminders"]["jsonl"] = {"path": reminders.jsonl_path}
    if reminders.email:
        e = reminders.email
        out["reminders"]["email"] = {
            "host": e.host, "port": e.port, "security": e.security, "user": e.user,
            "password_env": e.password_env,
            "password": ("***" if secret(e.password_env) else "(not set)") if e.password_env else None,
            "from": e.sender, "to": list(e.to), "timeout_s": e.timeout_s,
            "ca_file": e.ca_file or "(system)",
            "allow_plaintext": e.allow_plaintext,
        }
    if reminders.webhook:
        w = reminders.webhook
        out["reminders"]["webhook"] = {
            "url": mask_url(w.url), "timeout_s": w.timeout_s, "token_env": w.token_env,
            "proxy": mask_url(w.proxy) if w.proxy else None, "attempts": w.attempts, "backoff_s": w.backoff_s,
            "token": ("***" if secret(w.token_env) else "(not set)") if w.token_env else None,
        }
    out["fhir"] = dataclasses.asdict(settings.fhir)
    if settings.caldav:
        c = settings.caldav
        out["caldav"] = {
            "url": mask_url(c.url), "username": c.username, "password_env": c.password_env,
            "password_file": c.password_file, "password": "***" if caldav_password(c) else "(not set)",
            "timeout_s": c.timeout_s, "allow_plaintext": c.allow_plaintext,
        }
    return out


def caldav_password(caldav) -> str | None:
    """The CalDAV password: from the variable `password_env` names, or the first line of `password_file`
    (a ConfigError naming the file when it cannot be read)."""
    if caldav.password_env:
        return secret(caldav.password_env)
    if caldav.password_file:
        try:
            with open(caldav.password_file, encoding="utf-8") as fh:
                return fh.readline().rstrip("\r\n") or None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"caldav.password_file: {caldav.password_file!r}: cannot read "
                              f"({getattr(exc, 'strerror', None) or exc})") from None
    return None
