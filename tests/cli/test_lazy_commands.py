"""The top-level group imports a command's module only when that command is asked for, and knows every command
that the modules define."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import nurture.cli
from nurture.cli.main import WHERE, all_commands


def test_every_command_module_is_registered():
    defined = {}
    for info in pkgutil.iter_modules(nurture.cli.__path__):
        module = importlib.import_module(f"nurture.cli.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            defined[command.name] = info.name
    assert defined == WHERE
    assert sorted(c.name for c in all_commands()) == sorted(WHERE)


def test_send_does_not_import_the_other_commands():
    probe = (
        "import sys\n"
        "from nurture.cli.main import main\n"
        "try:\n"
        "    main(['send', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('nurture.', 'pygal', 'openpyxl')))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert "nurture.cli.send" in loaded
    for elsewhere in ("nurture.cli.report", "nurture.cli.serve", "nurture.cli.demo", "nurture.web.app", "pygal"):
        assert elsewhere not in loaded, elsewhere
