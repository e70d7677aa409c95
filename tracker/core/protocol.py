"""Protocol models: one drug's baseline tests, monitoring phases, checkpoints, limits and thresholds.

Pure (tracker.core): the models and their semantics only. Reading the YAML files, line numbers and the
`schedules validate` reports live in the shell (tracker/protocol_files.py); schedules/README.md documents
the format. (Over 400 lines on purpose: the whole schema of a protocol file in one place, as its README
describes it; each model is small.)
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from tracker.core.durations import Duration
from tracker.core.inputs import INTERVAL_MAX_DAYS, INTERVAL_MIN_DAYS
from tracker.core.terms import MEASURE_NAMES
from tracker.core.vocabulary import Vocabulary
from tracker.errors import InputError, NotFoundError


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
    if duration.count > 10_000 or duration.approx_days() > MAX_DURATION_DAYS:
        raise ValueError(f"must be at most 20 years, got {value!r}")
    return duration


def _interval(value: Any) -> Duration:
    """A repeating phase's `every`: 1 week to 2 years, as for a per-patient interval (tracker.core.inputs)."""
    duration = _duration(value)
    if not INTERVAL_MIN_DAYS <= duration.approx_days() <= INTERVAL_MAX_DAYS:
        raise ValueError(f"must be between 1 week and 2 years, got {value!r}")
    return duration


MAX_DURATION_DAYS = 20 * 366  # offsets, phase lengths, validity windows: dates must stay computable
Dur = Annotated[Duration, BeforeValidator(_duration)]
Every = Annotated[Duration, BeforeValidator(_interval)]
Measure = Literal["easi", "iga", "itch_nrs", "dlqi", "poem"]
# The drug classes the treatment algorithm and the README know; another is a typo or a new class to add here.
DrugClass = Literal["biologic", "corticosteroid", "csdmard", "jak_inhibitor", "pde4_inhibitor", "phototherapy"]
MEASURE_RANGES: dict[str, tuple[int, int]] = {
    "easi": (0, 72),
    "iga": (0, 4),
    "itch_nrs": (0, 10),
    "dlqi": (0, 30),
    "poem": (0, 28),
}


class Rule(BaseModel):
    """Fields every rule carries: its sources, and whether it is a clinic default."""

    # allow_inf_nan: a threshold of .inf fires on every result, .nan on none.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    sources: list[str] = Field(default_factory=list)
    # true: the whole rule is a clinic default; a list names the fields that are (the rest is sourced),
    # e.g. `clinic_default: [valid_for]` on a sourced baseline test whose validity window no source gives.
    clinic_default: bool | list[str] = False
    note: str | None = None

    @model_validator(mode="after")
    def _cited(self):
        if not self.sources and not self.clinic_default:
            raise ValueError("every rule names its source keys (or is marked clinic_default: true)")
        if isinstance(self.clinic_default, list):
            unknown = [f for f in self.clinic_default if f not in type(self).model_fields
                       or f in ("sources", "clinic_default", "note")]
            if unknown:
                raise ValueError(f"clinic_default lists {', '.join(map(repr, unknown))}, not a field of this rule")
        return self

    def is_clinic_default(self, field: str) -> bool:
        """Whether `field`'s value is a clinic default (the whole rule, or that field, is marked so)."""
        return self.clinic_default is True or (isinstance(self.clinic_default, list) and field in self.clinic_default)


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
    # How old a result may be at the start and still count; absent = any result on record.
    valid_for: Dur | None = None
    # How many separate results are needed before starting (ciclosporin: BP and creatinine at least twice).
    times: int = Field(default=1, ge=1, le=5)
    # Spacing of the `times` results (mycophenolate: two pregnancy tests 8-10 days apart) and how close to
    # the start the last one must be.
    min_gap: Dur | None = None
    max_gap: Dur | None = None
    last_within: Dur | None = None

    @model_validator(mode="after")
    def _spacing(self):
        if (self.min_gap or self.max_gap) and self.times < 2:
            raise ValueError("`min_gap`/`max_gap` space several results: give `times: 2` or more")
        if self.min_gap and self.max_gap and self.max_gap.approx_days() < self.min_gap.approx_days():
            raise ValueError("`max_gap` is shorter than `min_gap`")
        return self


