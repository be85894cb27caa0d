"""The postal channel (a home for the postal issue): quarterly postal newsletters, counted in the same cadence as
mail; address labels and the printable issue as PDF, the print vendor's CSV, and the mailed/returned events.

May import (layers in pyproject.toml): ``checks``, ``compose``, ``plan``, ``people``, ``score``, ``track``,
``store`` and ``core``; not ``deliver`` or ``report``, its siblings on the same layer.
"""
