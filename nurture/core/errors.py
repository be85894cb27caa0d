"""The one error tree of nurture.

::

    NurtureError                 anything the user can fix; the CLI prints it without a traceback
    ├── ConfigError              nurture.toml, campaign files, templates: fix the file (exit 2)
    │   └── SenderConfigError    the sender can send nothing as set up (login or API key refused, TLS
    │                            fails): the run stops, its mails stay pending
    ├── InputError               a data file (CSV/XLSX) or an argument: fix the input (exit 1)
    │   └── HeaderInjectionError a header value carrying CR, LF or NUL (also a ValueError)
    │       └── HeaderTooLongError a header line over 998 characters that cannot be folded
    ├── NotFound                 a prospect, campaign or item that does not exist
    └── SendError                delivery failed; carries the provider's words
        ├── TemporarySendError   retry later (SMTP 4xx, HTTP 429/5xx, network errors)
        ├── PermanentSendError   do not retry (SMTP 5xx, HTTP 4xx); ``hard_bounce`` suppresses the address
        └── AmbiguousSendError   the provider may or may not have accepted it (timeout after the request left)

Configuration errors are a separate branch so that code catching delivery trouble never swallows them.
"""

from __future__ import annotations


class NurtureError(Exception):
    """An error the user can fix. ``str()`` is the message; ``hint`` says how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class ConfigError(NurtureError):
    """A configuration, campaign or template file is wrong. Messages start with ``file:line:``."""

    exit_code = 2


class SenderConfigError(ConfigError):
    """The sender cannot send any message as it is set up: credentials refused (SMTP AUTH, SMTP 530
    "authentication required", SendGrid 401/403), TLS failing or not offered. Any sender raises it; the sending
    engine then stops the run and leaves every unsent mail pending, instead of failing each mail in turn.
    ``code`` is the SMTP/HTTP status when there is one."""

    def __init__(self, message: str, hint: str | None = None, code: int | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class InputError(NurtureError):
    """A data file or command-line argument is wrong."""


class HeaderInjectionError(InputError, ValueError):
    """A header value contains CR, LF or NUL (CVE-2024-6923 class); the message is never built."""


class HeaderTooLongError(HeaderInjectionError):
    """A header line would be longer than RFC 5322's 998 characters even folded (an unbreakable token: a
    very long address, URL or id); that one message is refused."""


class NotFound(NurtureError):
    """The named thing does not exist."""


class SendError(NurtureError):
    """A message could not be delivered. ``code`` is the SMTP/HTTP status when there is one."""

    def __init__(self, message: str, code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class TemporarySendError(SendError):
    """Try again later; the message stays pending (RFC 5321 4.2.1: 4yz is a transient negative completion)."""


class PermanentSendError(SendError):
    """Do not retry (RFC 5321 4.2.1: 5yz is a permanent negative completion)."""

    def __init__(self, message: str, code: int | None = None, hard_bounce: bool = False) -> None:
        super().__init__(message, code)
        self.hard_bounce = hard_bounce


class AmbiguousSendError(SendError):
    """The request may have been accepted (e.g. a timeout after sending). Never resend blindly."""
