"""Issue 17 item 4: `tracker serve --web-port` serves the web view beside the feeds; TLS by --cert/--key."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from tests.web_clinic import tracker_serve


@pytest.mark.parametrize("args, message", [
    ("serve --web-port 0 --cert {cert}", "give --cert and --key together"),
    ("serve --behind-https", "give --web-port"),
])
def test_web_options_are_checked_before_anything_starts(tracker, tmp_path, args, message):
    (tmp_path / "cert.pem").write_text("x")
    result = tracker(args.format(cert=tmp_path / "cert.pem"), ok=False)
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_feeds_and_web_view_are_served_side_by_side(tracker, tmp_path):
    tracker("db init")
    with tracker_serve(tracker.db, tmp_path) as (feeds, web):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(feeds + "/feeds/" + "a" * 43 + ".ics", timeout=10)
        assert missing.value.code == 404  # the feed server, as before
        with urllib.request.urlopen(web + "/login", timeout=10) as page:
            assert page.status == 200 and b"Sign in" in page.read()
            assert "secure" not in page.headers["set-cookie"].lower()
    assert (tmp_path / "web-secret").exists() or "://" in tracker.db  # the key beside a SQLite database


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a test certificate")
def test_tls_by_cert_and_key_marks_the_cookie_secure(tracker, tmp_path):
    tracker("db init")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with tracker_serve(tracker.db, tmp_path, "--cert", str(cert), "--key", str(key)) as (_feeds, web):
        assert web.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False  # the certificate names localhost; we connect to 127.0.0.1
        host, port = web.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
        conn.request("GET", "/login")
        response = conn.getresponse()
        assert response.status == 200
        cookie = response.getheader("set-cookie").lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        assert response.getheader("strict-transport-security")
        conn.close()


def test_a_client_cannot_escape_the_address_limit_by_naming_its_own_address(tracker, tmp_path):
    # Without a proxy in front (no --behind-https) X-Forwarded-For is any client's say-so: ignored, so 20
    # failures from one address are refused however the header varies (before: uvicorn believed it).
    import re

    import httpx

    tracker("db init")
    with tracker_serve(tracker.db, tmp_path) as (_feeds, web):
        with httpx.Client(base_url=web, timeout=30) as client:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
            statuses = [client.post("/login", data={"csrf_token": token, "name": f"guess{i}", "password": "x"},
                                    headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                        for i in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429
