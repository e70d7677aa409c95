"""Reminder channels: where the nightly job sends what it found.

A channel gets reminders as plain dicts (the stable JSON shape in `tracker.channels.digest.reminder_row`)
and raises on failure; the nightly service records delivery state, so channels know nothing of the database.
`digest` channels (stdout, email) send everything pending as one message; the others (jsonl, webhook) are
sent and marked in batches.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tracker.core.settings import ReminderSettings


def build_channels(settings: ReminderSettings, out: TextIO | None = None) -> list:
    channels = []
    for name in settings.channels:
        if name == "stdout":
            from tracker.channels.stdout import StdoutChannel

            channels.append(StdoutChannel(out or sys.stdout))
        elif name == "jsonl":
            from tracker.channels.jsonl import JsonlChannel

            channels.append(JsonlChannel(settings.jsonl_path))
        elif name == "email":
            from tracker.channels.email import EmailChannel

            channels.append(EmailChannel(settings.email))
        elif name == "webhook":
            from tracker.channels.webhook import WebhookChannel

            channels.append(WebhookChannel(settings.webhook))
    return channels


def delivery_keys(channels: list) -> list[str]:
    """The `channel` values of these channels' delivery rows: the channel's name, or one per recipient for
    e-mail (`email:<hash>`)."""
    return [key for channel in channels for key in getattr(channel, "delivery_keys", [channel.name])]
