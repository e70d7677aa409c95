"""`tracker calendar push` (and the nightly step): keep a CalDAV collection in step with the staff calendar.

The events are those of the clinic-wide staff calendar (`exporters/collect.py: export_calendar`, the same
call the staff feed makes), one calendar object resource per event at `<collection>/<UID>.ics`. What was
last sent is kept in `caldav_object` (migration 0009): an event is PUT when it is new, when its content
changed (the exporter bumps SEQUENCE when an item moves or is cancelled; a cancelled item is sent with
STATUS:CANCELLED), or when the server's ETag is no longer the one it answered (edited or deleted there);
an event no longer in the calendar is DELETEd. A second push with nothing changed sends no PUT.

The calendar is the staff feed's (`[feeds] days_back`/`days_ahead` around the clinic's today, cancelled
items for `cancelled_grace_days`: services/feeds.py `feed_window`), not everything stored: an event that
leaves the window (its day passed out of `days_back`, a cancellation past its grace) is deleted from the
collection like one removed from the plan, and one that enters it is created.

One push at a time (`tracker/locks.py: caldav_lock`): a second push while one runs refuses (exit 9) rather
than interleave its PUTs, DELETEs and records with the first's; the nightly step reports it as a failure.

Network and database are kept apart: the calendar and the state are read in one transaction, the server
is spoken to with no transaction open, and what succeeded is recorded in a second one (also when a later
request failed, so the next push resumes where this one stopped).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from sqlalchemy import Engine
from sqlmodel import Session, select

from tracker.core.settings import CalDavSettings, Settings
from tracker.db.tables import CalDavObject
from tracker.errors import ConfigError, DeliveryError

PROPFIND_ETAGS = ('<?xml version="1.0" encoding="utf-8"?>'
                  '<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>')


@dataclass
class PushReport:
    collection: str  # masked: scheme, host and path, no credentials
    dry_run: bool = False
    created: list[str] = field(default_factory=list)  # UIDs
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def counts(self) -> dict:
        return {"created": len(self.created), "updated": len(self.updated), "removed": len(self.removed),
                "unchanged": self.unchanged}

    def as_dict(self) -> dict:
        return {"collection": self.collection, "dry_run": self.dry_run, **self.counts()}


@dataclass(frozen=True)
class CalendarObject:
    uid: str
    body: bytes  # a VCALENDAR holding one VEVENT (no METHOD: RFC 4791 4.1)
    content_hash: str


def collection_key(url: str) -> str:
    """The collection as stored and shown: its URL without user name or password."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def staff_objects(session: Session, library, settings: Settings, today: dt.date) -> dict[str, CalendarObject]:
    """The clinic's staff calendar within the feeds' window around `today`, one calendar object per event,
    keyed by UID. Each event's DTSTAMP is its LAST-MODIFIED, so an unchanged item gives byte-identical
    content from one push to the next."""
    from icalendar import Calendar

    from tracker.exporters.collect import export_calendar
    from tracker.exporters.ics import PRODID
    from tracker.services.feeds import feed_window

    window = feed_window(settings.feeds, today, settings.timezone)
    stamp = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)  # replaced per event below
    calendar = export_calendar(session, library, settings.export, patient=None, audience="staff", stamp=stamp,
                               start=window.start, end=window.end, cancelled_since=window.cancelled_since)
    objects = {}
    for event in calendar.walk("VEVENT"):
        if "LAST-MODIFIED" in event:
            event.pop("DTSTAMP", None)
            event.add("dtstamp", event["LAST-MODIFIED"].dt)
        wrapper = Calendar()
        wrapper.add("prodid", PRODID)
        wrapper.add("version", "2.0")
        wrapper.add_component(event)
        body = wrapper.to_ical()
        uid = str(event["UID"])
        objects[uid] = CalendarObject(uid, body, hashlib.sha256(body).hexdigest())
    return objects


def object_href(collection: str, uid: str) -> str:
    return urljoin(collection, quote(uid, safe="") + ".ics")


def push_calendar(engine: Engine, library, settings: Settings, today: dt.date, *,
                  dry_run: bool = False) -> PushReport:
    """Bring `[caldav] url` in step with the staff calendar of the feeds' window around `today`. Raises
    ConfigError when no collection is configured, LockedError while another push runs, DeliveryError when
    the server refuses or cannot be reached (after recording what was sent)."""
    if settings.caldav is None:
        raise ConfigError("caldav: not configured; add a [caldav] table with url (and username, "
                          "password_env or password_file) to the site config")
    if dry_run:  # reads only: no lock
        return _push(engine, library, settings, today, dry_run=True)
    from tracker.locks import caldav_lock

    with caldav_lock(engine):
        return _push(engine, library, settings, today, dry_run=False)


