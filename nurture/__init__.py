"""nurture: information-only newsletters for B2B "someday customers".

The pipeline, one way: campaign file -> segment -> due (cadence) -> render -> throttle -> sender -> delivery
record; tracking hits and provider webhooks -> ``record_event()`` -> scoring -> reports. ARCHITECTURE.md has
one section per module.
"""

__version__ = "0.1.0"
