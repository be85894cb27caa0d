"""The command line: parse -> call -> print. :mod:`nurture.cli.main` is the program (``nurture``)."""
