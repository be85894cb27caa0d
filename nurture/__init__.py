"""nurture: information-only newsletters for B2B "someday customers".

The pipeline, one way: campaign file -> segment -> due (cadence) -> render -> throttle -> sender -> delivery
record; tracking hits and provider webhooks -> ``record_events()`` -> scoring -> reports. One package per stage
(``core``, ``store``, ``people``, ``plan``, ``checks``, ``compose``, ``deliver``, ``track``, ``web``, ``cli``; ``score``
and ``report`` for what comes next); ARCHITECTURE.md has the layers and one section per package.
"""

__version__ = "0.1.0"
