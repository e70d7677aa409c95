"""`tracker schedules validate|show|list` through the CLI, as a clinic editing protocol files would use them."""

from __future__ import annotations

import textwrap

from tracker.errors import ProtocolError

BROKEN = textwrap.dedent(
    """\
    id: broken
    version: two
    name: Broken drug
    class: csdmard
    sources:
      SPS-X:
        citation: A source
    baseline:
      - tests: [cbc, fbcx]
        sources: [SPS-X]
      - tests: [cmp]
    monitoring:
      sources: [SPS-Y]
      tracks:
        - name: bloods
          tests: [cbc]
          sources: [SPS-X]
          phases:
            - every: -2w
              sources: [SPS-X]
    thresholds:
      - {analyte: hb, below: 8, unit: g/dL, action: stop, sources: [SPS-X]}
    """
)

GOOD = textwrap.dedent(
    """\
    id: clinicdrug
    version: 1
    name: Clinic drug
    class: biologic
    sources:
      LOCAL:
        citation: Our clinic's protocol
    checkpoints:
      - week: 16
        target:
          - {measure: easi, improvement_pct: 50}
        sources: [LOCAL]
    """
)


def test_broken_file_reports_every_problem_with_its_line(tracker, tmp_path):
    clinic = tmp_path / "clinic"
    clinic.mkdir()
    (clinic / "broken.yaml").write_text(BROKEN)
    (clinic / "clinicdrug.yaml").write_text(GOOD)

    result = tracker(["schedules", "validate", str(clinic)], ok=False)

    assert result.exit_code == ProtocolError.exit_code
    broken = clinic / "broken.yaml"
    assert result.stderr.splitlines() == [
        f"warning: {clinic / 'clinicdrug.yaml'}:1: atc: missing",  # a missing code is reported, not failing
        f"warning: {clinic / 'clinicdrug.yaml'}:1: snomed: missing",
        f"warning: {clinic / 'clinicdrug.yaml'}:1: rxnorm: missing",
        f"{broken}:2: version: Input should be a valid integer",  # strict: no strings, no booleans
        f"{broken}:9: baseline[0].tests[1]: unknown test code 'fbcx'",
        f"{broken}:11: baseline[1]: every rule names its source keys (or is marked clinic_default: true)",
        f"{broken}:13: monitoring.sources[0]: unknown source key 'SPS-Y' (did you mean SPS-X?)",
        f"{broken}:19: monitoring.tracks[0].phases[0].every: "
        "must be a positive duration like 14d, 2w, 3m or 1y, got '-2w'",
        f"{broken}:22: thresholds[0].unit: 'g/dL' does not match the vocabulary unit 'g/L' for hb (convert the value)",
        "1 of 2 files have problems",
    ]
    # The valid file next to it is still confirmed.
    assert result.stdout.splitlines() == [f"ok {clinic / 'clinicdrug.yaml'} (clinicdrug v1)"]


