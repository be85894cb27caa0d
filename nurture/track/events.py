"""Compatibility names for importers not yet switched to :mod:`nurture.track` (the lead removes this module once
``nurture.deliver.engine``, ``nurture.cli.events`` and ``nurture.people.events_import`` import from the package).

Every name here is the very object :mod:`nurture.track` exports (one listener registry, one ``NewEvent``).
"""

from nurture.track import (
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
    EventBuffer,
    Listener,
    NewEvent,
    Recorded,
    add_listener,
    list_events,
    record_event,
    record_events,
    remove_listener,
)

__all__ = [
    "BOUNCED", "CLICKED", "COMPLAINED", "DEFERRED", "DELIVERED", "DOCUMENT_DOWNLOADED", "DROPPED",
    "FREQUENCY_CHANGED", "MET", "OFFLINE_TYPES", "OPENED", "PAUSED", "REPLIED", "SEMINAR_ATTENDED", "SENT",
    "SOURCES", "SUPPRESSING", "TYPES", "UNKNOWN", "UNSUBSCRIBED",
    "EventBuffer", "Listener", "NewEvent", "Recorded",
    "add_listener", "list_events", "record_event", "record_events", "remove_listener",
]
