"""Merging lab draws of one patient's concurrent courses. Pure: plain data in, groups out.

A patient on two drugs (methotrexate with dupilumab, ciclosporin bridging to a biologic) should not be
bled twice in a week for the same tests. The rule:

- Only open `lab` draws take part (planned, or already absorbed into another draw). Done and cancelled
  draws, baselines, checkpoints and limits never merge.
- Two draws merge when they belong to different courses of the same patient, share at least one test
  code (e.g. both include `cbc`), and the later is due at most `window` days after the earlier
  (`[calendar] merge_window_days` in the config file; clinic default 3 days, a local choice: the clinical
  reference gives no number).
- The merged draw is the earlier one (the "host"): it keeps its date and uid, and asks for the union of
  the tests; the later ones are "absorbed" (kept, status cancelled, pointing at the host), so worklists
  and calendars show the draw once. A group holds at most one draw per course, and spans at most
  `window` days from the host, so it cannot creep.
- Grouping is recomputed from scratch, deterministically (by due date, then course, then item id), after
  every re-plan of any of the patient's courses. So re-planning either course gives the same result, a
  draw that moves or disappears (stop, cancel, dose change) un-merges the others, and an absorbed draw
  whose host goes away reappears under its own uid.
- A result that completes the host completes the absorbed draws too (each course's monitoring is done).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# clinic_default: the reference gives no merge window; 3 days is a local choice, configurable.
DEFAULT_MERGE_WINDOW_DAYS = 3


@dataclass(frozen=True)
class Draw:
    id: int
    course_id: int
    drug: str
    due: dt.date
    tests: tuple[str, ...]  # the draw's own tests, as its course's plan asked


@dataclass
class Group:
    host: Draw
    members: list[Draw] = field(default_factory=list)  # absorbed draws, in order

    @property
    def tests(self) -> list[str]:
        out = list(self.host.tests)
        for member in self.members:
            out += [t for t in member.tests if t not in out]
        return out

    @property
    def other_drugs(self) -> list[str]:
        return sorted({m.drug for m in self.members} - {self.host.drug})

    @property
    def courses(self) -> set[int]:
        return {self.host.course_id, *(m.course_id for m in self.members)}


def group_draws(draws: list[Draw], window: int) -> list[Group]:
    """Groups of draws to take as one, earliest first; a lone draw is a group of one."""
    groups: list[Group] = []
    for draw in sorted(draws, key=lambda d: (d.due, d.course_id, d.id)):
        home = None
        if window >= 0:
            for group in groups:
                if (
                    draw.course_id not in group.courses
                    and (draw.due - group.host.due).days <= window
                    and set(draw.tests) & set(group.tests)
                ):
                    home = group
                    break
        if home is None:
            groups.append(Group(draw))
        else:
            home.members.append(draw)
    return groups
