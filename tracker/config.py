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
