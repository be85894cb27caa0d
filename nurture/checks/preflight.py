"""The preflight: may this setup send real mail? A pure check of the configuration (no database, no network).

With the outbox or memory sender nothing leaves the machine, so the demo runs on the shipped example values. With a
real sender (smtp, sendgrid) :func:`preflight_problems` lists every way the setup would put wrong or illegal mail
into people's inboxes, one :class:`Problem` each:

- ``[identity]`` fields still holding the shipped values of ``config.example.toml`` (特定電子メール法 and CAN-SPAM
  require the *real* sender's name, address and contact), or any address or URL there on a documentation domain
  (``example.*``, RFC 2606 / RFC 6761: ``.example``, ``.test``, ``.invalid``, ``.localhost``);
- ``[tracking] base_url`` that recipients cannot reach: not https (Gmail and Yahoo want an https one-click
  ``List-Unsubscribe``), ``localhost``, a private, loopback, link-local or otherwise non-global IP address (also in
  the short numeric forms browsers accept: ``127.1``, ``0x7f000001``), a query, fragment or credentials, or a
  documentation domain;
- a tracking secret that is a placeholder or shorter than :data:`MIN_SECRET_LENGTH` characters, or a previous
  secret (still verifying old links) that is a placeholder or shorter than 16;
- ``[dkim] domain`` that does not align with the From domain under DMARC relaxed alignment (RFC 7489 3.1.1: the
  organizational domains, found with the Public Suffix List, must be equal), so the signature would not count.

``nurture check`` prints them when the configured sender is real; :func:`nurture.deliver.send` refuses to send
(:func:`require_preflight`) unless ``[delivery] preflight = false``.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from nurture.core.config import Config
from nurture.core.errors import ConfigError

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

#: Senders that deliver nothing to anyone: no preflight.
SAFE_SENDERS = ("outbox", "memory")
#: A real send needs a secret at least this long (``secrets.token_urlsafe(32)`` makes 43 characters).
MIN_SECRET_LENGTH = 32
#: A previous secret shorter than this (the minimum the config ever accepted) is refused.
MIN_PREVIOUS_SECRET_LENGTH = 16
#: The values ``config.example.toml`` ships in ``[identity]`` (a test keeps them in step with the file).
EXAMPLE_IDENTITY = {
    "organization": "株式会社サンプル製作所",
    "from_name": "サンプル製作所 業界ニュース編集部",
    "from_address": "news@example.co.jp",
    "postal_address": "〒100-0005 東京都千代田区丸の内1-1-1",
    "inquiry": "info@example.co.jp / 03-0000-0000",
    "website": "https://www.example.co.jp",
}
#: Fields whose addresses and URLs must not be on a documentation domain.
_DOMAIN_FIELDS = ("from_address", "reply_to", "inquiry", "website", "unsubscribe_mailto")
#: Placeholder secrets: what people type when told "set a secret", and nurture's own preview placeholder.
_PLACEHOLDER_WORDS = ("change", "secret", "password", "placeholder", "example", "sample", "dummy", "xxxx", "todo")
#: RFC 2606 / RFC 6761 special-use names that never reach a real mailbox or server.
_RESERVED_TLDS = ("example", "test", "invalid", "localhost", "local", "internal")
#: Private-use names outside the TLD list: RFC 8375's home network domain.
_RESERVED_SUFFIXES = ("home.arpa",)
#: A host that browsers read as an IPv4 address (WHATWG URL: the last label is a number, in decimal, octal or hex).
_NUMERIC_LAST_LABEL = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_DOMAIN_IN_TEXT = re.compile(r"(?:@|://)([A-Za-z0-9.-]+\.[A-Za-z]{2,})|\b((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b")


@dataclass(frozen=True)
class Problem:
    """One thing to fix before a real send: the ``[section] key`` and what is wrong, with how to fix it."""

    key: str
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message} (fix: {self.hint})"


def is_real_sender(config: Config) -> bool:
    """Whether ``[delivery] sender`` puts mail in people's inboxes (anything but outbox and memory)."""
    return config.delivery.sender not in SAFE_SENDERS


