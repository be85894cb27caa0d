"""Who an owner is: the address a notice or digest goes to, and the language it is written in.

``prospects.owner`` is whatever the marketer's list says. An owner that looks like an e-mail address is used as it
is; otherwise ``[handoff] owners`` maps the name to an address. Nobody's prospects, and owners without an
address, go to ``[handoff] default_owner``. The language: ``[handoff] languages`` keyed by the owner as written
or by the address, else ``[handoff] language``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nurture.core.config import Config

_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


@dataclass(frozen=True)
class Recipient:
    """Where one owner's mail goes. ``address`` is "" when neither the owner nor the default has one."""

    owner: str
    address: str
    language: str
    display: str  # the owner as people call them (the name, or the address)


def recipient(config: Config, owner: str) -> Recipient:
    """The recipient for ``owner`` (a ``prospects.owner`` value, maybe "")."""
    h = config.handoff
    owner = (owner or "").strip()
    # An owner written as an address is its own address; a name is looked up; neither: the default owner.
    address = owner if _ADDRESS.fullmatch(owner) else (h.owners.get(owner, "") if owner else "")
    address = (address.strip() or h.default_owner.strip()).lower()
    language = h.languages.get(owner) or h.languages.get(address) or h.language
    return Recipient(owner, address, language if language in ("ja", "en") else "ja", owner or address)


def is_address(value: str) -> bool:
    return bool(_ADDRESS.fullmatch(value.strip()))
