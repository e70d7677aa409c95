"""Synthetic clinics at scale, for benchmarks and load tests. Every name, MRN and value is invented.

`synthesise_clinic` fills an empty database with N patients in bulk: rows are built in memory a chunk of
patients at a time and written with SQLAlchemy Core `insert()` (executemany), with ids computed here
rather than read back, so 100,000 patients take well under a minute on SQLite. Plans come from the pure
planner (`plan_course`), stored with the same field conventions as `plan_sync.sync_course`, so every
normal command works on the result. Deterministic for a seed and a `today`: one `random.Random(seed)`
drives everything, including item uids and timestamps (derived from the synthetic dates).

The package, by job:
  params  the synthetic practice's numbers (drug mix, analytes, ranges, rates) and the row layout
  clinic  the seeded row builder: what a clinic holds, no database
  load    bulk writing to SQLite or PostgreSQL, and the summary of a run
"""

from tracker.services.synth.load import SynthSummary, bulk_load_journal, synthesise_clinic

__all__ = ["SynthSummary", "bulk_load_journal", "synthesise_clinic"]
