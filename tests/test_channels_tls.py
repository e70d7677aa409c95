"""Issue 7: the e-mail channel over STARTTLS and implicit TLS, against real aiosmtpd servers on loopback
with a throwaway CA made by `openssl` in the test. The client verifies the server's certificate (trusting
`reminders.email.ca_file`); an untrusted or misnamed certificate fails the channel without losing its
reminders or blocking the other channels, and the digest goes out on the next run once trusted."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.nightly_support import free_port, jsonl_rows, small_clinic, write_config

AS_OF = "2026-01-16"


# --- a throwaway PKI ---------------------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def _server_cert(directory: Path, name: str, alt_names: str) -> tuple[Path, Path]:
    """A server key and certificate for `alt_names`, signed by the test CA in `directory`."""
    ext = directory / f"{name}.ext"
    ext.write_text(f"subjectAltName = {alt_names}\nbasicConstraints = critical, CA:FALSE\n"
                   "keyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n"
                   "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n")
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", ext.name, "-out", f"{name}.pem", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """ca.pem (the CA a clinic would hand out), a certificate for 127.0.0.1/localhost, and one for a
    different host name. Real files, verified by the real ssl module; nothing is mocked."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a throwaway test CA)")
    directory = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tracker test CA",
             "-addext", "basicConstraints = critical, CA:TRUE",
             "-addext", "keyUsage = critical, keyCertSign, cRLSign", cwd=directory)
    cert, key = _server_cert(directory, "loopback", "IP:127.0.0.1, DNS:localhost")
    other_cert, other_key = _server_cert(directory, "elsewhere", "DNS:smtp.elsewhere.example")
    return {"ca": directory / "ca.pem", "cert": cert, "key": key, "other_cert": other_cert,
            "other_key": other_key}


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


# --- servers ----------------------------------------------------------------------------------------------


def encrypted(server) -> bool:
    """Whether this SMTP session runs over TLS (implicit, or after STARTTLS), as the server sees it."""
    return server.transport.get_extra_info("ssl_object") is not None