def _push(engine: Engine, library, settings: Settings, today: dt.date, *, dry_run: bool) -> PushReport:
    caldav = settings.caldav
    key = collection_key(caldav.url)
    with Session(engine) as session:
        objects = staff_objects(session, library, settings, today)
        stored = {row.uid: (row.content_hash, row.etag)
                  for row in session.exec(select(CalDavObject).where(CalDavObject.collection == key))}
    report = PushReport(collection=key, dry_run=dry_run)
    if dry_run:  # what would be sent, judged against what was last sent (the server is not asked)
        for uid, obj in objects.items():
            if uid not in stored:
                report.created.append(uid)
            elif stored[uid][0] != obj.content_hash:
                report.updated.append(uid)
            else:
                report.unchanged += 1
        report.removed = sorted(set(stored) - set(objects))
        return report
    sent: dict[str, tuple[str, str | None]] = {}  # uid -> (hash, etag) of what the server accepted
    error = None
    try:
        client = _client(caldav)
        on_server = _server_etags(client, caldav.url)
        for uid, obj in objects.items():
            href = object_href(caldav.url, uid)
            previous = stored.get(uid)
            if previous is not None and previous[0] == obj.content_hash and href in on_server \
                    and (previous[1] is None or on_server[href] is None or previous[1] == on_server[href]):
                report.unchanged += 1
                continue
            sent[uid] = (obj.content_hash, _put(client, href, obj.body))
            (report.created if previous is None else report.updated).append(uid)
        for uid in sorted(set(stored) - set(objects)):
            _delete(client, object_href(caldav.url, uid))
            report.removed.append(uid)
    except DeliveryError as exc:
        error = exc
    except Exception as exc:  # the server unreachable, a TLS or protocol failure: one line, then recorded
        error = DeliveryError(f"caldav: {collection_key(caldav.url)}: {_reason(exc)}")
    _record(engine, key, sent, report.removed)
    if error is not None:
        raise error
    return report


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if type(exc).__name__ == "TooManyRedirects" and response is not None:  # _client follows none
        return f"the server answered {response.status_code} (redirects are not followed)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _client(caldav: CalDavSettings):
    import caldav as caldav_library

    from tracker.config import caldav_password

    client = caldav_library.DAVClient(url=caldav.url, username=caldav.username, password=caldav_password(caldav),
                                      timeout=caldav.timeout_s, enable_rfc6764=False)
    # Patient data goes to the configured collection only: a redirect is a failure, not followed to another
    # host or scheme (which would also escape the plaintext rule of `[caldav] url`), and the environment's
    # proxy variables and .netrc are not read, as for the webhook.
    client.session.max_redirects = 0
    client.session.trust_env = False
    return client


def _check(response, what: str, href: str, ok: tuple[int, ...]) -> None:
    if response.status not in ok:
        raise DeliveryError(f"caldav: {what} {collection_key(href)}: the server answered {response.status}")


def _server_etags(client, url: str) -> dict[str, str | None]:
    """Each object in the collection (absolute href) and its ETag, from one Depth 1 PROPFIND."""
    response = client.propfind(url, PROPFIND_ETAGS, depth=1)
    _check(response, "list", url, (207,))
    out = {}
    for node in response.tree.iter("{DAV:}response") if response.tree is not None else ():
        href = node.findtext("{DAV:}href")
        if not href or not href.endswith(".ics"):
            continue  # the collection itself
        etag = node.findtext(".//{DAV:}getetag")
        out[urljoin(url, href)] = etag.strip() if etag else None
    return out


def _put(client, href: str, body: bytes) -> str | None:
    response = client.put(href, body.decode("utf-8"),
                          {"Content-Type": "text/calendar; charset=utf-8"})
    _check(response, "PUT", href, (200, 201, 204))
    etag = response.headers.get("ETag")
    return etag.strip() if etag else None


def _delete(client, href: str) -> None:
    _check(client.delete(href), "DELETE", href, (200, 204, 404))  # already gone is what was wanted


def _record(engine: Engine, key: str, sent: dict, removed: list[str]) -> None:
    from tracker.dates import utcnow
    from tracker.db.engine import for_writing

    if not sent and not removed:
        return
    with Session(for_writing(engine)) as session:
        rows = {row.uid: row for row in session.exec(select(CalDavObject).where(CalDavObject.collection == key))}
        now = utcnow()
        for uid, (content_hash, etag) in sent.items():
            row = rows.get(uid) or CalDavObject(collection=key, uid=uid, content_hash=content_hash,
                                                 pushed_at=now)
            row.content_hash, row.etag, row.pushed_at = content_hash, etag, now
            session.add(row)
        for uid in removed:
            if uid in rows:
                session.delete(rows[uid])
        session.commit()
