"""`emit_json` writes a list one element per line; rows sharing one `codes` object (services/coded_rows.py)
have it encoded once and spliced in. The text must be exactly what encoding each row whole gives."""

from __future__ import annotations

import datetime as dt
import json

from tracker.cli.render import emit_json


def whole(rows: list) -> str:
    encode = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": ")).encode
    return "[\n" + ",\n".join("  " + encode(row) for row in rows) + "\n]\n"


def test_rows_with_shared_codes_are_written_as_if_encoded_whole(capsys):
    shared = {"tests": [{"test": "alt", "loinc": "1742-6", "ucum": "U/L", "panel": None}], "drugs": []}
    other = {"tests": [], "drugs": [{"drug": "methotrexate", "atc": "L04AX03", "rxnorm": None, "snomed": None}]}
    rows = [
        {"id": 1, "mrn": "M1", "codes": shared, "due": dt.date(2026, 3, 2), "adjusted": False, "zeta": [1, 2]},
        {"id": 2, "mrn": "M\u00e9\"2\n", "codes": shared, "adjusted": True},
        {"codes": other},                        # nothing before or after it
        {"adjusted": None, "codes": other},      # only keys before it
        {"codes": shared, "title": "x"},         # only keys after it
        {"codes": None, "id": 3},                # no codes object
        {"codes": {}, "id": 4},
        {"id": 5},
        [1, "two"],                              # not a row at all
    ]
    emit_json(rows)
    assert capsys.readouterr().out == whole(rows)


def test_an_empty_list_and_an_object_are_written_as_before(capsys):
    emit_json([])
    emit_json({"b": 1, "a": [1]})
    assert capsys.readouterr().out == "[]\n" + json.dumps({"b": 1, "a": [1]}, indent=2, sort_keys=True) + "\n"
