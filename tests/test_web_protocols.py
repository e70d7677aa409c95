"""Issue 17: the Protocols pages: the library's protocols, and one protocol's whole rule set, thresholds,
timeline and sources as `tracker schedules show` lists them (services/schedule_view.py), clinic defaults
marked "clinic default"."""

from __future__ import annotations

import html
import re

import pytest

from tests.test_web import make_client, sign_in
from tests.web_clinic import copy_of, demo_clinic  # noqa: F401 (demo_clinic: a fixture, found by name)
from tracker.protocol_files import library
from tracker.services.schedule_view import protocol_rules, protocol_timeline

pytest.importorskip("starlette.testclient")


@pytest.fixture
def client(request, tmp_path):
    client = make_client(copy_of(request.getfixturevalue("demo_clinic"), tmp_path))
    sign_in(client)
    return client


def test_protocol_list_links_every_protocol(client):
    page = client.get("/protocols")
    assert page.status_code == 200 and 'href="/protocols"' in page.text  # in the nav
    linked = set(re.findall(r'href="/protocols/([^"]+)"', page.text))
    assert linked == set(library(None).protocols)


def test_a_protocol_page_shows_every_rule_with_its_sources(client):
    lib = library(None)
    marked = 0
    for drug, protocol in lib.protocols.items():
        page = client.get(f"/protocols/{drug}")
        assert page.status_code == 200, drug
        text = html.unescape(page.text)
        for rule in protocol_rules(protocol, lib.vocabulary):
            shown = rule["condition"] if rule["section"] == "threshold" else rule["rule"]
            assert shown in text, (drug, shown)
            for key in rule["sources"]:
                assert key in text
        assert f"First 52 weeks ({len(protocol_timeline(protocol, 52))} items)" in text
        for key, source in protocol.sources.items():
            assert source.citation in text
        marked += text.count("clinic default")
    assert marked > 0  # the built-in protocols have clinic defaults, and they are marked
    mtx = html.unescape(client.get("/protocols/methotrexate").text)
    assert "week 12: target EASI-50" in mtx and '<span class="clinic-default">clinic default</span>' in mtx
    assert client.get("/protocols/aspirin").status_code == 404


def test_protocol_pages_need_a_signed_in_user(request, tmp_path):
    anonymous = make_client(copy_of(request.getfixturevalue("demo_clinic"), tmp_path))
    for path in ("/protocols", "/protocols/methotrexate"):
        assert anonymous.get(path, follow_redirects=False).headers["location"] == "/login"
