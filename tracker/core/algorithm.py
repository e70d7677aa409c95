"""The treatment algorithm (schedules/_algorithm.yaml): what to suggest after a drug failed, what to leave
out after an adverse-event stop that is a class effect, and which restrictions a suggestion carries. Pure:
the shell reads the file and passes its data to `parse_algorithm`; `schedules validate` cross-checks it
against the protocol library with `algorithm_problems`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from tracker.core.terms import CLINIC_DEFAULT
from tracker.errors import ConfigError



@dataclass(frozen=True)
class AlgorithmStep:
    next: tuple[str, ...]
    sources: tuple[str, ...]
    clinic_default: bool = False


@dataclass(frozen=True)
class ClassEffect:
    """An adverse-event stop of any drug of a group leaves the whole group out of the suggestions."""

    note: str
    sources: tuple[str, ...] = ()
    clinic_default: bool = False


@dataclass(frozen=True)
class Restriction:
    """Words a suggestion of a group's drugs carries for patients aged `min_age` or over."""

    min_age: int
    text: str
    sources: tuple[str, ...] = ()
    clinic_default: bool = False


@dataclass(frozen=True)
class Advice:
    """Next options after a failure, the sources of the step, and what the clinician should read with them."""

    options: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def _cited(sources: tuple[str, ...], clinic_default: bool) -> str:
    parts = [*sources, *([CLINIC_DEFAULT] if clinic_default else [])]
    return f" [{', '.join(parts)}]" if parts else ""


@dataclass
class Algorithm:
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # jak_inhibitor -> drug ids
    after_drug: dict[str, AlgorithmStep] = field(default_factory=dict)
    after_class: dict[str, AlgorithmStep] = field(default_factory=dict)
    class_effects: dict[str, ClassEffect] = field(default_factory=dict)  # group -> effect
    restrictions: dict[str, Restriction] = field(default_factory=dict)  # group -> restriction

    def step(self, drug: str, drug_class: str | None) -> AlgorithmStep | None:
        return self.after_drug.get(drug) or (self.after_class.get(drug_class) if drug_class else None)

    def suggest(self, drug: str, drug_class: str | None, exclude: set[str]) -> tuple[tuple[str, ...], tuple]:
        """Next options after `drug`, group names expanded, leaving out `exclude` and the drug itself."""
        advice = self.advise(drug, drug_class, exclude)
        return advice.options, advice.sources

    def advise(self, drug: str, drug_class: str | None, exclude, *, adverse_event_drugs=frozenset(),
               age: int | None = None) -> Advice:
        """`suggest`, then: every drug of a class-effect group left out once one of them was stopped for an
        adverse event (saying why), and the restriction of a group in words when the patient's age reaches
        it."""
        step = self.step(drug, drug_class)
        if step is None:
            return Advice()
        out: list[str] = []
        for option in step.next:
            for candidate in self.groups.get(option, (option,)):
                if candidate != drug and candidate not in exclude and candidate not in out:
                    out.append(candidate)
        notes: list[str] = []
        for group, effect in self.class_effects.items():
            members = self.groups.get(group, ())
            stopped = sorted(d for d in adverse_event_drugs if d in members)
            left_out = [d for d in out if d in members]
            if stopped and left_out:
                out = [d for d in out if d not in members]
                notes.append(f"left out: {', '.join(left_out)} ({', '.join(stopped)} stopped for an adverse "
                             f"event; {effect.note}{_cited(effect.sources, effect.clinic_default)})")
        for group, restriction in self.restrictions.items():
            named = [d for d in out if d in self.groups.get(group, ())]
            if named and age is not None and age >= restriction.min_age:
                notes.append(f"{', '.join(named)} for a patient aged {age}: {restriction.text}"
                             f"{_cited(restriction.sources, restriction.clinic_default)}")
        return Advice(tuple(out), step.sources, tuple(notes))


