"""Child processes of a shifted test session: the same clock shift from the interpreter's start.

Python imports ``sitecustomize`` at start-up from the first folder on ``sys.path`` that has one; the test session
puts this folder first on the child's ``PYTHONPATH`` (see ``__init__.py`` beside this file for the why and the how).
"""

import importlib.machinery
import importlib.util
import os
import sys

_seconds = os.environ.get("_NURTURE_TEST_CLOCK_SHIFT_SECONDS")
if _seconds:
    import time

    import time_machine

    time_machine.travel(time.time() + int(_seconds), tick=True).start()

# This file hides any sitecustomize further down the path (Debian's python3 ships one): run that one too.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
)
if _spec is not None and _spec.loader is not None:
    _shadowed = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_shadowed)
