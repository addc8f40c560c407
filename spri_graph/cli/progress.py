"""The progress reporter of ``spri synthesize`` and ``spri judge FILE``, on tqdm."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]


class _Lines:
    """A stream for tqdm that turns each in-place redraw into a line, for logs and pipes."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class Progress:
    """Records done out of a total, failures, rate and time left, on stderr.

    On a terminal, a tqdm bar redrawn in place; elsewhere (a log file, a pipe), one line
    every ``log_interval`` seconds while the run lasts. The rate is tqdm's: records per
    second, or seconds per record once a record takes longer than a second, so a slow
    run shows e.g. ``12.5s/record`` rather than ``0.0 records/s``.

    Example:
        >>> import io
        >>> with Progress(desc="judge", total=2, stream=io.StringIO()) as progress:
        ...     progress.update(1, failed=1)
        ...     progress.update(2, failed=1)
    """

    def __init__(
        self,
        *,
        desc: str,
        total: int | None = None,
        unit: str = "record",
        stream: TextIO | None = None,
        enabled: bool = True,
        log_interval: float = 30.0,
    ) -> None:
        from tqdm.std import tqdm

        stream = sys.stderr if stream is None else stream
        tty = bool(getattr(stream, "isatty", lambda: False)())
        self.failed = 0
        self.bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=stream if tty else _Lines(stream),
            disable=not enabled,
            dynamic_ncols=tty,
            mininterval=0.1 if tty else log_interval,
            delay=0.0 if tty else log_interval,
            miniters=1,
            leave=tty,
        )

    def update(self, done: int, *, failed: int | None = None, total: int | None = None) -> None:
        """Show ``done`` records finished (``failed`` of them failed) out of ``total``."""
        bar = self.bar
        if total is not None and total != bar.total:
            bar.total = total
        if failed is not None and failed != self.failed:
            self.failed = failed
            bar.set_postfix_str(f"{failed} failed", refresh=False)
        if done != bar.n:
            bar.update(done - bar.n)

    def close(self) -> None:
        """End the bar: a terminal keeps its last state on its own line, if anything finished.

        A bar with nothing done (e.g. a run stopped by bad input) is wiped, so an error
        message stands alone.
        """
        if self.bar.n == 0:
            self.bar.leave = False
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
