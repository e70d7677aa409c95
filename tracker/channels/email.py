"""email: the digest over SMTP (smtplib), plain, STARTTLS or implicit TLS.

Delivery is tracked per recipient: each recipient has its own delivery rows (channel `email:<hash of the
address>`, `recipient_key`) and gets its own message, one SMTP transaction on a shared connection, marked
sent right after the server accepts it. So a refused recipient is retried alone (the others do not get
the digest again), and a kill between accept and mark re-sends one message to one recipient. The subject
carries only the count and date, never patient or diagnosis text.

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
        s = self.settings
        try:
            if s.security == "tls":
                return smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s, context=self._tls_context())
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            if s.security == "starttls":
                try:
                    smtp.starttls(context=self._tls_context())
                except BaseException:
                    smtp.close()
                    raise
            return smtp
        except ssl.SSLCertVerificationError as exc:
            trusted = f"reminders.email.ca_file {s.ca_file!r}" if s.ca_file else "the system's CA store"
            raise RuntimeError(f"{s.host}:{s.port}: server certificate rejected ({exc.verify_message}); "
                               f"trusted CAs: {trusted}") from exc

    @contextmanager
    def session(self):
        """One SMTP connection (logged in when configured) for the digests of every recipient."""
        s = self.settings
        with self._connect() as smtp:
            if s.user:
                password = secret(s.password_env)  # read at send time, never kept
                if password is None:
                    raise RuntimeError(f"reminders.email.password_env: ${s.password_env} is not set")
                smtp.login(s.user, password)
            yield smtp

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


class RecipientRefused(RuntimeError):
    """The server refused this message for this recipient; the others are not affected."""
