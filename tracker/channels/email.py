"""email: the digest over SMTP (smtplib), plain, STARTTLS or implicit TLS.

Delivery is tracked per recipient: each recipient has its own delivery rows (channel `email:<hash of the
address>`, `recipient_key`) and gets its own message, one SMTP transaction on a shared connection, marked
sent right after the server accepts it. So a refused recipient is retried alone (the others do not get
the digest again), and a kill between accept and mark re-sends one message to one recipient. The subject
carries only the count and date, never patient or diagnosis text.

`timeout_s` bounds each exchange with the server as a whole, not each read: connecting (greeting, EHLO,
STARTTLS, login), each recipient's message, and QUIT. A server that drips its replies (a tarpit) is cut off
when one passes (tracker/channels/deadline.py), so an e-mail delivery takes at most (recipients + 2) x
`timeout_s`, and a channel after it is not held up. A failure at QUIT, once every message was answered,
delivers or loses nothing: it is a warning, not a failed delivery.

STARTTLS and TLS always verify the server's certificate and host name: against the system's trust store,
or against `reminders.email.ca_file` when set (a clinic's own CA or a self-signed server certificate).
"""

from __future__ import annotations

import smtplib
import ssl
import hashlib
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from tracker.channels.deadline import Deadline, DeadlinePassed
from tracker.channels.digest import digest_lines, subject
from tracker.config import secret
from tracker.core.settings import EmailSettings


KEY_PREFIX = "email:"


def recipient_key(address: str) -> str:
    """The delivery channel of one recipient: 20 characters (the column's width), no address in clear."""
    return KEY_PREFIX + hashlib.sha256(address.strip().lower().encode()).hexdigest()[:14]


class EmailChannel:
    name = "email"
    digest = True
    per_recipient = True

    def __init__(self, settings: EmailSettings):
        self.settings = settings

    @property
    def recipients(self) -> dict[str, str]:
        """Delivery channel -> address, in the configured order."""
        return {recipient_key(address): address for address in self.settings.to}

    @property
    def delivery_keys(self) -> list[str]:
        return list(self.recipients)

    def _tls_context(self) -> ssl.SSLContext:
        # create_default_context: CERT_REQUIRED and check_hostname; cafile=None means the system's store.
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def _connect(self) -> smtplib.SMTP:
        """Connected (STARTTLS when configured) and logged in, all within one `timeout_s`."""
        s = self.settings
        deadline = Deadline()
        smtp = _SMTP_SSL(timeout=s.timeout_s, context=self._tls_context()) if s.security == "tls" \
            else _SMTP(timeout=s.timeout_s)
        smtp.deadline = deadline
        smtp._host = s.host  # what SMTP(host) sets before connecting: the TLS server name
        try:
            with self._within(smtp, "connecting"):
                code, reply = smtp.connect(s.host, s.port)
                if code != 220:
                    raise smtplib.SMTPConnectError(code, reply)
                if s.security == "starttls":
                    smtp.starttls(context=self._tls_context())
                if s.user:
                    password = secret(s.password_env)  # read at send time, never kept
                    if password is None:
                        raise RuntimeError(f"reminders.email.password_env: ${s.password_env} is not set")
                    smtp.login(s.user, password)
        except BaseException as exc:
            smtp.close()
            deadline.close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                trusted = f"reminders.email.ca_file {s.ca_file!r}" if s.ca_file else "the system's CA store"
                raise RuntimeError(f"{s.host}:{s.port}: server certificate rejected ({exc.verify_message}); "
                                   f"trusted CAs: {trusted}") from exc
            raise
        return smtp

    @contextmanager
    def _within(self, smtp: smtplib.SMTP, what: str):
        """One exchange with the server (connecting, one recipient's message, QUIT) within `timeout_s` as a
        whole: a server that drips its replies is cut off when it passes."""
        s = self.settings
        try:
            with smtp.deadline.limit(s.timeout_s):
                yield
        except (DeadlinePassed, TimeoutError, smtplib.SMTPServerDisconnected) as exc:
            # smtplib turns a read's socket timeout into SMTPServerDisconnected (the timeout its context)
            if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
                raise TimeoutError(f"{s.host}:{s.port}: no complete answer within timeout_s = {s.timeout_s:g} s "
                                   f"({what}; gave up after {smtp.deadline.elapsed():.1f} s)") from None
            raise

    @contextmanager
    def session(self):
        """One SMTP connection (logged in when configured) for the digests of every recipient. It is
        closed on the way out; say goodbye with `quit` after the last message."""
        smtp = self._connect()
        try:
            yield smtp
        finally:
            smtp.close()
            smtp.deadline.close()

    def quit(self, smtp: smtplib.SMTP) -> str | None:
        """QUIT after the last message (within its own `timeout_s`). Every message was accepted or refused by
        then, so a failure here (an answer other than 221, a dropped connection, the deadline) delivers or
        loses nothing: it is returned as a warning, not raised."""
        try:
            with self._within(smtp, "QUIT"):
                code, reply = smtp.docmd("QUIT")
        except (OSError, smtplib.SMTPException) as exc:
            return f"every message was answered, but QUIT failed ({type(exc).__name__}: {exc})"
        if code != 221:
            return f"every message was answered, but QUIT was answered {code} {reply.decode(errors='replace')!r}"
        return None

    def send_to(self, smtp: smtplib.SMTP, address: str, rows, count, as_of, from_day=None) -> None:
        """One digest to one recipient; raises RecipientRefused if the server refuses that address (the
        connection is still good), anything else if the connection is not."""
        s = self.settings
        message = EmailMessage()
        message["Subject"] = subject(count, as_of)
        message["From"] = s.sender
        message["To"] = address
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain=s.sender.rsplit("@", 1)[1])
        message.set_content("\n".join(digest_lines(rows, count, as_of, from_day)) + "\n")
        with self._within(smtp, f"sending to {address}"):
            try:
                refused = smtp.send_message(message, from_addr=s.sender, to_addrs=[address])
            except smtplib.SMTPRecipientsRefused as exc:
                refused = exc.recipients
            except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
                smtp.rset()  # the session can carry on with the next recipient
                raise RecipientRefused(f"{address}: {exc.smtp_code} {exc.smtp_error!r}") from None
            if refused:
                code, text = next(iter(refused.values()))
                smtp.rset()
                raise RecipientRefused(f"recipient refused: {address} ({code} {text.decode(errors='replace')})")


class _SMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket is handed to its deadline the moment it is connected, before the greeting
    (or, for implicit TLS, the handshake) is read."""

    deadline: Deadline

    def _get_socket(self, host, port, timeout):
        return self.deadline.watch(super()._get_socket(host, port, timeout))


class _SMTP_SSL(smtplib.SMTP_SSL, _SMTP):
    """Implicit TLS: SMTP_SSL wraps the socket _SMTP._get_socket connected and watched (the MRO puts _SMTP
    between SMTP_SSL and SMTP)."""


class RecipientRefused(RuntimeError):
    """The server refused this message for this recipient; the others are not affected."""
