"""Which of a protocol's values behind a calendar item are clinic defaults (`clinic_default: true`: no
clinical source gives them), so every place that shows the item can say "clinic default". Pure.

Read from the protocol the course was planned with at display time, so items planned before the marking
existed show it too.
"""

from __future__ import annotations

from tracker.core.protocol import Protocol, Threshold
from tracker.core.terms import CLINIC_DEFAULT


def item_clinic_defaults(protocol: Protocol, kind: str, tests=(), week: int | None = None,
                         origin: str | None = None) -> tuple[str, ...]:
    """What of the rule behind an item (a baseline test, a monitoring track, a checkpoint or its partial
    re-check, a course limit) is a clinic default, in words; () when all of it comes from a source."""
    tests = set(tests or ())
    out: list[str] = []
    if kind == "baseline":
        for rule in protocol.baseline:
            if not rule.clinic_default or not tests & set(rule.tests):
                continue
            names = ", ".join(rule.tests)
            if rule.clinic_default is True:
                out.append(f"baseline {names}")
            else:  # only some fields of a sourced rule (e.g. its validity window) are the clinic's
                out += [f"baseline {names}: {_field_words(rule, name)}" for name in rule.clinic_default]
    elif kind == "lab" and protocol.monitoring is not None:
        for track in protocol.monitoring.tracks:
            if tests & set(track.tests) and (protocol.monitoring.clinic_default or track.clinic_default
                                             or any(p.clinic_default for p in track.phases)):
                out.append(f"{track.name} monitoring schedule")
    elif kind == "checkpoint":
        for checkpoint in protocol.checkpoints:
            partial = checkpoint.partial
            if origin == "partial" and partial is not None and partial.recheck_week == week:
                if partial.clinic_default:
                    out.append(f"week {week} partial re-check")
            elif origin != "partial" and checkpoint.week == week and checkpoint.clinic_default:
                out.append(f"week {week} target")
    elif kind == "limit" and protocol.limits is not None:
        limits = protocol.limits
        if limits.clinic_default:
            out.append(f"maximum {limits.max_duration.words()}")
            if limits.join_courses_within is not None:
                out.append(f"courses at most {limits.join_courses_within.words()} apart count as one")
    return tuple(dict.fromkeys(out))


def _field_words(rule, name: str) -> str:
    """`valid for 4 weeks`, `last within 3 days`: one field of a rule in words."""
    value = getattr(rule, name, None)
    shown = value.words() if hasattr(value, "words") else value
    return f"{name.replace('_', ' ')} {shown}" if shown is not None else name


def clinic_default_words(labels: tuple[str, ...]) -> str:
    """`clinic default: maximum 7 days` (empty when nothing is)."""
    return f"{CLINIC_DEFAULT}: {'; '.join(labels)}" if labels else ""


def threshold_words(threshold: Threshold) -> str:
    """A threshold's condition, marked when the clinic chose it."""
    text = threshold.describe()
    return f"{text} ({CLINIC_DEFAULT})" if threshold.clinic_default else text
