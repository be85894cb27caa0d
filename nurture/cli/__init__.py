"""The command line: parse -> call -> print. :mod:`nurture.cli.main` is the program (``nurture``).

Owns :mod:`~nurture.cli.app` (the group, the shared options, the error boundary: a
:class:`~nurture.core.errors.NurtureError` becomes ``error: ...`` and its exit code, never a traceback),
:mod:`~nurture.cli.output` (JSON and the import verdict), one module per group of commands (``setup``,
``prospects``, ``campaigns``, ``send``, ``serve``, ``events``, ``demo`` with its ``workspace``), and
:mod:`~nurture.cli.main`, the only module that imports them all. Policy lives in the library, not here: a
command parses its arguments, calls one library function and prints what it returns.

May import every other package (the top layer, pyproject.toml). ``nurture --help`` stays fast: a command that
needs a heavy module only for itself (MJML and Jinja for ``check``, uvicorn for ``serve``) imports it inside the
command, with a comment saying so.
"""