def parse_algorithm(data: dict, origin: str = "_algorithm.yaml") -> Algorithm:
    """Validate the algorithm file's shape; every step cites sources or is marked clinic_default."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping")
    sources = set((data.get("sources") or {}).keys())
    groups = {k: tuple(v) for k, v in (data.get("groups") or {}).items()}

    def cited(section: str, key: str, spec: dict) -> tuple[str, ...]:
        keys = tuple(spec.get("sources") or ())
        unknown = [s for s in keys if s not in sources]
        if unknown:
            raise ConfigError(f"{origin}: {section}.{key}.sources: unknown source key {unknown[0]!r}")
        if not keys and not spec.get("clinic_default"):
            raise ConfigError(f"{origin}: {section}.{key}: cite sources or mark clinic_default: true")
        return keys

    def steps(section: str) -> dict[str, AlgorithmStep]:
        out = {}
        for key, spec in (data.get(section) or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("next"), list):
                raise ConfigError(f"{origin}: {section}.{key}: expected `next: [drug ids]`")
            out[key] = AlgorithmStep(tuple(spec["next"]), cited(section, key, spec), bool(spec.get("clinic_default")))
        return out

    effects = {}
    for key, spec in (data.get("class_effects") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("note"), str):
            raise ConfigError(f"{origin}: class_effects.{key}: expected `note: why the class is left out`")
        effects[key] = ClassEffect(spec["note"].strip(), cited("class_effects", key, spec),
                                   bool(spec.get("clinic_default")))
    restrictions = {}
    for key, spec in (data.get("restrictions") or {}).items():
        if (not isinstance(spec, dict) or not isinstance(spec.get("text"), str)
                or not isinstance(spec.get("min_age"), int) or isinstance(spec.get("min_age"), bool)):
            raise ConfigError(f"{origin}: restrictions.{key}: expected `min_age: <years>` and `text: <words>`")
        restrictions[key] = Restriction(spec["min_age"], spec["text"].strip(), cited("restrictions", key, spec),
                                        bool(spec.get("clinic_default")))
    return Algorithm(groups, steps("after_drug"), steps("after_class"), effects, restrictions)


def algorithm_problems(algorithm: Algorithm, drugs: set[str], classes: set[str]) -> list[tuple[tuple, str]]:
    """What the algorithm names that the protocol library does not have, as (YAML path, message): a typo
    in `after_class` would otherwise never match, silently. Every class needs an `after_class` entry."""
    problems: list[tuple[tuple, str]] = []

    def unknown(loc: tuple, what: str, name: str, known) -> None:
        near = ([k for k in sorted(known) if k.startswith(name) or name.startswith(k)]
                or difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5))
        hint = f"; did you mean {near[0]!r}?" if near else f" (known: {', '.join(sorted(known))})"
        problems.append((loc, f"unknown {what} {name!r}{hint}"))

    for group, members in algorithm.groups.items():
        for index, member in enumerate(members):
            if member not in drugs:
                unknown(("groups", group, index), "drug id", member, drugs)
    for section, steps in (("after_drug", algorithm.after_drug), ("after_class", algorithm.after_class)):
        for key, step in steps.items():
            if section == "after_drug" and key not in drugs:
                unknown((section, key), "drug id", key, drugs)
            if section == "after_class" and key not in classes:
                unknown((section, key), "class", key, classes)
            for index, name in enumerate(step.next):
                if name not in drugs and name not in algorithm.groups:
                    unknown((section, key, "next", index), "drug id or group", name, drugs | set(algorithm.groups))
    for section, entries in (("class_effects", algorithm.class_effects), ("restrictions", algorithm.restrictions)):
        for key in entries:
            if key not in algorithm.groups:
                unknown((section, key), "group", key, set(algorithm.groups))
    for missing in sorted(classes - set(algorithm.after_class)):
        problems.append((("after_class",), f"no entry for class {missing!r} (every class needs one)"))
    return problems