class WatchedTest(Rule):
    """A screen read during treatment although no baseline item asks for it (abrocitinib: contraception
    during treatment, so a positive pregnancy test needs a decision). Its result is read by the
    vocabulary's gate values (`passes`); one that does not pass raises a critical alert. Baseline screens
    with gate values are read during treatment without being listed here."""

    tests: list[str] = Field(min_length=1)
    when: Literal["always", "childbearing_potential", "female"] = "always"


class Phase(Rule):
    tests: list[str] | None = None  # defaults to the track's tests
    every: Every | None = None
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
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
        name = MEASURE_NAMES
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
    # Courses of the same drug with at most this many days off between them count as one continuous course
    # (a steroid stopped on day 6 and restarted the next day is on day 7, not day 1). None: each course alone.
    join_courses_within: Dur | None = None
    # How severe "past its maximum" is: a typical course length chosen by the clinic is a warning.
    severity: Literal["warning", "critical"] = "critical"


class LabBaseline(Rule):
    """How a course's baseline for change-from-baseline rules (`rise_pct`, `fall_pct`) is taken: the mean
    of the latest `mean_of` results on or before the start (ciclosporin: a reliable mean of at least two
    pre-treatment readings). Without it, the latest single result. `tests`: the tests it applies to
    (default: every test a change rule reads)."""

    mean_of: int = Field(ge=2, le=10)
    tests: list[str] | None = None

    def applies_to(self, test: str) -> bool:
        return self.tests is None or test in self.tests


class Clearance(Rule):
    """How the protocol's creatinine clearance (`crcl`) rules read a chart with no recorded clearance (labs
    report creatinine and eGFR, rarely CrCl): the estimates to use, in order of preference.
    `cockcroft_gault` from the latest creatinine, age, weight and sex; `egfr` the latest eGFR standing in.
    core/renal.py: clearance_day."""

    estimate: list[Literal["cockcroft_gault", "egfr"]] = Field(min_length=1)


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
    # Renal decline (core/renal.py: rule_applies). `after_repeat_below`: the rule acts on a repeat only,
    # when this result and the one before it are both below the value (BSR: "eGFR < 60, repeat in 1 week;
    # if still > 30 % from baseline, withhold"). `without_baseline`: the rule acts only when the course has
    # no pre-start value of the test (an absolute limit standing in for a change rule that cannot judge).
    after_repeat_below: float | None = None
    without_baseline: bool = False

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
        if self.without_baseline and (self.rise_pct is not None or self.fall_pct is not None):
            raise ValueError("`without_baseline` rules are absolute (a change rule needs the baseline they lack)")
        return self

    @property
    def rule_id(self) -> str:
        """The rule's identity in alert keys, from its semantic fields only (test, comparison, limit, and
        whether it needs confirming): rewording its message, citing other sources or adding `unit:` keeps
        every live alert of the rule. migrations/versions/0002 derives the same id from older keys."""
        rule_id = threshold_rule_id(self.analyte, self.below, self.above, self.above_uln, self.rise_pct,
                                    self.fall_pct, self.equals, self.confirmed)
        # Appended only when set, so the ids (and live alert keys) of every older rule are unchanged.
        if self.after_repeat_below is not None:
            rule_id += f"!repeat<{self.after_repeat_below:g}"
        if self.without_baseline:
            rule_id += "!nobaseline"
        return rule_id

    def describe(self) -> str:
        text = self._condition()
        if self.after_repeat_below is not None:
            text += f" on a repeat still < {self.after_repeat_below:g}"
        if self.without_baseline:
            text += " (no pre-start value)"
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


def threshold_rule_id(analyte: str, below=None, above=None, above_uln=None, rise_pct=None, fall_pct=None,
                      equals=None, confirmed: bool = False) -> str:
    """`alt>3xULN`, `neutrophils<1.5`, `creatinine+30%`, `egfr-25%`, `tpmt=absent|low`, `...!confirmed`."""
    if below is not None:
        text = f"{analyte}<{below:g}"
    elif above is not None:
        text = f"{analyte}>{above:g}"
    elif above_uln is not None:
        text = f"{analyte}>{above_uln:g}xULN"
    elif rise_pct is not None:
        text = f"{analyte}+{rise_pct:g}%"
    elif fall_pct is not None:
        text = f"{analyte}-{fall_pct:g}%"
    else:
        text = f"{analyte}={'|'.join(sorted(equals or []))}"
    return f"{text}!confirmed" if confirmed else text


