"""Protocols as readable timelines (`tracker schedules show`) and summaries (`schedules list`)."""

from __future__ import annotations

import datetime as dt

from tracker.core.defaults import item_clinic_defaults, threshold_words
from tracker.core.plan import CourseFacts, PatientFacts, plan_course
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.core.terms import CLINIC_DEFAULT
from tracker.core.thresholds import ACTION_WORDS
from tracker.resources import schedules_dir

# A nominal Monday to lay a protocol out on; only offsets from it are shown.
NOMINAL_START = dt.date(2024, 1, 1)


def protocol_timeline(protocol: Protocol, weeks: int = 52, start: dt.date = NOMINAL_START) -> list[dict]:
    """Every item of a course started on `start`, for a patient every baseline rule applies to."""
    facts = CourseFacts(start=start, patient=PatientFacts(sex="f", childbearing_potential=True))
    horizon = start + dt.timedelta(weeks=weeks)
    rows = []
    for item in plan_course(protocol, facts, horizon):
        offset = (item.due - start).days
        rows.append(
            {
                "week": round(offset / 7, 1),
                "day": offset,
                "date": item.due.isoformat(),
                "kind": item.kind,
                "tests": list(item.tests),
                "gate": item.gate,
                "measure": item.measure,
                "target": item.target,
                "title": item.title,
                "detail": item.detail,
                "sources": list(item.sources),
                "clinic_default": list(item_clinic_defaults(protocol, item.kind, item.tests, item.week)),
            }
        )
    return rows


def protocol_origin(protocol: Protocol) -> str:
    builtin = str(schedules_dir())
    return "built-in" if protocol.origin.startswith(builtin) else f"clinic ({protocol.origin})"


def protocol_summaries(library: ProtocolLibrary) -> list[dict]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "class": p.drug_class,
            "version": p.version,
            "hash": p.content_hash,
            "sources": len(p.sources),
            "aliases": [*p.aliases, *p.brands],
            "origin": protocol_origin(p),
        }
        for p in library
    ]


# --------------------------------------------------------------------------------------------------------
# The whole rule set (issue 14 item 8): one row per rule, each with its sources or "clinic default", so a
# clinician can check every line against its source.


def protocol_rules(protocol: Protocol, vocabulary=None) -> list[dict]:
    """Every rule of `protocol` as rows: `section`, `rule` (what it says, in words, with the fields the clinic
    chose marked "clinic default"), `sources`, `clinic_default` (true: the whole rule; a list: those fields;
    false: none), `note`."""
    rows: list[dict] = []

    def add(section: str, rule, text: str, **extra) -> None:
        marked = rule.clinic_default
        if isinstance(marked, list) and CLINIC_DEFAULT not in text:  # fields no phrase above marks
            text += f" ({CLINIC_DEFAULT}: {', '.join(f.replace('_', ' ') for f in marked)})"
        rows.append({"section": section, "rule": text, "sources": list(rule.sources),
                     "clinic_default": marked if isinstance(marked, list) else bool(marked),
                     "note": (rule.note or "").strip() or None, **extra})

    for rule in protocol.baseline:
        add("baseline", rule, _baseline_words(rule, vocabulary))
    for rule in protocol.during_treatment:
        words = f"{', '.join(rule.tests)} read during treatment{_when_words(rule.when)}"
        add("during treatment", rule, words + _passes_words(rule.tests, vocabulary))
    if protocol.monitoring is not None:
        monitoring = protocol.monitoring
        add("monitoring", monitoring, "the schedule restarts on a dose change" if monitoring.restart_on_dose_change
            else "the schedule does not restart on a dose change")
        for track in monitoring.tracks:
            restart = protocol.restarts_on_dose_change(track)
            add("monitoring", track, f"track {track.name}: {', '.join(track.tests)}"
                + ("" if track.restart_on_dose_change is None else
                   f" (restarts on a dose change: {'yes' if restart else 'no'})"))
            for number, phase in enumerate(track.phases, 1):
                add("monitoring", phase, f"track {track.name} phase {number}: {_phase_words(phase, track)}")
    for checkpoint in protocol.checkpoints:
        add("checkpoint", checkpoint, f"week {checkpoint.week}: target {checkpoint.target_label()}; "
            f"if not met: {IF_NOT_MET_WORDS[checkpoint.if_not_met]}")
        if checkpoint.partial is not None:
            partial = checkpoint.partial
            add("checkpoint", partial, f"week {checkpoint.week} partial response, {partial.target_label()}: "
                f"continue, re-check at week {partial.recheck_week}")
    if protocol.limits is not None:
        limits = protocol.limits
        parts = [_field(limits, "max_duration", f"maximum {limits.max_duration.words()}"),
                 f"past it: {limits.severity}"]
        if limits.warn_before is not None:
            parts.append(_field(limits, "warn_before", f"warn {limits.warn_before.words()} before"))
        if limits.join_courses_within is not None:
            parts.append(_field(limits, "join_courses_within",
                                f"courses at most {limits.join_courses_within.words()} apart count as one"))
        add("limits", limits, "; ".join(parts))
    if protocol.lab_baseline is not None:
        rule = protocol.lab_baseline
        tests = ", ".join(rule.tests) if rule.tests else "every test a change rule reads"
        add("lab baseline", rule, _field(rule, "mean_of", f"baseline of {tests} for change rules: the mean of "
                                                           f"the latest {rule.mean_of} pre-start results"))
    if protocol.clearance is not None:
        rule = protocol.clearance
        add("clearance", rule, _field(rule, "estimate", "no creatinine clearance on record: "
                                      + ", then ".join(CLEARANCE_WORDS[e] for e in rule.estimate)))
    for threshold in protocol.thresholds:
        action = ACTION_WORDS[threshold.action]
        if threshold.repeat_in is not None:
            action += f" in {threshold.repeat_in.words()}"
        condition = threshold_words(threshold)
        if isinstance(threshold.clinic_default, list):  # a sourced limit with some fields the clinic's
            condition += f" ({CLINIC_DEFAULT}: {', '.join(f.replace('_', ' ') for f in threshold.clinic_default)})"
        add("threshold", threshold, f"{condition} -> {action} ({threshold.severity})"
            + (f": {threshold.message.strip()}" if threshold.message else ""),
            condition=condition, action=action, severity=threshold.severity,
            message=threshold.message.strip() if threshold.message else None)
    return rows


