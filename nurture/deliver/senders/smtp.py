"""SMTP delivery with smtplib: one connection reused for many messages, TLS, AUTH, honest failure classes.

How a failure is classified (RFC 5321 4.2.1: the first digit of the reply decides):

* 4yz ("transient negative completion": 421, 450, 451, 452, ...) -> TemporarySendError; the message stays
  pending and is retried with backoff (RFC 5321 4.5.4.1: a sender must retry 4yz, never drop).
* 5yz ("permanent negative completion") -> PermanentSendError carrying the server's words; a mailbox that does
  not exist (550/551/553, or an enhanced status 5.1.x / 5.2.1, RFC 3463 3.2) sets ``hard_bounce`` so the
  address is suppressed. A 5.7.x policy refusal is permanent but *not* a hard bounce: the mailbox exists.
* Connection refused, reset or timed out before the end-of-data dot was sent -> TemporarySendError: the
  server cannot have accepted a message it never fully received.
* Timeout or disconnect *after* the dot was sent, while waiting for the final reply -> AmbiguousSendError:
  the server may have accepted and queued it (RFC 5321 4.5.3.2.6 gives it 10 minutes to answer; RFC 1047
  describes the resulting duplicates). The loop records the ambiguity instead of resending blindly.

Failures of the sender rather than of a message raise SenderConfigError, and the run stops with every unsent
mail pending: the login refused (AUTH 535), "530 authentication required" (RFC 4954 6) or "530 must issue a
STARTTLS command first" (RFC 3207 4) to MAIL or RCPT, STARTTLS not offered, the TLS handshake failing.

The message is sent as the bytes of :func:`nurture.compose.message.build_mime` (CRLF already; smtplib sends bytes as
they are). Envelope: MAIL FROM = From address, RCPT TO = the one recipient.
"""

from __future__ import annotations

import re
import smtplib
import ssl

from nurture.compose.message import DkimKey, OutgoingMessage, ascii_address, build_mime, message_id_for
from nurture.core.config import Config
from nurture.core.errors import (
    AmbiguousSendError,
    ConfigError,
    PermanentSendError,
    SenderConfigError,
    SendError,
    TemporarySendError,
)
from nurture.deliver.senders.base import Sender, SendResult

# RFC 3463 3.2: X.1.Y = addressing status (bad mailbox 5.1.1, bad domain 5.1.2, bad syntax 5.1.3,
# moved 5.1.6, null MX 5.1.10); 5.2.1 = mailbox disabled. These say "this address is dead".
_ENHANCED = re.compile(rb"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
_HARD_BOUNCE_BASIC = {550, 551, 553}


def is_hard_bounce(code: int, text: bytes | str) -> bool:
    """Whether a 5yz reply means the mailbox does not exist (so the address should be suppressed)."""
    if not 500 <= code < 600:
        return False
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    m = _ENHANCED.match(raw or b"")
    if m:
        return m.group(2) == b"1" or (m.group(2) == b"2" and m.group(3) == b"1")
    return code in _HARD_BOUNCE_BASIC


def _words(text: bytes | str) -> str:
    return (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).replace("\n", " ").strip()


def classify_reply(code: int, text: bytes | str, stage: str) -> SendError | SenderConfigError:
    """The error for a negative SMTP reply at ``stage`` (MAIL, RCPT, DATA, end of data): a SendError about this
    message, or SenderConfigError for a 530, which refuses every message until we authenticate (or STARTTLS)."""
    words = f"SMTP {code} at {stage}: {_words(text)}"
    if code == 530:
        return SenderConfigError(
            words,
            code=code,
            hint="the server wants a login (set [smtp] username and "
            "NURTURE_SMTP_PASSWORD) or STARTTLS first (set [smtp] security)",
        )
    if 400 <= code < 500:
        return TemporarySendError(words, code=code)
    if 500 <= code < 600:
        # A 5yz to MAIL FROM is about our sender address, never the recipient's mailbox.
        dead = stage in ("RCPT", "end of data") and is_hard_bounce(code, text)
        return PermanentSendError(words, code=code, hard_bounce=dead)
    # Anything else (e.g. a 2yz where 354 was expected) is a protocol error: not accepted, retry later.
    return TemporarySendError(words, code=code)


_LINE_DOT = re.compile(rb"\n\.")


class _SMTPConnection(smtplib.SMTP):
    """smtplib.SMTP that remembers whether the end-of-data dot has gone out (see the module docstring)."""

    dot_sent = False

    def data(self, msg: bytes) -> tuple[int, bytes]:  # type: ignore[override]  # smtplib also takes str
        # Same steps as smtplib.SMTP.data (RFC 5321 4.1.1.4), with the moment the dot leaves recorded.
        self.dot_sent = False
        self.putcmd("data")
        code, repl = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, repl)
        return self.body(msg)

    def body(self, msg: bytes) -> tuple[int, bytes]:
        """After a 354: the message, dot-stuffed, then the final dot; the server's reply to it."""
        self.dot_sent = False
        # Dot-stuffing, RFC 5321 4.5.2. Most messages have no line starting with "." (base64 never does): a
        # search first (the compiled literal search is ~3x faster than `b"\n." in msg`), then bytes.replace.
        q = msg
        if msg.startswith(b".") or _LINE_DOT.search(msg):
            q = msg.replace(b"\n.", b"\n..")
            if q.startswith(b"."):
                q = b"." + q
        if not q.endswith(b"\r\n"):
            q += b"\r\n"
        self.send(q + b".\r\n")
        self.dot_sent = True
        return self.getreply()