class Protocol(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    version: int = Field(ge=1, le=100_000, strict=True)  # strict: `version: true` is not version 1
    name: str
    brands: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    drug_class: DrugClass = Field(alias="class")
    sources: dict[str, Source] = Field(min_length=1)
    baseline: list[BaselineTest] = Field(default_factory=list)
    monitoring: Monitoring | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    limits: Limits | None = None
    lab_baseline: LabBaseline | None = None
    clearance: Clearance | None = None
    thresholds: list[Threshold] = Field(default_factory=list)
    during_treatment: list[WatchedTest] = Field(default_factory=list)
    notes: str | None = None
    # Standard codes of the drug (tracker/core/codes.py), each from the sources named in `code_sources`.
    # None: not confirmed by a public source (reported as missing by `schedules validate`, never guessed).
    atc: str | None = None
    snomed: str | None = None
    rxnorm: str | None = None
    code_sources: list[str] = Field(default_factory=list)
    # Why the entry has no ATC code where none can exist (phototherapy is a procedure, not a medicinal
    # product): stated instead of the code, so `schedules validate` does not report it as missing.
    no_atc: str | None = None

    @model_validator(mode="after")
    def _codes_well_formed(self):
        from tracker.core.codes import atc_problem, rxnorm_problem, snomed_problem

        for field, check in (("atc", atc_problem), ("snomed", snomed_problem), ("rxnorm", rxnorm_problem)):
            value = getattr(self, field)
            if value is not None and (why := check(value)):
                raise ValueError(f"{field}: {why}")
        if (self.atc or self.snomed or self.rxnorm) and not self.code_sources:
            raise ValueError("code_sources: a drug code needs the source it was taken from")
        if self.no_atc is not None and (self.atc or not self.no_atc.strip()):
            raise ValueError("no_atc: the reason there is no ATC code (a non-empty text), never beside `atc`")
        unknown = [k for k in self.code_sources if k not in self.sources]
        if unknown:
            raise ValueError(f"code_sources: {', '.join(map(repr, unknown))} not defined in sources")
        return self

    def missing_codes(self) -> list[str]:
        """Codes the drug lacks (warnings, never errors: a code no public source confirmed is left out): ATC,
        SNOMED CT and RxNorm. An entry that is no medicinal product (`no_atc`: phototherapy) has none of the
        three, so none is reported missing."""
        if self.no_atc:
            return []
        return [f"{field}: missing" for field in ("atc", "snomed", "rxnorm") if not getattr(self, field)]

    # Filled in by the loader, not part of the file.
    origin: str = Field(default="", exclude=True)
    content_hash: str = Field(default="", exclude=True)

    @property
    def names(self) -> list[str]:
        return [self.id, self.name.lower(), *(a.lower() for a in self.aliases), *(b.lower() for b in self.brands)]

    def baseline_readings(self, test: str) -> int:
        """How many pre-start results a course's baseline for `test` averages (1: the latest alone)."""
        rule = self.lab_baseline
        return rule.mean_of if rule is not None and rule.applies_to(test) else 1

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
        if self.lab_baseline:
            yield self.lab_baseline
        if self.clearance:
            yield self.clearance
        yield from self.thresholds
        yield from self.during_treatment


# A drug's codes name it; they change no plan, so adding or correcting one leaves courses on the same content.
CODE_FIELDS = {"atc", "snomed", "rxnorm", "code_sources", "no_atc"}


def protocol_hash(protocol: Protocol) -> str:
    data = protocol.model_dump(by_alias=True, mode="json", exclude=CODE_FIELDS)
    cited = set(protocol.rule_sources())
    for key in protocol.code_sources:  # a source cited for the codes alone goes with them
        if key not in cited:
            data["sources"].pop(key, None)
    canonical = json.dumps(data, sort_keys=True, default=str)
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
