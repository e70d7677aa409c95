"""Protocol files: one YAML file per drug, validated into typed models.

The format is documented in schedules/README.md. Loading reports every problem at once as
`file:line: field: message`, so a clinic editing a protocol sees all its mistakes in one go.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from tracker.dates import Duration
from tracker.errors import InputError, NotFoundError, ProtocolError
from tracker.resources import schedules_dir
from tracker.vocabulary import VOCABULARY_FILE, Vocabulary, load_vocabulary


_NEGATIVE_DURATION = re.compile(r"^\s*-\s*\d+\s*[dwmy]\s*$")


def _duration(value: Any) -> Duration:
    if isinstance(value, bool) or (isinstance(value, str) and _NEGATIVE_DURATION.match(value)):
        raise ValueError(f"must be a positive duration like 14d, 2w, 3m or 1y, got {value!r}")
    try:
        duration = Duration.parse(value)
    except InputError:
        raise ValueError(f"expected a duration like 14d, 2w, 3m or 1y, got {value!r}") from None
    if duration.count <= 0:
        raise ValueError(f"must be positive, got {value!r}")
    return duration


Dur = Annotated[Duration, BeforeValidator(_duration)]
Measure = Literal["easi", "iga", "itch_nrs", "dlqi", "poem"]
MEASURE_RANGES: dict[str, tuple[int, int]] = {
    "easi": (0, 72),
    "iga": (0, 4),
    "itch_nrs": (0, 10),
    "dlqi": (0, 30),
    "poem": (0, 28),
}


class Rule(BaseModel):
    """Fields every rule carries: its sources, and whether it is a clinic default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sources: list[str] = Field(default_factory=list)
    clinic_default: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _cited(self):
        if not self.sources and not self.clinic_default:
            raise ValueError("every rule names its source keys (or is marked clinic_default: true)")
        return self


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    citation: str
    url: str | None = None
    tier: str | None = None


class BaselineTest(Rule):
    tests: list[str] = Field(min_length=1)
    gate: Literal["hard", "advisory"] = "advisory"
    # Whom the test applies to; `at_risk` tests are advisory reminders to consider.
    when: Literal["always", "childbearing_potential", "female", "at_risk"] = "always"
    # How old a result may be and still count; absent = any result on record.
    valid_for: Dur | None = None
    # How many separate results are needed before starting (ciclosporin: BP and creatinine at least twice).
    times: int = Field(default=1, ge=1, le=5)


class Phase(Rule):
    tests: list[str] | None = None  # defaults to the track's tests
    every: Dur | None = None
    at: list[Dur] | None = None  # one-off draws at these offsets from the phase start
    for_: Dur | None = Field(default=None, alias="for")
    until_dose_stable: Dur | None = None

    @model_validator(mode="after")
    def _shape(self):
        if (self.every is None) == (self.at is None):
            raise ValueError("a phase has either `every` (repeating) or `at` (one-off offsets)")
        if self.for_ is not None and self.until_dose_stable is not None:
            raise ValueError("give `for` or `until_dose_stable`, not both")
        if self.at is not None and (self.for_ or self.until_dose_stable):
            raise ValueError("`for`/`until_dose_stable` go with `every`, not `at`")
        return self

    @property
    def length(self) -> Duration | None:
        """How long the phase lasts from its start; None = open-ended."""
        if self.at is not None:
            return max(self.at, key=lambda d: (d.approx_days(), d.count))
        return self.for_ or self.until_dose_stable


class Track(Rule):
    name: str
    tests: list[str] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)
    restart_on_dose_change: bool | None = None  # None = the monitoring block's default

    @model_validator(mode="after")
    def _ends(self):
        for phase in self.phases[:-1]:
            if phase.every is not None and phase.length is None:
                raise ValueError("only the last phase may be open-ended (add `for` or `until_dose_stable`)")
        return self


class Monitoring(Rule):
    restart_on_dose_change: bool = False
    tracks: list[Track] = Field(default_factory=list)


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measure: Measure
    improvement_pct: float | None = Field(default=None, gt=0, le=100)  # EASI-50 = 50
    reduction: float | None = Field(default=None, gt=0)  # DLQI >= 4-point reduction = 4
    at_most: float | None = Field(default=None, ge=0)  # IGA 0/1 = at_most 1

    @model_validator(mode="after")
    def _one(self):
        given = [x for x in (self.improvement_pct, self.reduction, self.at_most) if x is not None]
        if len(given) != 1:
            raise ValueError("a criterion has exactly one of improvement_pct, reduction, at_most")
        return self

    def label(self) -> str:
        name = {"easi": "EASI", "iga": "IGA", "itch_nrs": "itch NRS", "dlqi": "DLQI", "poem": "POEM"}
        if self.improvement_pct is not None:
            if self.measure == "easi":
                return f"EASI-{self.improvement_pct:g}"
            return f"{name[self.measure]} improved >= {self.improvement_pct:g}%"
        if self.reduction is not None:
            return f"{name[self.measure]} reduced >= {self.reduction:g} points"
        return f"{name[self.measure]} <= {self.at_most:g}"


