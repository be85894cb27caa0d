"""Real servers for delivery tests: an SMTP server (aiosmtpd) and a stand-in for SendGrid's v3 API.

Both bind 127.0.0.1 on a free port, run in a background thread, record what they receive, and can be told
how to answer. Use them as pytest fixtures by importing them into a test module (pytest puts ``tests/`` on
``sys.path`` because it has no ``__init__.py``)::

    from servers import sendgrid_server, smtp_server  # noqa: F401  (fixtures)

    def test_x(smtp_server):
        smtp_server.reject_recipient("gone@example.com", 550, "5.1.1 User unknown")
        smtp_server.fail_next(1, 451, "4.3.0 Try again later")
        ...
        smtp_server.messages[0].data          # the bytes as received
        smtp_server.connections               # how many SMTP sessions were opened

or build your own: ``SmtpTestServer(tls="starttls", auth={"user": "pw"})`` with ``.start()``/``.stop()``
(also a context manager). ``tls_contexts()`` returns a matching (server, client) SSL context pair made from a
self-signed certificate for 127.0.0.1 that only the client context trusts.
"""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import random
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- TLS material

_tls_files: tuple[Path, Path] | None = None


def _self_signed() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, made once per test session with cryptography."""
    global _tls_files
    if _tls_files is not None:
        return _tls_files
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    # Dates that read no clock: OpenSSL checks them against the real time, not the Python clock a test may shift
    # (tests/clockshift). 9999-12-31 23:59:59 means "no well-defined expiration date" (RFC 5280, 4.1.2.5).
    valid_from = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    valid_until = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_until)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="nurture-tls-"))
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    _tls_files = (certfile, keyfile)
    return _tls_files


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context that trusts the server's self-signed certificate)."""
    certfile, keyfile = _self_signed()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certfile, keyfile)
    client = ssl.create_default_context(cafile=str(certfile))
    return server, client


# --------------------------------------------------------------------------------------------- SMTP


