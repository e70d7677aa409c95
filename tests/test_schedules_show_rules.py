"""Issue 14 item 8: `tracker schedules show DRUG` shows the whole rule set, each line with its sources or
"clinic default" (tracker/services/schedule_view.py protocol_rules), as text and in --json."""

from __future__ import annotations


def rules(tracker, drug):
    return tracker.json(f"schedules show {drug}")["rules"]


def find(rows, section, *words):
    found = [r for r in rows if r["section"] == section and all(w in r["rule"] for w in words)]
    assert found, (section, words, [r["rule"] for r in rows if r["section"] == section])
    return found[0]


def test_every_rule_of_a_protocol_is_listed_with_its_sources(tracker):
    mtx = rules(tracker, "methotrexate")
    # at-risk tests and patient-group qualifiers
    tb = find(mtx, "baseline", "tb before the start", "only for patients at risk: consider")
    assert tb["sources"] == ["SPS-MTX"] and tb["note"].startswith("Consider if TB is suspected")
    preg = find(mtx, "baseline", "pregnancy", "hard gate", "only for women of childbearing potential")
    # validity windows and gate pass values, each marked when the clinic chose them
    assert "valid for 14 days (clinic default)" in preg["rule"] and preg["clinic_default"] == ["valid_for"]
    assert "pregnancy passes on negative (clinic default)" in preg["rule"]
    assert "valid for 1 year" in find(mtx, "baseline", "cxr")["rule"]
    assert "(clinic default)" not in find(mtx, "baseline", "cxr")["rule"]
    # monitoring phases, checkpoint with if_not_met
    assert find(mtx, "monitoring", "phase 1", "every 2 weeks until the dose is stable for 6 weeks")["sources"] == ["CKS-MTX"]
    checkpoint = find(mtx, "checkpoint", "week 12", "EASI-50", "if not met: review")
    assert checkpoint["clinic_default"] is True and "subcutaneous" in checkpoint["note"]
    # every threshold with its action, severity and message
    floor = find(mtx, "threshold", "egfr < 30")
    assert floor["action"] == "withhold and discuss" and floor["severity"] == "critical"
    assert floor["clinic_default"] is True and floor["sources"] == [] and "floor" in floor["message"]
    repeat = find(mtx, "threshold", "egfr < 60 mL/min/1.73m2 ->")
    assert repeat["action"] == "repeat in 1 week" and repeat["sources"] == ["SPS-MMF", "DG-DMARD"]
    still = find(mtx, "threshold", "on a repeat still < 60", "no pre-start value")
    assert "clinic default: without baseline, action" in still["condition"]


def test_spacing_partial_rechecks_limits_lab_baseline_during_treatment_and_clearance(tracker):
    mmf = find(rules(tracker, "mycophenolate"), "baseline", "pregnancy")["rule"]
    assert "2 results" in mmf and "at least 8 days apart" in mmf and "at most 10 days apart" in mmf
    assert "the last within 3 days of the start (clinic default)" in mmf
    partial = find(rules(tracker, "lebrikizumab"), "checkpoint", "partial response", "re-check at week 24")
    assert partial["sources"] == ["EBGLYSS-EU"]
    assert "if not met: stop" in find(rules(tracker, "lebrikizumab"), "checkpoint", "week 16:")["rule"]
    csa = rules(tracker, "ciclosporin")
    assert find(csa, "lab baseline", "mean of the latest 2 pre-start results")["sources"] == ["CSA-SmPC", "BAD-CSA-2018"]
    assert find(csa, "limits", "maximum 8 weeks", "past it: critical")["sources"] == ["RVI-CSA"]
    steroid = find(rules(tracker, "prednisolone"), "limits", "courses at most 3 days apart count as one")
    assert steroid["clinic_default"] is True
    abro = find(rules(tracker, "abrocitinib"), "during treatment", "pregnancy read during treatment")
    assert abro["sources"] == ["CIBINQO-MIMS-MY"]
    clearance = find(rules(tracker, "baricitinib"), "clearance", "Cockcroft-Gault", "eGFR standing in (clinic default)")
    assert clearance["sources"] == ["CG-TABERS", "CG-MEDALG"]


def test_text_output_has_the_rule_set_and_thresholds_with_messages(tracker):
    text = tracker("schedules show mycophenolate", env={"COLUMNS": "250"}).stdout
    assert "Rule set" in text and "Lab action thresholds" in text
    assert "apart" in text and "MSU" in text  # cells wrap: single words
    assert "clinic default" in text