class Partial(Rule):
    """Partial responders may continue to a later checkpoint instead of switching.

    `target` may be empty: the labels allow partial responders to continue but give no numeric definition
    of a partial response, so it is the clinician's judgement.
    """

    target: list[Criterion] = Field(default_factory=list)
    recheck_week: int = Field(gt=0)

    def target_label(self) -> str:
        if not self.target:
            return "partial response (clinician's judgement)"
        return " and ".join(c.label() for c in self.target)


class Checkpoint(Rule):
    week: int = Field(gt=0)
    target: list[Criterion] = Field(min_length=1)
    label: str | None = None
    partial: Partial | None = None
    # What the source says to do when the target is not met: a stop rule (NICE), the labels' "consider
    # discontinuing", or a review (assessment point, clinic decides).
    if_not_met: Literal["stop", "consider_stopping", "review"] = "review"
    # partial.recheck_week must be after `week`: checked in _check_semantics, to report the recheck line.

    def target_label(self) -> str:
        return self.label or " and ".join(c.label() for c in self.target)

    @property
    def measures(self) -> list[str]:
        return [c.measure for c in self.target]


class Limits(Rule):
    max_duration: Dur
    warn_before: Dur | None = None


class Threshold(Rule):
    analyte: str
    below: float | None = None
    above: float | None = None
    above_uln: float | None = Field(default=None, gt=0)  # ALT > 3 x ULN -> 3
    rise_pct: float | None = Field(default=None, gt=0)  # creatinine > 30% above baseline -> 30
    fall_pct: float | None = Field(default=None, gt=0)  # eGFR falls > 25% -> 25
    equals: list[str] | None = None  # categorical results, e.g. tpmt absent
    unit: str | None = None
    action: Literal["repeat", "interrupt", "stop", "discuss", "withhold", "reduce_dose", "refuse", "review"]
    repeat_in: Dur | None = None
    severity: Literal["info", "warning", "critical"] = "warning"
    message: str | None = None
    # The action applies only once a repeat result confirms it ("confirmed", "at more than one measurement").
    confirmed: bool = False

    @model_validator(mode="after")
    def _one(self):
        given = [
            x
            for x in (self.below, self.above, self.above_uln, self.rise_pct, self.fall_pct, self.equals)
            if x is not None
        ]
        if len(given) != 1:
            raise ValueError("a threshold has exactly one of below, above, above_uln, rise_pct, fall_pct, equals")
        if self.action == "repeat" and self.repeat_in is None:
            raise ValueError("action `repeat` needs `repeat_in`")
        return self

    def describe(self) -> str:
        text = self._condition()
        return f"{text} (confirmed on repeat)" if self.confirmed else text

    def _condition(self) -> str:
        if self.below is not None:
            return f"{self.analyte} < {self.below:g}{' ' + self.unit if self.unit else ''}"
        if self.above is not None:
            return f"{self.analyte} > {self.above:g}{' ' + self.unit if self.unit else ''}"
        if self.above_uln is not None:
            return f"{self.analyte} > {self.above_uln:g} x ULN"
        if self.rise_pct is not None:
            return f"{self.analyte} > {self.rise_pct:g}% above baseline"
        if self.fall_pct is not None:
            return f"{self.analyte} falls > {self.fall_pct:g}% below baseline"
        return f"{self.analyte} is {' or '.join(self.equals or [])}"


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: int = Field(ge=1)
    name: str
    brands: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    drug_class: str = Field(alias="class")
    sources: dict[str, Source] = Field(min_length=1)
    baseline: list[BaselineTest] = Field(default_factory=list)
    monitoring: Monitoring | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    limits: Limits | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    notes: str | None = None

    # Filled in by the loader, not part of the file.
    origin: str = Field(default="", exclude=True)
    content_hash: str = Field(default="", exclude=True)

    @property
    def names(self) -> list[str]:
        return [self.id, self.name.lower(), *(a.lower() for a in self.aliases), *(b.lower() for b in self.brands)]

    def restarts_on_dose_change(self, track: Track) -> bool:
        if track.restart_on_dose_change is not None:
            return track.restart_on_dose_change
        return bool(self.monitoring and self.monitoring.restart_on_dose_change)

    def rule_sources(self) -> list[str]:
        """All source keys cited by the protocol's rules, in file order."""
        keys: list[str] = []
        for rule in self._rules():
            for key in rule.sources:
                if key not in keys:
                    keys.append(key)
        return keys

    def _rules(self):
        yield from self.baseline
        if self.monitoring:
            yield self.monitoring
            for track in self.monitoring.tracks:
                yield track
                yield from track.phases
        for checkpoint in self.checkpoints:
            yield checkpoint
            if checkpoint.partial:
                yield checkpoint.partial
        if self.limits:
            yield self.limits
        yield from self.thresholds


