"""Calendar subscription feeds: a secret URL per patient or for the clinic, served by `tracker serve`.

The token is shown once, at creation; only its SHA-256 is stored, so a copy of the database does not
give away working feed URLs. Revoking keeps the row (for the audit trail) and makes the URL answer 404.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import Session, select

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
class FeedVersion:
    """What a conditional request is judged on, read with two cheap queries and no rendering."""

    last_modified: dt.datetime  # the latest change shown (whole seconds, UTC): Last-Modified and DTSTAMP
    items: int  # how many items the feed covers: a deleted item changes it when no timestamp moves

    def etag(self, feed: Feed, generation: str) -> str:
        """A strong validator of the body: `generation` stands for what is fixed while a server runs
        (its protocols and export settings), so a restart with other protocols changes every ETag."""
        basis = f"{feed.id}|{feed.audience}|{self.last_modified.isoformat()}|{self.items}|{generation}"
        return '"' + hashlib.sha256(basis.encode()).hexdigest()[:32] + '"'


def feed_version(session: Session, feed: Feed) -> FeedVersion:
    from sqlalchemy import func

    from tracker.exporters.collect import latest_change

    changed = latest_change(session, feed.patient_id) or feed.created_at
    changed = (changed if changed.tzinfo else changed.replace(tzinfo=dt.timezone.utc)).replace(microsecond=0)
    count = select(func.count()).select_from(Item)
    if feed.patient_id is not None:
        count = count.where(Item.patient_id == feed.patient_id)
    return FeedVersion(changed, session.exec(count).one())


def feed_calendar(clinic: Clinic, token: str) -> RenderedFeed | None:
    """What a feed URL serves: the calendar of the live feed the token opens, or None (answer 404)."""
    feed = active_feed(clinic.session, token)
    return render_feed(clinic, feed) if feed is not None else None


def render_feed(clinic: Clinic, feed: Feed) -> RenderedFeed:
    """The feed's calendar. DTSTAMP is the latest change, not "now", so an unchanged feed is byte-identical
    between requests (its ETag, from `feed_version`, is judged without rendering)."""
    from tracker.exporters.collect import export_calendar

    session = clinic.session

    patient = session.get(Patient, feed.patient_id) if feed.patient_id else None
    changed = feed_version(session, feed).last_modified
    calendar = export_calendar(session, clinic.library, clinic.settings.export, patient=patient,
                               audience=feed.audience, stamp=changed, refresh=REFRESH)
    return RenderedFeed(calendar.to_ical(), changed)