class _SMTPSSLConnection(_SMTPConnection, smtplib.SMTP_SSL):
    pass


class SmtpSender(Sender):
    """Delivers through one SMTP server; reconnects after ``messages_per_connection`` messages or a drop."""

    name = "smtp"
    event_source = "smtp"  # a hard bounce is the SMTP server's own answer in the dialogue

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "none",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        messages_per_connection: int = 100,
        helo: str = "",
        dkim: DkimKey | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("none", "starttls", "ssl"):
            raise ConfigError(f"[smtp] security = {security!r}: use none, starttls or ssl")
        self.host, self.port, self.security = host, port, security
        self.username, self.password = username, password
        self.timeout = timeout
        self.messages_per_connection = max(1, messages_per_connection)
        self.helo = helo or None
        self.dkim = dkim
        self.ssl_context = ssl_context
        self._conn: _SMTPConnection | None = None
        self._sent_on_conn = 0
        self.connections_opened = 0

    @classmethod
    def from_config(cls, config: Config) -> SmtpSender:
        s = config.smtp
        return cls(
            s.host,
            s.port,
            security=s.security,
            username=s.username,
            password=s.password,
            timeout=s.timeout,
            messages_per_connection=s.messages_per_connection,
            helo=s.helo,
            dkim=DkimKey.from_config(config),
        )

    def _context(self) -> ssl.SSLContext:
        return self.ssl_context or ssl.create_default_context()

    def open(self) -> None:
        """Connect, say EHLO, STARTTLS and log in as configured. Network trouble -> TemporarySendError;
        a refused login, a server without STARTTLS or a failing TLS handshake -> SenderConfigError (no
        message could ever be sent)."""
        if self._conn is not None:
            return
        where = f"{self.host}:{self.port}"
        conn: _SMTPConnection
        try:
            if self.security == "ssl":
                conn = _SMTPSSLConnection(
                    self.host, self.port, local_hostname=self.helo, timeout=self.timeout, context=self._context()
                )
            else:
                conn = _SMTPConnection(self.host, self.port, local_hostname=self.helo, timeout=self.timeout)
            try:
                conn.ehlo_or_helo_if_needed()
                if self.security == "starttls":
                    if not conn.has_extn("starttls"):
                        raise SenderConfigError(
                            f"[smtp] {where} does not offer STARTTLS",
                            hint='use security = "ssl" or "none" as the server requires',
                        )
                    conn.starttls(context=self._context())
                    conn.ehlo()
                if self.username:
                    conn.login(self.username, self.password)
            except BaseException:
                conn.close()
                raise
        except smtplib.SMTPAuthenticationError as exc:
            raise SenderConfigError(
                f"[smtp] {where} refused the login for {self.username!r}: {exc.smtp_code} {_words(exc.smtp_error)}",
                code=exc.smtp_code,
                hint="check [smtp] username and NURTURE_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPNotSupportedError as exc:  # e.g. AUTH asked of a server that offers none
            raise SenderConfigError(f"[smtp] {where}: {exc}", hint="check [smtp] security and username") from None
        except smtplib.SMTPResponseException as exc:
            # e.g. 421 or 554 in the greeting: the server is busy or refuses us for now.
            raise TemporarySendError(
                f"SMTP {where} answered {exc.smtp_code} on connect: {_words(exc.smtp_error)}", code=exc.smtp_code
            ) from None
        except ssl.SSLError as exc:
            raise SenderConfigError(
                f"[smtp] {where}: TLS failed: {exc}", hint="check [smtp] security (starttls on 587, ssl on 465)"
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporarySendError(f"SMTP {where}: cannot connect: {exc}") from None
        self._conn = conn
        self._sent_on_conn = 0
        self.connections_opened += 1

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()

    def _connected(self) -> _SMTPConnection:
        """The open connection, connecting first if there is none (see :meth:`open` for its errors)."""
        self.open()
        assert self._conn is not None  # open() sets it or raises
        return self._conn

    def _drop(self) -> None:
        """Forget a connection in an unknown state without talking to it."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def send(self, msg: OutgoingMessage) -> SendResult:
        data = build_mime(msg, self.dkim)
        mid = msg.message_id or message_id_for(msg.delivery_id, msg.campaign, msg.from_address)
        if self._conn is not None and self._sent_on_conn >= self.messages_per_connection:
            self.close()
        reused = self._conn is not None
        try:
            reply = self._transaction(msg, data)
        except _Dropped as exc:
            # A reused connection the server closed while idle (common: servers drop idle sessions after
            # a few minutes, RFC 5321 4.5.3.2.7). Nothing was accepted: reconnect once and try again.
            if not reused:
                raise TemporarySendError(str(exc)) from None
            reply = self._transaction(msg, data, retrying=True)
        self._sent_on_conn += 1
        return SendResult(mid, detail=_words(reply))

    def _transaction(self, msg: OutgoingMessage, data: bytes, retrying: bool = False) -> bytes:
        conn = self._connected()
        stage = "MAIL"
        try:
            if conn.has_extn("pipelining"):
                # RFC 2920: MAIL, RCPT and DATA in one write, their replies read in order: two round trips
                # per message instead of four, as Postfix does.
                conn.dot_sent = False
                conn.send(
                    f"MAIL FROM:<{ascii_address(msg.from_address)}>\r\n"
                    f"RCPT TO:<{ascii_address(msg.to_address)}>\r\nDATA\r\n".encode("ascii")
                )
                replies: list[tuple[int, bytes]] = []
                for stage in ("MAIL", "RCPT", "DATA"):  # noqa: B007  (the except below names the lost reply)
                    try:
                        replies.append(conn.getreply())
                    except (OSError, smtplib.SMTPException):
                        expected = ((250,), (250, 251))[: len(replies)]
                        refused = next((r for r, ok in zip(replies, expected, strict=True) if r[0] not in ok), None)
                        if refused is None:
                            raise
                        self._drop()  # the server said why, then hung up (e.g. 421 at RCPT)
                        raise classify_reply(*refused, ("MAIL", "RCPT")[replies.index(refused)]) from None
                mail, rcpt, opened = replies
                if opened[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
                    # DATA was opened although the envelope failed (RFC 2920 3.1 says it should not be):
                    # end the empty message; with no recipient nothing is delivered.
                    conn.send(b".\r\n")
                    conn.getreply()
                if mail[0] != 250:
                    raise classify_reply(*mail, "MAIL")
                if rcpt[0] not in (250, 251):
                    raise classify_reply(*rcpt, "RCPT")
                if opened[0] != 354:
                    raise smtplib.SMTPDataError(*opened)
                code, text = conn.body(data)
                if code != 250:
                    raise classify_reply(code, text, "end of data")
                return text
            code, text = conn.mail(ascii_address(msg.from_address))
            if code != 250:
                raise classify_reply(code, text, "MAIL")
            stage = "RCPT"
            code, text = conn.rcpt(ascii_address(msg.to_address))
            if code not in (250, 251):
                raise classify_reply(code, text, "RCPT")
            stage = "DATA"
            code, text = conn.data(data)
            if code != 250:
                raise classify_reply(code, text, "end of data")
            return text
        except (TemporarySendError, PermanentSendError) as exc:
            if exc.code == 421:  # RFC 5321 3.8: the server is closing the channel
                self._drop()
            else:
                self._reset()
            raise
        except smtplib.SMTPDataError as exc:  # the DATA command itself was refused (no 354)
            self._reset()
            raise classify_reply(exc.smtp_code, exc.smtp_error, "DATA") from None
        except (OSError, smtplib.SMTPException) as exc:
            # Timeout, reset, or SMTPServerDisconnected. Which side of the dot decides the class.
            dot_sent = conn.dot_sent and stage == "DATA"
            self._drop()
            where = f"{self.host}:{self.port}"
            if dot_sent:
                raise AmbiguousSendError(
                    f"SMTP {where}: {type(exc).__name__} after the message was sent, before the server "
                    f"confirmed it ({exc}); it may have been delivered"
                ) from None
            if not retrying and stage == "MAIL":
                raise _Dropped(f"SMTP {where}: connection lost at {stage}: {exc}") from None
            raise TemporarySendError(f"SMTP {where}: connection lost at {stage}: {exc}") from None

    def _reset(self) -> None:
        """RSET after a refused transaction so the connection can be reused (RFC 5321 4.1.1.5)."""
        if self._conn is None:
            return
        try:
            code, _ = self._conn.rset()
            if code != 250:
                self._drop()
        except (OSError, smtplib.SMTPException):
            self._drop()


class _Dropped(Exception):
    """Internal: the connection was gone before MAIL FROM was answered."""
