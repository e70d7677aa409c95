"""Calendar subscription feeds: a secret URL per patient or for the clinic, served by `tracker serve`.

The token is shown once, at creation; only its SHA-256 is stored, so a copy of the database does not
give away working feed URLs. Revoking keeps the row (for the audit trail) and makes the URL answer 404.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import threading
from dataclasses import dataclass

from sqlmodel import Session, select

from tracker.core.settings import FeedSettings
from tracker.dates import utcnow
from tracker.db.tables import Feed, Item, Patient
from tracker.errors import ConflictError, InputError, NotFoundError
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.patients import get_patient

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
# How often subscribers are asked to re-fetch (REFRESH-INTERVAL); Google polls on its own schedule anyway.
REFRESH = dt.timedelta(hours=12)


@dataclass
class CreatedFeed:
    feed: Feed
    mrn: str | None
    url: str  # carries the token: shown once, never stored


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def feed_path(token: str) -> str:
    return f"/feeds/{token}.ics"


def create_feed(clinic: Clinic, *, mrn: str | None, whole_clinic: bool, audience: str) -> CreatedFeed:
    """A new feed; its URL is spelled with `[feeds] base_url` (where `tracker serve` is reached)."""
    from tracker.exporters.collect import check_audience

    session = clinic.session
    if bool(mrn) == bool(whole_clinic):
        raise InputError("scope", mrn or "", "give exactly one of --patient MRN or --clinic")
    patient = get_patient(session, mrn) if mrn else None
    check_audience(audience, patient.id if patient else None)
    token = secrets.token_urlsafe(32)
    feed = Feed(token_hash=token_hash(token), scope="patient" if patient else "clinic",
                patient_id=patient.id if patient else None, audience=audience, created_at=utcnow())
    session.add(feed)
    session.flush()
    audit.record(session, clinic.user, "feed.create", "feed", feed.id, mrn, None,
                 audit.snapshot(feed, "id", "scope", "patient_id", "audience", "created_at"))
    return CreatedFeed(feed, mrn, clinic.settings.feeds.base_url + feed_path(token))


def feed_row(feed: Feed, mrn: str | None) -> dict:
    """The stable JSON shape of a feed (no token, no hash)."""
    return {
        "id": feed.id,
        "scope": feed.scope,
        "mrn": mrn,
        "audience": feed.audience,
        "created_at": feed.created_at.isoformat(),
        "revoked_at": feed.revoked_at.isoformat() if feed.revoked_at else None,
        "active": feed.revoked_at is None,
    }


def list_feeds(clinic: Clinic) -> list[dict]:
    rows = clinic.session.exec(select(Feed, Patient.mrn).join(Patient, Patient.id == Feed.patient_id, isouter=True)
                        .order_by(Feed.id)).all()
    return [feed_row(feed, mrn) for feed, mrn in rows]


def revoke_feed(clinic: Clinic, feed_id: int) -> dict:
    session, user = clinic.session, clinic.user
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise NotFoundError("feed", feed_id)
    if feed.revoked_at is not None:
        raise ConflictError(f"feed: {feed_id!r}: already revoked on {feed.revoked_at.date().isoformat()}")
    patient = session.get(Patient, feed.patient_id) if feed.patient_id else None
    before = audit.snapshot(feed, "id", "scope", "patient_id", "audience", "revoked_at")
    feed.revoked_at = utcnow()
    session.add(feed)
    audit.record(session, user, "feed.revoke", "feed", feed.id, patient.mrn if patient else None, before,
                 audit.snapshot(feed, "id", "scope", "patient_id", "audience", "revoked_at"))
    return feed_row(feed, patient.mrn if patient else None)


def active_feed(session: Session, token: str) -> Feed | None:
    """The live feed a token opens, or None (unknown or revoked: the caller answers 404)."""
    feed = session.exec(select(Feed).where(Feed.token_hash == token_hash(token))).first()
    if feed is None or feed.revoked_at is not None:
        return None
    return feed


@dataclass
class RenderedFeed:
    body: bytes
    last_modified: dt.datetime


@dataclass(frozen=True)
class FeedWindow:
    """What a feed shows on a day: items due from `start` to `end`, and cancelled items only while they
    were cancelled (last changed) at or after `cancelled_since` (`[feeds]` settings). `day_began` is when
    the day began in the clinic's time zone (UTC): the window moved then, so Last-Modified is never older."""

    start: dt.date
    end: dt.date
    cancelled_since: dt.datetime
    day_began: dt.datetime


