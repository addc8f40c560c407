"""The ``spri`` command run inside the test process.

For tests about what a command does (its output, exit code and files), not about its
process: the installed script's own error output is tested in tests/test_cli_align.py, and
signals and resumes run it as a subprocess in tests/test_synthesize_cli.py.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from spri_graph.cli import main


class Ran(NamedTuple):
    """How a command ended: its exit code and what it printed (unpacks as a tuple too)."""

    returncode: int
    stdout: str
    stderr: str


def spri(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    """Run ``spri ARGS`` in this process, as the installed script would end.

    A ``SystemExit`` (argparse's ``--help`` and usage errors) ends the run the way Python
    ends a process with it: ``None`` is 0, an integer is itself, anything else is 1.
    """
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return Ran(code, out.out, out.err)