@dataclass
class Received:
    """One message as the SMTP server got it: envelope and the exact DATA bytes (dot-unstuffed)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class _Handler:
    def __init__(self, server: SmtpTestServer) -> None:
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # aiosmtpd reads commands one by one, so pipelined commands work; advertising it is what is missing.
        session.host_name = hostname
        if self.server.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.server._flake():
            return "451 4.3.0 try again later (flaky)"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):
        s = self.server
        if s._flake():
            return "451 4.3.0 try again later (flaky)"
        if address in s.rejected:
            code, text = s.rejected[address]
            return f"{code} {text}"
        if s._take("disconnect_rcpt"):
            smtp.transport.close()
            return "421 4.4.2 going away"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp, session, envelope):
        s = self.server
        if s._flake():
            return "451 4.3.0 try again later (flaky)"
        failure = s._take("fail")
        if failure:
            return f"{failure[0]} {failure[1]}"
        stall = s._take("stall")
        if stall:
            # The dot has arrived; answering late makes the client time out in the ambiguous window.
            s.stalled.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            await asyncio.sleep(stall)
            return "250 2.0.0 accepted late"
        if s._take("disconnect_data"):
            s.stalled.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            smtp.transport.close()
            return "250 2.0.0 never heard"
        with s.lock:
            s.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            n = len(s.messages)
        return f"250 2.0.0 Ok: queued as Q{n}"


class _CountingController(Controller):
    def __init__(self, owner: SmtpTestServer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.owner = owner

    def factory(self):
        # One SMTP instance per TCP connection: counting them counts connections.
        with self.owner.lock:
            self.owner.connections += 1
        return SMTP(self.handler, **self.SMTP_kwargs)


class SmtpTestServer:
    """aiosmtpd on 127.0.0.1:<free port>. ``tls``: "none", "starttls" or "ssl"; ``auth``: {user: password}
    enables AUTH (over TLS only, as aiosmtpd requires by default); ``idle_timeout`` makes the server hang up
    on idle sessions, as real servers do after a few minutes.

    Scripting (each applies to the next matching events, in order):
      ``reject_recipient(addr, code, text)``  RCPT TO answers ``code text`` for that address, every time
      ``fail_next(n, code, text)``             the next n messages are refused after the dot
      ``stall_next(n, seconds)``               the next n messages get their 250 only after ``seconds``
      ``disconnect_next(n, at="data"|"rcpt")`` the server hangs up after the dot / at RCPT
      ``flaky(rate, seed)``                    each MAIL, RCPT and DATA answers 451 with probability ``rate``
    Recorded: ``messages`` (accepted), ``stalled`` (got the dot but answered late or never), ``connections``,
    ``refused`` (commands the flaky server answered 451).
    """

    def __init__(
        self,
        *,
        tls: str = "none",
        auth: dict[str, str] | None = None,
        idle_timeout: float | None = None,
        pipelining: bool = False,
    ) -> None:
        self.tls = tls
        self.pipelining = pipelining  # advertise RFC 2920 PIPELINING (clients then send MAIL/RCPT/DATA at once)
        self.idle_timeout = idle_timeout
        self.auth = auth
        self.host = HOST
        self.port = 0
        self.messages: list[Received] = []
        self.stalled: list[Received] = []
        self.connections = 0
        self.refused = 0
        self._flaky: tuple[float, random.Random] | None = None
        self.rejected: dict[str, tuple[int, str]] = {}
        self.logins: list[str] = []
        self.lock = threading.Lock()
        self._script: dict[str, deque] = {
            "fail": deque(),
            "stall": deque(),
            "disconnect_rcpt": deque(),
            "disconnect_data": deque(),
        }
        self._controller: Controller | None = None
        self.server_context, self.client_context = tls_contexts() if tls != "none" else (None, None)

    # scripting
    def reject_recipient(self, address: str, code: int = 550, text: str = "5.1.1 User unknown") -> None:
        self.rejected[address] = (code, text)

    def fail_next(self, n: int, code: int, text: str) -> None:
        with self.lock:
            self._script["fail"].extend([(code, text)] * n)

    def stall_next(self, n: int, seconds: float) -> None:
        with self.lock:
            self._script["stall"].extend([seconds] * n)

    def disconnect_next(self, n: int = 1, at: str = "data") -> None:
        with self.lock:
            self._script[f"disconnect_{at}"].extend([True] * n)

    def flaky(self, rate: float, seed: int = 0) -> None:
        with self.lock:
            self._flaky = (rate, random.Random(seed))

    def _flake(self) -> bool:
        with self.lock:
            if self._flaky is None:
                return False
            rate, rng = self._flaky
            if rng.random() >= rate:
                return False
            self.refused += 1
            return True

    def _take(self, kind: str):
        with self.lock:
            queue = self._script[kind]
            return queue.popleft() if queue else None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            if self.auth and self.auth.get(user) == password:
                self.logins.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    # life cycle
    def start(self) -> SmtpTestServer:
        kwargs: dict = {}
        if self.tls == "starttls":
            kwargs["tls_context"] = self.server_context
            kwargs["require_starttls"] = True
        if self.idle_timeout is not None:
            kwargs["timeout"] = self.idle_timeout  # aiosmtpd hangs up on a session idle this long
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
        self.port = free_port()
        self._controller = _CountingController(
            self,
            handler=_Handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=self.server_context if self.tls == "ssl" else None,
            **kwargs,
        )
        self._controller.start()
        with self.lock:
            self.connections = 0  # the controller's own readiness probe is not a client
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- SendGrid


@dataclass
class Request:
    """One HTTP request as the SendGrid stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 202
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class SendgridTestServer:
    """A local HTTP server answering like SendGrid's ``POST /v3/mail/send``. Point the client's ``host`` at
    ``.url``. By default every request gets 202 with a fresh ``X-Message-Id``; ``answer(...)`` queues
    specific replies; the helpers below queue the ones SendGrid documents. ``requests`` records everything.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.message_ids: list[str] = []
        self._replies: deque[Reply] = deque()
        self.lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # scripting
    def answer(
        self, status: int, body=None, headers: dict[str, str] | None = None, delay: float = 0.0, times: int = 1
    ) -> None:
        raw = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        with self.lock:
            self._replies.extend([Reply(status, raw, dict(headers or {}), delay)] * times)

    def answer_error(self, status: int, *messages: str, field_name: str | None = None, times: int = 1) -> None:
        """An error reply in SendGrid's shape: {"errors": [{"message": ..., "field": ..., "help": null}]}."""
        self.answer(
            status, {"errors": [{"message": m, "field": field_name, "help": None} for m in messages]}, times=times
        )

    def answer_rate_limited(self, reset_epoch: int, times: int = 1) -> None:
        self.answer(
            429,
            {"errors": [{"message": "too many requests", "field": None, "help": None}]},
            {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_epoch)},
            times=times,
        )

    def answer_slowly(self, seconds: float, times: int = 1) -> None:
        """202, but only after ``seconds`` (the request has been read: the client's timeout is ambiguous)."""
        self.answer(202, delay=seconds, times=times)

    def _next_reply(self) -> Reply:
        with self.lock:
            return self._replies.popleft() if self._replies else Reply()

    # life cycle
    def start(self) -> SendgridTestServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with owner.lock:
                    owner.requests.append(Request("POST", self.path, dict(self.headers.items()), body))
                reply = owner._next_reply()
                if reply.delay:
                    time.sleep(reply.delay)
                headers = dict(reply.headers)
                if reply.status == 202 and "X-Message-Id" not in headers:
                    headers["X-Message-Id"] = uuid.uuid4().hex[:22]
                    with owner.lock:
                        owner.message_ids.append(headers["X-Message-Id"])
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up waiting (timeout tests)

            do_GET = do_POST

            def log_message(self, *args):  # keep test output quiet
                pass

        httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="sendgrid-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SendgridTestServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def smtp_server():
    """A plain (no TLS, no AUTH) SMTP server; see SmtpTestServer for scripting and what it records."""
    with SmtpTestServer() as server:
        yield server


@pytest.fixture
def sendgrid_server():
    """The SendGrid v3 stand-in; ``sendgrid_server.url`` is the client's host."""
    with SendgridTestServer() as server:
        yield server
