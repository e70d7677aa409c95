"""Protocol files: one YAML file per drug, validated into typed models.

The format is documented in schedules/README.md. Loading reports every problem at once as
`file:line: field: message`, so a clinic editing a protocol sees all its mistakes in one go.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tracker.core.algorithm import Algorithm, parse_algorithm
from tracker.core.protocol import Protocol, ProtocolLibrary, protocol_hash
from tracker.core.vocabulary import Vocabulary, parse_vocabulary
from tracker.errors import InputError, ProtocolError
from tracker.resources import schedules_dir

VOCABULARY_FILE = "vocabulary.yaml"


@lru_cache(maxsize=4)
def load_vocabulary(path: Path | None = None) -> Vocabulary:
    path = path or schedules_dir() / VOCABULARY_FILE
    with open(path, encoding="utf-8") as fh:
        return parse_vocabulary(yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {})

# --------------------------------------------------------------------------------------------------------
# Loading with line numbers


FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Protocol files are a few kilobytes; a cap keeps a stray large file from being parsed at every command.
MAX_YAML_BYTES = 1_000_000


class FileProblem(Exception):
    """A YAML file tracker will not parse, as one `file:line: (file): why` line. `skippable`: the file
    cannot be read at all (not UTF-8, too large, unreadable), so loading the library skips it with a
    warning instead of failing every command."""

    def __init__(self, line: str, skippable: bool):
        super().__init__(line)
        self.line = line
        self.skippable = skippable


def read_yaml_text(path: Path) -> str:
    """The text of a YAML file: at most MAX_YAML_BYTES, UTF-8, and without anchors or aliases (an alias
    expands a small file into gigabytes, or into a cycle; protocols never need one)."""
    name = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise FileProblem(f"{name}:1: (file): cannot read: {exc.strerror}", skippable=True) from None
    if len(data) > MAX_YAML_BYTES:
        raise FileProblem(f"{name}:1: (file): larger than {MAX_YAML_BYTES} bytes", skippable=True)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise FileProblem(f"{name}:{line}: (file): not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
                          skippable=True) from None
    if "&" in text or "*" in text:  # only then is the event scan worth its time
        try:
            for event in yaml.parse(text, Loader=FAST_LOADER):
                if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                    raise FileProblem(f"{name}:{event.start_mark.line + 1}: (file): YAML anchors and aliases "
                                      f"are not allowed; write the value out", skippable=False)
        except yaml.YAMLError:
            pass  # the loader reports it with its line
    return text


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping key and sequence item."""


def collect_lines(node: yaml.Node, path: tuple, lines: dict[tuple, int], duplicates: list | None = None) -> None:
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
            collect_lines(value_node, path + (key,), lines, duplicates)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[path + (index,)] = item.start_mark.line + 1
            collect_lines(item, path + (index,), lines, duplicates)
            lines[path + (index,)] = item.start_mark.line + 1


def line_for(lines: dict[tuple, int], loc: tuple) -> int:
    loc = tuple("for" if part == "for_" else part for part in loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get((), 1)


def field_name(loc: tuple) -> str:
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
    skipped: bool = False  # the file could not be read at all (FileProblem.skippable)


def load_protocol_file(path: Path, vocabulary: Vocabulary | None = None) -> LoadResult:
    vocabulary = vocabulary or load_vocabulary()
    name = str(path)
    try:
        text = read_yaml_text(path)
    except FileProblem as problem:
        return LoadResult(None, [problem.line], skipped=problem.skippable)
    try:
        # One parse with libyaml when available: the node tree gives line numbers, and the data is
        # constructed from the same tree (pure-Python YAML made loading the library take seconds).
        loader = FAST_LOADER(text)
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
    collect_lines(node, (), lines, duplicates)

    problems: list[str] = [
        f"{name}:{line}: {field_name(loc)}: duplicate key (only the last one would be used)" for loc, line in duplicates
    ]
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _pydantic_loc(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}:{line_for(lines, loc)}: {field_name(loc)}: {message}")
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
                        if isinstance(source, (dict, list)) or source not in source_keys:  # a list is no key
                            near = difflib.get_close_matches(str(source), source_keys, n=1)
                            hint = f" (did you mean {near[0]}?)" if near else ""
                            problems.append(
                                f"{name}:{line_for(lines, loc + (key, index))}: "
                                f"{field_name(loc + (key, index))}: unknown source key {source!r}{hint}"
                            )
                elif key in ("tests", "analyte") and item is not None:
                    codes = item if isinstance(item, list) else [item]
                    for index, code in enumerate(codes):
                        if str(code) not in vocabulary:
                            where = loc + ((key, index) if isinstance(item, list) else (key,))
                            near = difflib.get_close_matches(str(code), vocabulary.tests, n=1)
                            hint = f" (did you mean {near[0]}?)" if near else ""
                            problems.append(
                                f"{name}:{line_for(lines, where)}: {field_name(where)}: "
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
        problems.append(f"{name}:{line_for(lines, loc)}: {field_name(loc)}: {message}")

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
    watched = data.get("during_treatment")
    for index, rule in enumerate(watched if isinstance(watched, list) else []):
        tests = rule.get("tests") if isinstance(rule, dict) else None
        for i, code in enumerate(tests if isinstance(tests, list) else []):
            test = vocabulary.tests.get(str(code))
            if test is not None and not test.passes:
                report(("during_treatment", index, "tests", i),
                       f"{test.code} has no `passes` values in the vocabulary, so no result of it can alert")
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
        seen: dict[str, Path] = {}  # id -> file, within one directory (a clinic file may replace a built-in)
        for path in protocol_files(directory):
            result = load_protocol_file(path, vocabulary)
            if result.skipped:
                # A file that cannot even be read (a stray export in another encoding) must not stop
                # commands that have nothing to do with it; `schedules validate` reports it as an error.
                for line in result.problems:
                    print(f"warning: skipped {line}", file=sys.stderr)
                continue
            problems.extend(result.problems)
            if result.protocol is not None:
                if result.protocol.id in seen:
                    # Which one wins would depend on file names (review row dir-dup-ids-load).
                    problems.append(f"{path}: id: {result.protocol.id!r}: also the id of {seen[result.protocol.id]}")
                seen[result.protocol.id] = path
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


_ALGORITHMS: dict[str, Algorithm] = {}


def load_algorithm(clinic_dir: str | None = None) -> Algorithm:
    """schedules/_algorithm.yaml, or the clinic's own copy in its schedules directory."""
    clinic = clinic_schedules_dir(clinic_dir)
    path = Path(schedules_dir()) / "_algorithm.yaml"
    if clinic is not None and (clinic / "_algorithm.yaml").is_file():
        path = clinic / "_algorithm.yaml"
    key = str(path)
    if key not in _ALGORITHMS:
        try:
            data = yaml.load(read_yaml_text(path), Loader=FAST_LOADER) or {}
        except FileProblem as problem:
            raise ProtocolError([problem.line]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ProtocolError([f"{key}:{mark.line + 1 if mark else 1}: (file): not valid YAML: "
                                 f"{getattr(exc, 'problem', None) or exc}"]) from None
        _ALGORITHMS[key] = parse_algorithm(data, key)
    return _ALGORITHMS[key]
