"""The treatment algorithm (schedules/_algorithm.yaml): what to suggest after a drug failed. Pure: the
shell reads the file and passes its data to `parse_algorithm`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.errors import ConfigError



@dataclass(frozen=True)
class AlgorithmStep:
    next: tuple[str, ...]
    sources: tuple[str, ...]
    clinic_default: bool = False


@dataclass
class Algorithm:
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # jak_inhibitor -> drug ids
    after_drug: dict[str, AlgorithmStep] = field(default_factory=dict)
    after_class: dict[str, AlgorithmStep] = field(default_factory=dict)

    def step(self, drug: str, drug_class: str | None) -> AlgorithmStep | None:
        return self.after_drug.get(drug) or (self.after_class.get(drug_class) if drug_class else None)

    def suggest(self, drug: str, drug_class: str | None, exclude: set[str]) -> tuple[tuple[str, ...], tuple]:
        """Next options after `drug`, group names expanded, leaving out `exclude` and the drug itself."""
        step = self.step(drug, drug_class)
        if step is None:
            return (), ()
        out: list[str] = []
        for option in step.next:
            for candidate in self.groups.get(option, (option,)):
                if candidate != drug and candidate not in exclude and candidate not in out:
                    out.append(candidate)
        return tuple(out), step.sources


def parse_algorithm(data: dict, origin: str = "_algorithm.yaml") -> Algorithm:
    """Validate the algorithm file's shape; every step cites sources or is marked clinic_default."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping")
    sources = set((data.get("sources") or {}).keys())
    groups = {k: tuple(v) for k, v in (data.get("groups") or {}).items()}

    def steps(section: str) -> dict[str, AlgorithmStep]:
        out = {}
        for key, spec in (data.get(section) or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("next"), list):
                raise ConfigError(f"{origin}: {section}.{key}: expected `next: [drug ids]`")
            cited = tuple(spec.get("sources") or ())
            unknown = [s for s in cited if s not in sources]
            if unknown:
                raise ConfigError(f"{origin}: {section}.{key}.sources: unknown source key {unknown[0]!r}")
            if not cited and not spec.get("clinic_default"):
                raise ConfigError(f"{origin}: {section}.{key}: cite sources or mark clinic_default: true")
            out[key] = AlgorithmStep(tuple(spec["next"]), cited, bool(spec.get("clinic_default")))
        return out

    return Algorithm(groups, steps("after_drug"), steps("after_class"))