class Inbox:
    """aiosmtpd handler keeping every message it accepts, and whether its session was encrypted."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append({"rcpt": envelope.rcpt_tos, "message": message, "tls": encrypted(server)})
        return "250 OK"


class Logins:
    """aiosmtpd authenticator accepting tracker / s3cret, recording every attempt."""

    def __init__(self):
        self.seen = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        self.seen.append((auth_data.login.decode(), auth_data.password.decode(), encrypted(server)))
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"tracker", b"s3cret"))


class Running:
    def __init__(self, controller: Controller, inbox: Inbox, logins: Logins | None = None):
        self.controller, self.inbox, self.logins, self.port = controller, inbox, logins, controller.port


@pytest.fixture
def smtp_servers():
    """Start servers with `start(kind, cert, key)`; all are stopped after the test."""
    started = []

    def start(kind: str, cert: Path, key: Path) -> Running:
        inbox, port = Inbox(), free_port()
        context = server_context(cert, key)
        if kind == "starttls":
            logins = Logins()
            controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                                    require_starttls=True, authenticator=logins, auth_require_tls=True)
        else:  # implicit TLS from the first byte (SMTPS)
            logins = None
            controller = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=context)
        controller.start()
        started.append(controller)
        return Running(controller, inbox, logins)

    yield start
    for controller in started:
        controller.stop()


def email_config(tmp_path, port: int, security: str, ca_file: Path | None, *, auth: bool) -> None:
    lines = [
        "[reminders]", 'channels = ["stdout", "jsonl", "email"]',
        "[reminders.jsonl]", 'path = "reminders.jsonl"',
        "[reminders.email]", 'host = "127.0.0.1"', f"port = {port}", f'security = "{security}"',
        'from = "tracker@clinic.example"', 'to = ["nurses@clinic.example", "dr.who@clinic.example"]',
        "timeout_s = 5",
    ]
    if ca_file is not None:
        lines.append(f'ca_file = "{ca_file}"')
    if auth:
        lines += ['user = "tracker"', 'password_env = "TEST_SMTP_PASSWORD"']
    write_config(tmp_path / "site.toml", "\n".join(lines) + "\n")


@pytest.fixture(autouse=True)
def _smtp_password(monkeypatch):
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")


def assert_one_digest(inbox: Inbox, count: int) -> None:
    """One digest per recipient (delivery is tracked per recipient), each over TLS."""
    assert len(inbox.messages) == 2
    assert sorted(r for received in inbox.messages for r in received["rcpt"]) == [
        "dr.who@clinic.example", "nurses@clinic.example"]
    for received in inbox.messages:
        assert received["tls"], "the message travelled over an encrypted session"
        assert received["message"]["Subject"] == f"tracker: {count} reminders for {AS_OF}"
        body = received["message"].get_content()
        assert "P1 AB" in body and "Ada" not in body


# --- delivery over STARTTLS and TLS ------------------------------------------------------------------------


def test_starttls_server_with_auth_gets_the_digest_and_refuses_plain_smtp(tracker, tmp_path, pki, smtp_servers):
    small_clinic(tracker)
    server = smtp_servers("starttls", pki["cert"], pki["key"])

    # A plain session is refused by this server (it requires STARTTLS), so the test server is real TLS.
    email_config(tmp_path, server.port, "none", None, auth=True)
    plain = tracker(f"nightly --as-of {AS_OF}", ok=False)
    assert plain.exit_code == 10 and "email: " in plain.stderr
    assert server.inbox.messages == [] and server.logins.seen == []
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows

    email_config(tmp_path, server.port, "starttls", pki["ca"], auth=True)
    tracker(f"nightly --as-of {AS_OF}")
    assert server.logins.seen == [("tracker", "s3cret", True)]  # the password only after STARTTLS
    assert_one_digest(server.inbox, len(rows))
    run = tracker.json("nightly status")[0]
    assert run["status"] == "ok" and run["counts"]["undelivered"]["email"] == 0


def test_implicit_tls_server_gets_the_digest(tracker, tmp_path, pki, smtp_servers):
    small_clinic(tracker)
    server = smtp_servers("tls", pki["cert"], pki["key"])
    email_config(tmp_path, server.port, "tls", pki["ca"], auth=False)
    tracker(f"nightly --as-of {AS_OF}")
    tracker(f"nightly --as-of {AS_OF}")  # nothing new, nothing re-sent
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert_one_digest(server.inbox, len(rows))


# --- certificates the client must refuse -------------------------------------------------------------------


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_untrusted_certificate_fails_the_channel_and_is_delivered_once_trusted(tracker, tmp_path, pki,
                                                                               smtp_servers, security):
    small_clinic(tracker)
    server = smtp_servers(security, pki["cert"], pki["key"])
    auth = security == "starttls"
    email_config(tmp_path, server.port, security, None, auth=auth)  # the system store does not know our CA

    refused = tracker(f"nightly --as-of {AS_OF}", ok=False)
    assert refused.exit_code == 10
    assert "email: RuntimeError: 127.0.0.1:" in refused.stderr
    assert "server certificate rejected" in refused.stderr and "kept for the next run" in refused.stderr
    assert "s3cret" not in refused.stderr
    assert server.inbox.messages == []
    if auth:
        assert server.logins.seen == []  # no password sent to a server we could not verify
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows and refused.stdout.startswith(f"tracker: {len(rows)} reminders")  # others delivered
    run = tracker.json("nightly status")[0]
    assert run["status"] == "failed" and "certificate" in run["failures"]["email"]
    assert run["counts"]["undelivered"] == {"stdout": 0, "jsonl": 0, "email": len(rows)}

    email_config(tmp_path, server.port, security, pki["ca"], auth=auth)  # now trust the clinic's CA
    tracker(f"nightly --as-of {AS_OF}")
    assert_one_digest(server.inbox, len(rows))
    assert jsonl_rows(tmp_path / "reminders.jsonl") == rows  # jsonl was not re-sent
    assert [r["status"] for r in tracker.json("nightly status")] == ["ok", "failed"]
    assert tracker.json("nightly status")[0]["counts"]["undelivered"]["email"] == 0


def test_certificate_for_another_host_name_is_refused(tracker, tmp_path, pki, smtp_servers):
    small_clinic(tracker)
    server = smtp_servers("tls", pki["other_cert"], pki["other_key"])  # signed by the trusted CA
    email_config(tmp_path, server.port, "tls", pki["ca"], auth=False)
    refused = tracker(f"nightly --as-of {AS_OF}", ok=False)
    assert refused.exit_code == 10
    assert "server certificate rejected" in refused.stderr and "127.0.0.1" in refused.stderr
    assert "IP address mismatch" in refused.stderr  # what OpenSSL says for an IP host
    assert server.inbox.messages == []


# --- the ca_file setting ------------------------------------------------------------------------------------


def test_ca_file_is_resolved_next_to_the_config_and_shown(tracker, tmp_path, pki):
    shutil.copyfile(pki["ca"], tmp_path / "clinic-ca.pem")
    email_config(tmp_path, 465, "tls", Path("clinic-ca.pem"), auth=False)
    assert tracker.json("config show")["reminders"]["email"]["ca_file"] == str(tmp_path / "clinic-ca.pem")
    assert 'ca_file = "' + str(tmp_path / "clinic-ca.pem") + '"' in tracker("config show").stdout

    email_config(tmp_path, 465, "tls", None, auth=False)
    assert tracker.json("config show")["reminders"]["email"]["ca_file"] == "(system)"


@pytest.mark.parametrize("content, reason", [(None, "file not found"),
                                             ("not a certificate\n", "not a PEM certificate bundle")])
def test_bad_ca_file_is_a_one_line_config_error_before_anything_runs(tracker, tmp_path, content, reason):
    small_clinic(tracker)
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    email_config(tmp_path, 465, "tls", ca, auth=False)
    for command in ("config show", f"nightly --as-of {AS_OF}"):
        result = tracker(command, ok=False)
        assert result.exit_code == 8
        assert result.stderr.strip().splitlines() == [f"error: reminders.email.ca_file: '{ca}': {reason}"]
    assert not (tmp_path / "reminders.jsonl").exists()  # nothing was delivered