def test_validate_json_lists_each_file(tracker, tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = tracker(["schedules", "validate", str(tmp_path / "broken.yaml"), "--json"], ok=False)
    assert result.exit_code == ProtocolError.exit_code
    import json

    (report,) = json.loads(result.stdout)
    assert (report["ok"], report["id"], len(report["problems"])) == (False, None, 6)


def test_default_validates_built_ins_and_the_clinic_dir(tracker, tmp_path):
    result = tracker(["schedules", "validate"])
    ok_lines = [line for line in result.stdout.splitlines() if line.startswith("ok ")]
    assert len(ok_lines) == 16  # 14 protocols, the vocabulary, the treatment algorithm checked against them
    assert ok_lines[-2].endswith("vocabulary.yaml (vocabulary)")
    assert ok_lines[-1].endswith("_algorithm.yaml (algorithm)")
    # Only warnings: the standard codes no public source confirmed (tests/test_codes.py lists them).
    assert all(line.startswith("warning: ") and line.endswith(": missing") for line in result.stderr.splitlines())

    clinic = tmp_path / "clinic"
    clinic.mkdir()
    (clinic / "clinicdrug.yaml").write_text(GOOD)
    result = tracker(["schedules", "validate"], env={"TRACKER_SCHEDULES": str(clinic)})
    assert f"ok {clinic / 'clinicdrug.yaml'} (clinicdrug v1)" in result.stdout.splitlines()

    (clinic / "broken.yaml").write_text(BROKEN)
    result = tracker(["schedules", "validate"], ok=False, env={"TRACKER_SCHEDULES": str(clinic)})
    assert result.exit_code == ProtocolError.exit_code
    assert f"{clinic / 'broken.yaml'}:2: version:" in result.stderr


def test_more_mistakes_are_caught(tracker, tmp_path):
    path = tmp_path / "more.yaml"
    path.write_text(textwrap.dedent(
        """\
        id: more
        version: 1
        name: More mistakes
        class: csdmard
        sources:
          S: {citation: A source}
        baseline:
          - tests: [tpmt]
            gate: sometimes
            sources: [S]
        checkpoints:
          - week: 12
            target: [{measure: easi, improvement_pct: 50}]
            sources: [S]
            partial: {recheck_week: 8, sources: [S]}
        thresholds:
          - {analyte: tpmt, equals: [missing], action: refuse, sources: [S]}
          - {analyte: tpmt, below: 3, action: stop, sources: [S]}
        name: Duplicate name
        """
    ))
    result = tracker(["schedules", "validate", str(path)], ok=False)
    assert result.stderr.splitlines() == [
        f"{path}:9: baseline[0].gate: Input should be 'hard' or 'advisory'",
        f"{path}:15: checkpoints[0].partial.recheck_week: recheck week 8 must be after the checkpoint's week 12",
        f"{path}:17: thresholds[0].equals[0]: 'missing' is not a result of tpmt (one of normal, intermediate, low, absent)",
        f"{path}:18: thresholds[1].analyte: tpmt has no numeric results (use `equals`)",
        f"{path}:19: name: duplicate key (only the last one would be used)",
        "1 of 1 files have problems",
    ]


def test_show_renders_a_timeline_with_sources(tracker):
    result = tracker("schedules show methotrexate --weeks 52")
    text = result.stdout
    assert "Methotrexate (methotrexate, csdmard, protocol v4)" in text
    assert "First 52 weeks" in text and "Sources" in text and "Lab action thresholds" in text
    assert "checkpoint" in text and "EASI-50" in text
    assert "CKS-MTX" in text and "https://www.medicinesafety.co.uk" in text

    shown = tracker.json("schedules show MTX --weeks 52")
    assert shown["id"] == "methotrexate"
    (checkpoint,) = [r for r in shown["timeline"] if r["kind"] == "checkpoint"]
    assert (checkpoint["week"], checkpoint["day"]) == (12, 84)
    assert set(r for row in shown["timeline"] for r in row["sources"]) <= set(shown["sources"])


def test_show_finds_a_drug_by_brand_and_alias(tracker):
    assert tracker.json("schedules show Rinvoq")["id"] == "upadacitinib"
    assert tracker.json("schedules show cyclosporine")["id"] == "ciclosporin"
    assert tracker.json("schedules show prednisone --weeks 2")["timeline"][0]["kind"] == "limit"


def test_list_json_has_all_fourteen_protocols(tracker):
    rows = tracker.json("schedules list")
    assert [r["id"] for r in rows] == [
        "abrocitinib", "apremilast", "azathioprine", "baricitinib", "ciclosporin", "dupilumab", "lebrikizumab",
        "methotrexate", "mycophenolate", "nbuvb", "nemolizumab", "prednisolone", "tralokinumab", "upadacitinib",
    ]
    for row in rows:
        assert {"id", "name", "class", "version", "sources"} <= set(row)
        assert row["version"] >= 1 and row["sources"] >= 1
    by_id = {r["id"]: r for r in rows}
    assert by_id["prednisolone"]["name"] == "Systemic corticosteroids (prednisolone)"
    assert {by_id[d]["class"] for d in ("upadacitinib", "abrocitinib", "baricitinib")} == {"jak_inhibitor"}


def test_gate_fields_are_validated_with_their_lines(tracker, tmp_path):
    """Issue 13: spacing needs `times`, `clinic_default` lists real fields, and a test read during treatment
    needs gate values in the vocabulary."""
    clinic = tmp_path / "clinic"
    clinic.mkdir()
    (clinic / "gated.yaml").write_text(textwrap.dedent(
        """\
        id: gated
        version: 1
        name: Gated drug
        class: jak
        sources:
          LOCAL:
            citation: Our clinic's protocol
        baseline:
          - tests: [pregnancy]
            gate: hard
            min_gap: 8d
            sources: [LOCAL]
          - tests: [tb]
            valid_for: 3m
            clinic_default: [valid_fro]
            sources: [LOCAL]
        during_treatment:
          - tests: [cxr]
            sources: [LOCAL]
        """))
    result = tracker(["schedules", "validate", str(clinic)], ok=False)
    assert result.exit_code == ProtocolError.exit_code
    text = result.stderr
    assert ":9: baseline[0]: `min_gap`/`max_gap` space several results: give `times: 2`" in text
    assert ":13: baseline[1]: clinic_default lists 'valid_fro', not a field of this rule" in text
    assert ":18: during_treatment[0].tests[0]: cxr has no `passes` values in the vocabulary" in text