# --------------------------------------------------------------------------------------------------------
# Loading with line numbers


_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def _collect_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], duplicates: list | None = None) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen and duplicates is not None:
                # PyYAML keeps the last value silently; a clinic editing a file would never notice.
                duplicates.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _collect_lines(value_node, path + (key,), lines, duplicates)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            _collect_lines(item, path + (index,), lines, duplicates)
            lines[path + (index,)] = item.start_mark.line + 1


def _line_for(lines: dict[tuple, int], loc: tuple) -> int:
    loc = tuple("for" if part == "for_" else part for part in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def _field_name(loc: tuple) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append("for" if part == "for_" else str(part))
    return ".".join(parts) or "(file)"


def _pydantic_loc(loc: tuple) -> tuple:
    """Drop pydantic's union/validator tags so a location matches the YAML path."""
    return tuple(p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "literal[")))


@dataclass
class LoadResult:
    protocol: Protocol | None
    problems: list[str] = field(default_factory=list)


def load_protocol_file(path: Path, vocabulary: Vocabulary | None = None) -> LoadResult:
    vocabulary = vocabulary or load_vocabulary()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return LoadResult(None, [f"{name}:1: (file): cannot read: {exc.strerror}"])
    try:
        # One parse with libyaml when available: the node tree gives line numbers, and the data is
        # constructed from the same tree (pure-Python YAML made loading the library take seconds).
        loader = _FAST_LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return LoadResult(None, [f"{name}:{line}: (file): not valid YAML: {getattr(exc, 'problem', exc)}"])
    if not isinstance(data, dict) or node is None:
        return LoadResult(None, [f"{name}:1: (file): expected a mapping of protocol fields"])
    lines: dict[tuple, int] = {}
    duplicates: list[tuple[tuple, int]] = []
    _collect_lines(node, (), lines, duplicates)

    problems: list[str] = [
        f"{name}:{line}: {_field_name(loc)}: duplicate key (only the last one would be used)" for loc, line in duplicates
    ]
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _pydantic_loc(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}:{_line_for(lines, loc)}: {_field_name(loc)}: {message}")
        # Still check references in what parsed, so the user sees those problems too.
        problems.extend(_check_references_raw(data, vocabulary, lines, name))
        problems.extend(_check_semantics(data, vocabulary, lines, name))
        return LoadResult(None, _by_line(_dedupe(problems)))

    problems.extend(_check_references(protocol, vocabulary, lines, name))
    problems.extend(_check_semantics(data, vocabulary, lines, name))
    if problems:
        return LoadResult(None, _by_line(problems))
    protocol.origin = name
    protocol.content_hash = protocol_hash(protocol)
    return LoadResult(protocol, [])


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _by_line(problems: list[str]) -> list[str]:
    """Problems of one file in line order (a stable sort keeps same-line problems in check order)."""

    def line(problem: str) -> int:
        match = re.match(r"^.*?:(\d+): ", problem)
        return int(match.group(1)) if match else 0

    return sorted(problems, key=line)


def _check_references(protocol: Protocol, vocabulary: Vocabulary, lines, name: str) -> list[str]:
    return _check_references_raw(protocol.model_dump(by_alias=True, mode="python"), vocabulary, lines, name)


