"""The one object a use case is given: the clinic as one command (or one request) sees it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import Session

from tracker.core.protocol import ProtocolLibrary
from tracker.core.settings import Settings


@dataclass
class Clinic:
    """One transaction's worth of context. The caller owns the transaction (commit on success, rollback
    on error); services only flush. `today` is the clinic's date in its time zone, `user` who acts (audit)."""

    session: Session
    library: ProtocolLibrary
    settings: Settings
    today: dt.date
    user: str

    @property
    def merge_window(self) -> int:
        """`[calendar] merge_window_days`: how close two drugs' draws of the same tests merge."""
        return self.settings.calendar.merge_window_days

    @property
    def childbearing_ages(self) -> tuple[int, int]:
        """`[alerts] childbearing_age_from/_to`: the ages at which an unrecorded childbearing potential
        counts as yes for a female patient."""
        return self.settings.alerts.childbearing_ages
