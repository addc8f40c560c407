"""How many threads llama.cpp runs on: every free core, one per forked worker.

At every step llama.cpp's threads wait for each other, so a thread without a core of its
own stalls them all: on a two-core machine that other work keeps busy, two threads run
several times slower than one (measured: 7-12 against 16-36 tokens per second), while on
an idle one they run about 1.5 times faster. So unless a thread count is set, a loaded
model measures how much CPU other work used while it ran (:class:`Contention`) and runs
its next completion on the cores left free, at least one.

A forked process runs its models on one thread (unless it sets another count after the
fork): forked processes are workers that share the cores (synthesis with ``workers=N``
runs N of them), and llama.cpp's threads come from libgomp, which hangs when a process
forked after its parent ran a team of threads starts one of its own.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

__all__ = ["Contention", "default_threads", "fixed_threads", "set_default_threads"]

_THREADS_ENV = "SPRI_LLAMA_THREADS"
# The count set with set_default_threads and the process that set it. A process forked
# from that one has another pid, so it counts as a forked worker until it sets its own.
_setting: tuple[int | None, int] = (None, os.getpid())


def _usable_cores() -> int:
    """Physical cores this process may run on (logical CPUs without SMT siblings)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def fixed_threads() -> int | None:
    """The thread count set for this process, or ``None`` when models choose their own.

    The count comes from :func:`set_default_threads`, else ``$SPRI_LLAMA_THREADS``; a
    forked process that has not set its own count since the fork runs on one thread.
    """
    threads, pid = _setting
    if pid != os.getpid():
        return 1
    if threads is not None:
        return threads
    env = os.environ.get(_THREADS_ENV, "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def default_threads() -> int:
    """Most threads llama.cpp uses for models that do not set ``n_threads``.

    What :func:`set_default_threads` set in this process, else ``$SPRI_LLAMA_THREADS``,
    else every physical core this process may run on (of which a model uses those that
    other work leaves free).

    Example:
        >>> default_threads() >= 1
        True
    """
    return fixed_threads() or _usable_cores()


def set_default_threads(threads: int | None) -> None:
    """Set the llama.cpp threads of local models this process loads from now on.

    A forked process starts with ``1``; set more there only if the parent never ran a
    local model on several threads (libgomp would hang). ``None`` restores the automatic
    choice (the free cores).

    Args:
        threads: Threads per loaded model, or ``None``.

    Raises:
        ValueError: If ``threads`` is not a positive integer or ``None``.
    """
    global _setting
    if threads is not None and (
        not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
    ):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    _setting = (threads, os.getpid())


def _busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (Linux), or ``None``."""
    try:
        with open("/proc/stat", "rb") as handle:
            fields = [int(value) for value in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle and waiting for I/O
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


class Contention:
    """Measures the cores other work keeps busy, while a model runs or waits.

    Between :meth:`start` and :meth:`stop` it takes the CPU time all cores spent busy,
    less this process's own, over the time that passed (Linux; elsewhere nothing is
    measured and every core counts as free).

    Args:
        cores: The most threads to use.
    """

    def __init__(self, cores: int) -> None:
        self.cores = cores
        self.others = 0.0
        """Cores other work used during the last measurement."""
        self._since: tuple[float, float, float] | None = None

    def start(self) -> None:
        """Start a measurement."""
        busy = _busy_seconds()
        self._since = None if busy is None else (time.monotonic(), busy, _own_seconds())

    def stop(self) -> None:
        """End the measurement started last, if it lasted long enough to tell."""
        if self._since is None:
            return
        started, busy, own = self._since
        elapsed, now = time.monotonic() - started, _busy_seconds()
        if now is not None and elapsed >= 0.05:
            self.others = max(0.0, (now - busy) - (_own_seconds() - own)) / elapsed
        self._since = None

    def threads(self) -> int:
        """Threads for the next run: the cores other work left free, at least one.

        A quarter of a core used by others is tolerated; more takes a core away.

        Example:
            >>> contention = Contention(2)
            >>> [contention.threads() for contention.others in (0.0, 0.2, 0.6, 1.0, 3.0)]
            [2, 2, 1, 1, 1]
        """
        return max(1, self.cores - max(0, math.ceil(self.others - 0.25)))