def _check_references_raw(data: dict, vocabulary: Vocabulary, lines, name: str) -> list[str]:
    """Unknown test codes and source keys, wherever they appear in the file."""
    problems: list[str] = []
    source_keys = set((data.get("sources") or {}).keys()) if isinstance(data.get("sources"), dict) else set()

    def walk(value: Any, loc: tuple) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "sources" and loc == ():
                    continue
                if key == "sources" and isinstance(item, list):
                    for index, source in enumerate(item):
                        if source not in source_keys:
                            near = difflib.get_close_matches(str(source), source_keys, n=1)
                            hint = f" (did you mean {near[0]}?)" if near else ""
                            problems.append(
                                f"{name}:{_line_for(lines, loc + (key, index))}: "
                                f"{_field_name(loc + (key, index))}: unknown source key {source!r}{hint}"
                            )
                elif key in ("tests", "analyte") and item is not None:
                    codes = item if isinstance(item, list) else [item]
                    for index, code in enumerate(codes):
                        if str(code) not in vocabulary:
                            where = loc + ((key, index) if isinstance(item, list) else (key,))
                            near = difflib.get_close_matches(str(code), vocabulary.tests, n=1)
                            hint = f" (did you mean {near[0]}?)" if near else ""
                            problems.append(
                                f"{name}:{_line_for(lines, where)}: {_field_name(where)}: "
                                f"unknown test code {code!r}{hint}"
                            )
                else:
                    walk(item, loc + (key,))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, loc + (index,))

    walk(data, ())
    return problems


def _check_semantics(data: dict, vocabulary: Vocabulary, lines, name: str) -> list[str]:
    """Checks that need the vocabulary or several fields: units, categories, repeated checkpoint weeks.

    Works on the raw mapping (type-checking each piece) so these problems are reported alongside schema ones.
    """
    problems: list[str] = []

    def report(loc: tuple, message: str) -> None:
        problems.append(f"{name}:{_line_for(lines, loc)}: {_field_name(loc)}: {message}")

    thresholds = data.get("thresholds")
    for index, threshold in enumerate(thresholds if isinstance(thresholds, list) else []):
        if not isinstance(threshold, dict):
            continue
        test = vocabulary.tests.get(str(threshold.get("analyte")))
        if test is None:
            continue  # reported as an unknown test code
        loc = ("thresholds", index)
        equals = threshold.get("equals")
        unit = threshold.get("unit")
        numeric = any(threshold.get(k) is not None for k in ("below", "above", "above_uln", "rise_pct", "fall_pct"))
        if isinstance(equals, list):
            if not test.is_categorical:
                report(loc + ("equals",), f"{test.code} is not a categorical test, so `equals` cannot match")
            for i, value in enumerate(equals):
                if test.is_categorical and str(value) not in test.values:
                    report(loc + ("equals", i), f"{value!r} is not a result of {test.code} "
                                                f"(one of {', '.join(test.values)})")
        elif numeric and not test.is_numeric:
            report(loc + ("analyte",), f"{test.code} has no numeric results (use `equals`)")
        if unit is not None and test.is_numeric and str(unit) != test.unit:
            report(loc + ("unit",), f"{unit!r} does not match the vocabulary unit {test.unit!r} "
                                    f"for {test.code} (convert the value)")
    checkpoints = data.get("checkpoints")
    seen: dict[object, int] = {}
    for index, checkpoint in enumerate(checkpoints if isinstance(checkpoints, list) else []):
        week = checkpoint.get("week") if isinstance(checkpoint, dict) else None
        if week is None:
            continue
        if week in seen:
            report(("checkpoints", index, "week"), f"week {week} is already a checkpoint (checkpoints[{seen[week]}])")
        seen.setdefault(week, index)
        partial = checkpoint.get("partial")
        recheck = partial.get("recheck_week") if isinstance(partial, dict) else None
        if isinstance(recheck, int) and isinstance(week, int) and recheck <= week:
            report(("checkpoints", index, "partial", "recheck_week"),
                   f"recheck week {recheck} must be after the checkpoint's week {week}")
    return problems


def protocol_hash(protocol: Protocol) -> str:
    canonical = json.dumps(protocol.model_dump(by_alias=True, mode="json"), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------------
# The library: built-in protocols plus a clinic's overrides


@dataclass
class ProtocolLibrary:
    protocols: dict[str, Protocol]
    vocabulary: Vocabulary

    def get(self, name: str) -> Protocol:
        """Find a protocol by id, generic name, alias or brand (case-insensitive)."""
        wanted = name.strip().lower()
        for protocol in self.protocols.values():
            if wanted in protocol.names:
                return protocol
        known = sorted({n for p in self.protocols.values() for n in p.names})
        near = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
        ids = list(dict.fromkeys(self.get(n).id for n in near))
        raise NotFoundError("drug", name, ids)

    def __iter__(self):
        return iter(sorted(self.protocols.values(), key=lambda p: p.id))


def protocol_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != VOCABULARY_FILE and not p.name.startswith("_"))