def _midnight(day: dt.date, timezone: str | None) -> dt.datetime:
    import pendulum

    from tracker.dates import local_zone

    began = pendulum.datetime(day.year, day.month, day.day, tz=timezone or local_zone()).in_tz("UTC")
    return dt.datetime(began.year, began.month, began.day, began.hour, began.minute, tzinfo=dt.timezone.utc)


def feed_window(settings: FeedSettings, today: dt.date, timezone: str | None = None) -> FeedWindow:
    return FeedWindow(
        start=today - dt.timedelta(days=settings.days_back),
        end=today + dt.timedelta(days=settings.days_ahead),
        cancelled_since=_midnight(today - dt.timedelta(days=settings.cancelled_grace_days), timezone),
        day_began=_midnight(today, timezone),
    )


@dataclass(frozen=True)
class FeedVersion:
    """What a conditional request is judged on: a change stamp of the feed's scope read with a few index
    seeks, never by rendering. Items are never deleted, so the latest item change and the highest item id
    cover every change an item can make; a patient's rename bumps their items (plan_sync.bump_patient_items),
    and the patient's own row is read too for a one-patient feed. The window moves daily."""

    # The latest change shown, to the microsecond (UTC): the ETag's, so that two changes within one second
    # are two versions; HTTP dates have whole seconds only (`last_modified`).
    changed: dt.datetime
    last_item: int  # the highest item id in scope
    window_start: dt.date  # the window moves daily

    @property
    def last_modified(self) -> dt.datetime:
        """The latest change in whole seconds: Last-Modified and DTSTAMP."""
        return self.changed.replace(microsecond=0)

    def etag(self, feed: Feed, generation: str, encoding: str | None = None) -> str:
        """A strong validator of the body: `generation` stands for what is fixed while a server runs (its
        protocols and settings), so a restart with other protocols changes every ETag; a gzip body is another
        representation, so another ETag."""
        basis = (f"{feed.id}|{feed.audience}|{self.changed.isoformat()}|{self.last_item}|"
                 f"{self.window_start.isoformat()}|{generation}")
        tag = hashlib.sha256(basis.encode()).hexdigest()[:32]
        return f'"{tag}-{encoding}"' if encoding else f'"{tag}"'


def feed_version(session: Session, feed: Feed, window: FeedWindow) -> FeedVersion:
    """The feed's change stamp on the day of `window` (feed_window)."""
    from sqlalchemy import func

    from tracker.exporters.collect import latest_change

    exact = latest_change(session, feed.patient_id) or feed.created_at
    exact = max(exact if exact.tzinfo else exact.replace(tzinfo=dt.timezone.utc), window.day_began)
    last_item = select(func.max(Item.id))
    if feed.patient_id is not None:
        last_item = last_item.where(Item.patient_id == feed.patient_id)
    return FeedVersion(exact, session.exec(last_item).one() or 0, window.start)


def clinic_feed_window(clinic: Clinic) -> FeedWindow:
    return feed_window(clinic.settings.feeds, clinic.today, clinic.settings.timezone)


def feed_calendar(clinic: Clinic, token: str) -> RenderedFeed | None:
    """What a feed URL serves: the calendar of the live feed the token opens, or None (answer 404)."""
    feed = active_feed(clinic.session, token)
    return render_feed(clinic, feed) if feed is not None else None


class RenderCount:
    """How many feeds this process has rendered: a 304 must not render (read by tests and operators)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


RENDERS = RenderCount()


def render_feed(clinic: Clinic, feed: Feed, version: FeedVersion | None = None) -> RenderedFeed:
    """The feed's calendar, in its window (`[feeds]` days_back/days_ahead around the clinic's today;
    cancelled items until `cancelled_grace_days` after their cancellation). DTSTAMP is the version's
    last change, not "now", so an unchanged feed is byte-identical between requests (its ETag, from
    `feed_version`, is judged without rendering)."""
    from tracker.exporters.collect import calendar_text

    RENDERS.add()
    session = clinic.session
    patient = session.get(Patient, feed.patient_id) if feed.patient_id else None
    window = clinic_feed_window(clinic)
    if version is None:
        version = feed_version(session, feed, window)
    calendar = calendar_text(session, clinic.library, clinic.settings.export, patient=patient,
                             audience=feed.audience, stamp=version.last_modified, refresh=REFRESH,
                             start=window.start, end=window.end, cancelled_since=window.cancelled_since)
    return RenderedFeed(calendar.encode(), version.last_modified)