def documentation_domain(host: str) -> bool:
    """Whether ``host`` is a name reserved for documentation or testing: ``example.<any suffix>`` (example.com,
    example.co.jp ...) and its subdomains, or anything under ``.example``, ``.test``, ``.invalid``, ``.localhost``,
    ``.local``, ``.internal`` (ICANN's private-use TLD) and ``home.arpa`` (RFC 8375)."""
    labels = host.lower().rstrip(".").split(".")
    if not labels or labels[-1] in _RESERVED_TLDS:
        return True
    if any(".".join(labels[-len(s.split(".")) :]) == s for s in _RESERVED_SUFFIXES):
        return True
    if "example" not in labels:  # skips loading the suffix list for nearly every real domain
        return False
    return organizational_domain(host).split(".")[0] == "example"


@functools.cache
def _suffix_list() -> PublicSuffixList:
    # The bundled list of the maintained `publicsuffixlist` package; it never fetches anything.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def organizational_domain(host: str) -> str:
    """The organizational domain of ``host`` (RFC 7489 3.2: one label more than its public suffix), lower-case:
    ``news.mail.example.co.jp`` -> ``example.co.jp``. A host that is itself a public suffix is returned as is."""
    host = host.lower().rstrip(".")
    return _suffix_list().privatesuffix(host) or host


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment (RFC 7489 3.1.1): both domains have the same organizational domain."""
    return organizational_domain(dkim_domain) == organizational_domain(from_domain)


def _domains_in(text: str) -> list[str]:
    return [a or b for a, b in _DOMAIN_IN_TEXT.findall(text)]


def _identity_problems(config: Config) -> list[Problem]:
    out = []
    identity = config.identity
    for key, example in EXAMPLE_IDENTITY.items():
        if getattr(identity, key).strip() == example:
            out.append(
                Problem(
                    f"[identity] {key}",
                    f"still the example value {example!r} from config.example.toml",
                    f"set your own {key.replace('_', ' ')} in {config.source}",
                )
            )
    if not identity.from_address.strip():
        out.append(Problem("[identity] from_address", "is empty", f"set the address you send from in {config.source}"))
    for key in _DOMAIN_FIELDS:
        value = getattr(identity, key)
        if value.strip() == EXAMPLE_IDENTITY.get(key):
            continue  # reported above
        bad = sorted({d.lower() for d in _domains_in(value) if documentation_domain(d)})
        if bad:
            out.append(
                Problem(
                    f"[identity] {key}",
                    f"{value!r} uses {', '.join(bad)}, a domain reserved for examples (no one can reach it)",
                    "use your organisation's real domain",
                )
            )
    return out


def _base_url_problems(config: Config) -> list[Problem]:
    url = config.tracking.base_url.strip()
    key = "[tracking] base_url"
    hint = "set the public https URL where `nurture serve` is reachable, e.g. https://t.your-domain.jp"
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return [Problem(key, f"{url!r} is not a URL", hint)]
    out = []
    if parts.scheme.lower() != "https":
        out.append(
            Problem(key, f"{url!r} is not https (one-click unsubscribe links must be https for Gmail and Yahoo)", hint)
        )
    if not host:
        out.append(Problem(key, f"{url!r} has no host name", hint))
        return out
    if parts.query or parts.fragment or "?" in url or "#" in url:
        out.append(Problem(key, f"{url!r} has a query or fragment: links are this URL + /u/..., so all break", hint))
    if parts.username is not None or parts.password is not None:
        out.append(Problem(key, f"{url!r} carries a user name or password, which every mail would show", hint))
    address = _ip_address(host)
    if address is not None:
        if not address.is_global:
            out.append(Problem(key, f"{url!r} points at {host}, a private, loopback or link-local address", hint))
    elif host.lower().rstrip(".") == "localhost" or documentation_domain(host):
        out.append(Problem(key, f"{url!r} points at {host}, which recipients cannot reach", hint))
    return out


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a browser would connect to for ``host``, or None for a name. Besides the dotted quad and IPv6,
    browsers read ``127.1``, ``0x7f000001``, ``2130706433`` and ``0177.0.0.1`` as IPv4 (WHATWG URL's IPv4 parser,
    like ``inet_aton``), so those must not slip past as names."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if not labels or not _NUMERIC_LAST_LABEL.match(labels[-1]):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
    except (OSError, ValueError):
        return ipaddress.IPv4Address("0.0.0.0")  # a number browsers refuse as an address: unreachable anyway


def placeholder_secret(secret: str) -> bool:
    """Whether ``secret`` looks typed by hand rather than generated: a placeholder word in it, or fewer than 10
    different characters (``aaaaaaaa...``, ``0123012301230123...``)."""
    lowered = secret.lower()
    return any(word in lowered for word in _PLACEHOLDER_WORDS) or len(set(secret)) < 10


def _secret_problems(config: Config) -> list[Problem]:
    secret = config.tracking.secret
    key = "[tracking] secret"
    hint = (
        "export NURTURE_SECRET=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\" "
        "(keep the old one in previous_secrets so links already sent keep working)"
    )
    if not secret:
        return [Problem(key, "is not set", hint)]
    out = []
    if len(secret) < MIN_SECRET_LENGTH:
        out.append(Problem(key, f"is {len(secret)} characters; real sends need at least {MIN_SECRET_LENGTH}", hint))
    if placeholder_secret(secret):
        out.append(Problem(key, "looks like a placeholder, not a random secret", hint))
    # Every previous secret still verifies tokens: a guessable one lets anybody forge opt-out and preference
    # links. Older links may have been signed with a secret of the load-time minimum (16), not the 32 asked here.
    olds = [s.strip() for s in config.tracking.previous_secrets if s.strip()]
    for number, old in enumerate(olds, 1):
        weak = (
            f"is {len(old)} characters"
            if len(old) < MIN_PREVIOUS_SECRET_LENGTH
            else "looks like a placeholder"
            if placeholder_secret(old)
            else ""
        )
        if weak:
            out.append(
                Problem(
                    "[tracking] previous_secrets",
                    f"no. {number} of {len(olds)} {weak}: links it verifies can be forged",
                    "drop it (links it signed then get the page where a person stops mail by address)",
                )
            )
    return out


def _dkim_problems(config: Config) -> list[Problem]:
    domain = config.dkim.domain.strip()
    from_domain = config.identity.from_address.rpartition("@")[2].strip()
    if not domain or not from_domain:
        return []
    if aligned(domain, from_domain):
        return []
    return [
        Problem(
            "[dkim] domain",
            f"{domain!r} does not align with the From domain {from_domain!r} (DMARC relaxed alignment needs the same "
            f"organizational domain: {organizational_domain(domain)} vs {organizational_domain(from_domain)}), so "
            "receivers do not count the signature",
            "sign with a key of the From domain (or a subdomain of it), or send from the DKIM domain",
        )
    ]


def preflight_problems(config: Config) -> list[Problem]:
    """Everything that must change before ``config`` sends real mail, in file order; empty when it may.
    Checked whatever the sender is (callers decide when it matters: :func:`is_real_sender`)."""
    return _identity_problems(config) + _dkim_problems(config) + _base_url_problems(config) + _secret_problems(config)


def require_preflight(config: Config) -> None:
    """Raise ConfigError listing every :func:`preflight_problems` when ``config`` has a real sender and
    ``[delivery] preflight`` is on; nothing for the outbox and memory senders."""
    if not is_real_sender(config) or not config.delivery.preflight:
        return
    problems = preflight_problems(config)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"{config.source}: refusing to send real mail with the {config.delivery.sender} sender: "
            f"{len(problems)} problem(s) in the setup\n{lines}",
            hint='`nurture check` lists them too; the outbox sender (sender = "outbox") needs none of this',
        )