def clinic_schedules_dir(config_dir: str | None = None) -> Path | None:
    value = os.environ.get("TRACKER_SCHEDULES") or config_dir
    return Path(value) if value else None


def load_library(clinic_dir: Path | None = None, builtin_dir: Path | None = None) -> ProtocolLibrary:
    """Load every built-in protocol, then the clinic's files, which add drugs or replace one by id."""
    vocabulary = load_vocabulary()
    protocols: dict[str, Protocol] = {}
    problems: list[str] = []
    dirs = [builtin_dir or schedules_dir()]
    if clinic_dir is not None:
        if not clinic_dir.is_dir():
            raise InputError("TRACKER_SCHEDULES", str(clinic_dir), "not a directory")
        dirs.append(clinic_dir)
    for directory in dirs:
        for path in protocol_files(directory):
            result = load_protocol_file(path, vocabulary)
            problems.extend(result.problems)
            if result.protocol is not None:
                protocols[result.protocol.id] = result.protocol
    if problems:
        raise ProtocolError(problems)
    return ProtocolLibrary(protocols, vocabulary)


_LIBRARY: dict[str | None, ProtocolLibrary] = {}


def library(config_dir: str | None = None) -> ProtocolLibrary:
    """The library in effect (built-ins plus $TRACKER_SCHEDULES or the config's dir), loaded once."""
    clinic = clinic_schedules_dir(config_dir)
    key = str(clinic) if clinic else None
    if key not in _LIBRARY:
        _LIBRARY[key] = load_library(clinic)
    return _LIBRARY[key]


# --------------------------------------------------------------------------------------------------------
# Validation of files and directories (`tracker schedules validate`)


@dataclass
class FileReport:
    path: str
    protocol: Protocol | None
    problems: list[str] = field(default_factory=list)
    kind: str = "protocol"  # protocol | vocabulary

    @property
    def ok(self) -> bool:
        return not self.problems


def default_validation_paths(config_dir: str | None = None) -> list[Path]:
    """The built-in schedules and the clinic directory in effect, if any."""
    paths = [schedules_dir()]
    clinic = clinic_schedules_dir(config_dir)
    if clinic is not None:
        paths.append(clinic)
    return paths


def validate_paths(paths: list[Path]) -> list[FileReport]:
    """Validate protocol files and directories of them; every problem is `file:line: field: message`."""
    vocabulary = load_vocabulary()
    reports: list[FileReport] = []
    for path in paths:
        if path.is_dir():
            files = protocol_files(path)
            if not files:
                reports.append(FileReport(str(path), None, [f"{path}:1: (file): no protocol files (*.yaml) here"]))
            batch = [_validate_file(f, vocabulary) for f in files]
            _check_duplicate_ids(batch)
            reports.extend(batch)
        elif path.exists():
            reports.append(_validate_file(path, vocabulary))
        else:
            reports.append(FileReport(str(path), None, [f"{path}:1: (file): no such file or directory"]))
    return reports


def _validate_file(path: Path, vocabulary: Vocabulary) -> FileReport:
    if path.name == VOCABULARY_FILE:
        return _validate_vocabulary(path)
    result = load_protocol_file(path, vocabulary)
    return FileReport(str(path), result.protocol, result.problems)


def _check_duplicate_ids(batch: list[FileReport]) -> None:
    """Two files of one directory with the same id: the later would silently replace the earlier."""
    first: dict[str, str] = {}
    for report in batch:
        if report.protocol is None:
            continue
        pid = report.protocol.id
        if pid in first:
            report.problems.append(f"{report.path}:1: id: {pid!r} is also the id of {first[pid]}")
        first.setdefault(pid, report.path)


def _validate_vocabulary(path: Path) -> FileReport:
    from tracker.vocabulary import parse_vocabulary

    name = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        return FileReport(name, None, [f"{name}:1: (file): cannot read the vocabulary: {exc}"], kind="vocabulary")
    if not isinstance(data, dict) or not isinstance(data.get("tests"), dict):
        return FileReport(name, None, [f"{name}:1: tests: expected a mapping of test codes"], kind="vocabulary")
    vocabulary = parse_vocabulary(data)
    problems = [
        f"{name}:1: tests.{test.code}.analytes: unknown analyte {code!r}"
        for test in vocabulary.tests.values()
        for code in test.analytes
        if code not in vocabulary
    ]
    return FileReport(name, None, problems, kind="vocabulary")