IF_NOT_MET_WORDS = {"stop": "stop", "consider_stopping": "consider stopping", "review": "review"}
CLEARANCE_WORDS = {"cockcroft_gault": "a Cockcroft-Gault estimate (creatinine, age, weight, sex)",
                   "egfr": "the latest eGFR standing in"}
WHEN_WORDS = {"always": "", "childbearing_potential": "women of childbearing potential", "female": "women",
              "at_risk": "patients at risk: consider"}


def _field(rule, name: str, words: str) -> str:
    """`words`, marked when the clinic chose that field (and not the whole rule, which says so itself)."""
    return f"{words} ({CLINIC_DEFAULT})" if isinstance(rule.clinic_default, list) and name in rule.clinic_default \
        else words


def _when_words(when: str) -> str:
    return f"; only for {WHEN_WORDS[when]}" if WHEN_WORDS.get(when) else ""


def _passes_words(tests, vocabulary) -> str:
    if vocabulary is None:
        return ""
    out = []
    for test in tests:
        spec = vocabulary.tests.get(test)
        if spec is not None and spec.passes:
            # Which screening values pass is a product rule (clinical-reference section 15a: NOT FOUND).
            out.append(f"{test} passes on {' or '.join(spec.passes)}"
                       + (f", {' or '.join(spec.repeat_or_refer)} repeat or refer" if spec.repeat_or_refer else "")
                       + f" ({CLINIC_DEFAULT})")
    return f"; {'; '.join(out)}" if out else ""


def _baseline_words(rule, vocabulary) -> str:
    parts = [f"{', '.join(rule.tests)} before the start, {rule.gate} gate{_when_words(rule.when)}"]
    if rule.times > 1:
        parts.append(_field(rule, "times", f"{rule.times} results"))
    for name, label in (("valid_for", "valid for"), ("min_gap", "at least"), ("max_gap", "at most"),
                        ("last_within", "the last within")):
        value = getattr(rule, name)
        if value is not None:
            suffix = " apart" if name in ("min_gap", "max_gap") else (" of the start" if name == "last_within" else "")
            parts.append(_field(rule, name, f"{label} {value.words()}{suffix}"))
    return "; ".join(parts) + _passes_words(rule.tests, vocabulary)


def _phase_words(phase, track) -> str:
    tests = f"{', '.join(phase.tests)}: " if phase.tests and phase.tests != track.tests else ""
    if phase.at is not None:
        return tests + "once at " + ", ".join(f"+{d.words()}" for d in phase.at)
    text = f"every {phase.every.words()}"
    if phase.for_ is not None:
        text += f" for {phase.for_.words()}"
    elif phase.until_dose_stable is not None:
        text += f" until the dose is stable for {phase.until_dose_stable.words()}"
    else:
        text += " thereafter"
    return tests + text
