"""Tracking: what happened to a mail after it left, named in one vocabulary and recorded through one door.

Owns:

- :mod:`~nurture.track.vocabulary` — event types, sources, :class:`NewEvent` (what a source hands in) and
  :class:`Recorded` (what recording did); no I/O;
- :mod:`~nurture.track.record` — :func:`record_events`, the only writer of the ``events`` table, with the
  prospect and delivery changes events imply, and the listeners called in the same transaction;
- :mod:`~nurture.track.buffer` — :class:`EventBuffer`, batched writes for the tracking server's hits;
- :mod:`~nurture.track.query` — :func:`list_events`, the event log read back;
- :mod:`~nurture.track.botdetect` — human / machine / unknown labels for opens and clicks (pure rules);
- :mod:`nurture.track.webhooks` — provider webhooks: verify, parse, normalise into :class:`NewEvent`.

May import :mod:`nurture.store` and :mod:`nurture.core`, nothing above them. A higher layer that must act on
events (scoring) registers a listener with :func:`add_listener`; this package never imports it.
"""

from nurture.track.buffer import EventBuffer
from nurture.track.query import list_events
from nurture.track.record import (
    Listener,
    add_listener,
    record_event,
    record_events,
    remove_listener,
    set_source_window,
)
from nurture.track.vocabulary import (
    BOUNCED,
    CLICKED,
    COMPLAINED,
    DEFERRED,
    DELIVERED,
    DOCUMENT_DOWNLOADED,
    DROPPED,
    FREQUENCY_CHANGED,
    MET,
    OFFLINE_TYPES,
    OPENED,
    PAUSED,
    REPLIED,
    SEMINAR_ATTENDED,
    SENT,
    SOURCES,
    SUPPRESSING,
    TYPES,
    UNKNOWN,
    UNSUBSCRIBED,
    NewEvent,
    Recorded,
    Source,
)

__all__ = [
    "BOUNCED",
    "CLICKED",
    "COMPLAINED",
    "DEFERRED",
    "DELIVERED",
    "DOCUMENT_DOWNLOADED",
    "DROPPED",
    "FREQUENCY_CHANGED",
    "MET",
    "OFFLINE_TYPES",
    "OPENED",
    "PAUSED",
    "REPLIED",
    "SEMINAR_ATTENDED",
    "SENT",
    "SOURCES",
    "SUPPRESSING",
    "TYPES",
    "UNKNOWN",
    "UNSUBSCRIBED",
    "EventBuffer",
    "Listener",
    "NewEvent",
    "Recorded",
    "Source",
    "add_listener",
    "list_events",
    "record_event",
    "record_events",
    "remove_listener",
    "set_source_window",
]
