"""Protocol snapshots: the content of every protocol version a course was planned with, stored under its
hash, so that a course keeps its rules when the protocol file changes (until it is re-planned)."""

from __future__ import annotations

import json

from sqlmodel import Session

from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.dates import utcnow
from tracker.db.tables import Course, ProtocolSnapshot

_SNAPSHOTS: dict[str, Protocol] = {}


def remember_protocol(session: Session, protocol: Protocol) -> None:
    """Store the protocol's content under its hash (once) so courses can be re-planned with it later."""
    if session.get(ProtocolSnapshot, protocol.content_hash) is None:
        session.add(
            ProtocolSnapshot(
                content_hash=protocol.content_hash,
                protocol_id=protocol.id,
                version=protocol.version,
                origin=protocol.origin,
                content=snapshot_content(protocol),
                created_at=utcnow(),
            )
        )
        session.flush()


def course_protocol(session: Session, library: ProtocolLibrary, course: Course) -> Protocol:
    """The protocol a course was planned with: the current file if unchanged, else its stored snapshot."""
    current = library.protocols.get(course.drug)
    if current is not None and current.content_hash == course.protocol_hash:
        return current
    if course.protocol_hash not in _SNAPSHOTS:
        snapshot = session.get(ProtocolSnapshot, course.protocol_hash)
        if snapshot is None:
            if current is None:
                return library.get(course.drug)
            return current
        protocol = protocol_from_snapshot(snapshot.content)
        protocol.origin = snapshot.origin or ""
        protocol.content_hash = snapshot.content_hash
        _SNAPSHOTS[course.protocol_hash] = protocol
    return _SNAPSHOTS[course.protocol_hash]


def snapshot_content(protocol: Protocol) -> str:
    return json.dumps(protocol.model_dump(by_alias=True, mode="json"), sort_keys=True)


def protocol_from_snapshot(content: str) -> Protocol:
    """The protocol stored by `remember_protocol`, validated again (its hash is the stored one)."""
    return Protocol.model_validate(_durations_as_text(json.loads(content)))


def _durations_as_text(value):
    """A stored snapshot has durations as {"count": 2, "unit": "w"}; the file format writes `2w`."""
    if isinstance(value, dict):
        if set(value) == {"count", "unit"}:
            return f"{value['count']}{value['unit']}"
        return {k: _durations_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_durations_as_text(v) for v in value]
    return value
