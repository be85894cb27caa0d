"""The default, safe sender: every message becomes ``<outbox>/<delivery id>-<campaign>-<item>.eml`` (e.g.
``42-mfg-insights-mfg-01.eml``: findable by campaign and item with ``ls``) and nothing leaves the machine.

The file is written to a temporary name in the same folder and renamed into place (``os.replace`` is atomic
on POSIX and Windows), so a reader never sees half a message and a crash leaves at most a stray ``.tmp``.
Naming the file after the delivery id (whose campaign and item never change) makes a retry overwrite its earlier
attempt instead of duplicating it. Names hold only ``A-Z a-z 0-9 . _ -``: anything else becomes ``_``.
The bytes are exactly what the SMTP sender would transmit (DKIM-signed when a key is configured), so any mail
client opens them and ``spamassassin < file.eml`` checks them.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from nurture.compose.message import DkimKey, OutgoingMessage, build_mime, message_id_for
from nurture.core.config import Config
from nurture.core.errors import SenderConfigError, TemporarySendError
from nurture.deliver.senders.base import Sender, SendResult

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(part: str) -> str:
    """A file-name part: safe characters only, no leading dot, at most 60 characters."""
    return _UNSAFE.sub("_", part).lstrip(".")[:60] or "_"


class OutboxSender(Sender):
    """Writes .eml files into ``folder``; ``provider_message_id`` is the file name."""

    name = "outbox"

    def __init__(self, folder: Path, dkim: DkimKey | None = None, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.dkim = dkim
        self.fsync = fsync

    @classmethod
    def from_config(cls, config: Config) -> OutboxSender:
        return cls(config.resolve(config.outbox.path), DkimKey.from_config(config))

    def open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SenderConfigError(
                f"[outbox] path {self.folder}: cannot create the folder: {exc.strerror}",
                hint="point [outbox] path at a writable folder",
            ) from None

    def path_for(self, delivery_id: int, campaign: str = "", item_key: str = "", message_id: str = "") -> Path:
        """``<delivery id>-<campaign>-<item>.eml`` (parts that are empty are left out). A mail that belongs to no
        delivery (id 0: the confirmation mails of /stop and /subscribe) adds its Message-ID's unique part, so two
        such mails never share a file (one would silently replace the other)."""
        parts = [str(delivery_id)] + [_safe(p) for p in (campaign, item_key) if p]
        if delivery_id <= 0 and message_id:
            parts.append(_safe(message_id.strip("<>").split("@", 1)[0]))
        return self.folder / ("-".join(parts) + ".eml")

    def send(self, msg: OutgoingMessage) -> SendResult:
        data = build_mime(msg, self.dkim)
        self.open()
        target = self.path_for(msg.delivery_id, msg.campaign, msg.item_key, msg.message_id)
        tmp_name = None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{msg.delivery_id}.", suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp_name, target)
        except OSError as exc:
            if tmp_name and os.path.exists(tmp_name):
                os.unlink(tmp_name)
            # A full disk or a permission problem: nothing was written, so trying again later is safe.
            raise TemporarySendError(f"outbox {target}: {exc.strerror or exc}") from None
        return SendResult(
            target.name, detail=msg.message_id or message_id_for(msg.delivery_id, msg.campaign, msg.from_address)
        )
