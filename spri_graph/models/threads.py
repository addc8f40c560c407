"""How many threads llama.cpp runs on: a fixed count, chosen once when a model loads.

A model that sets ``n_threads`` runs on that many threads. Otherwise the count is, in
order: what :func:`set_default_threads` set in this process, ``$SPRI_LLAMA_THREADS``, and
the physical cores this process may run on. A loaded model keeps its count.

A forked process runs its models on one thread (unless it sets another count after the
fork): forked processes are workers that share the cores (synthesis with ``workers=N``
runs N of them), and llama.cpp's threads come from libgomp, which hangs when a process
forked after its parent ran a team of threads starts one of its own.

At every step llama.cpp's threads wait for each other, so a thread without a core of its
own stalls them all: on a machine that other work keeps busy, fewer threads than cores
can run faster. Set ``SPRI_LLAMA_THREADS`` (or ``n_threads``) there.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["THREADS_ENV", "default_threads", "fixed_threads", "set_default_threads"]

THREADS_ENV = "SPRI_LLAMA_THREADS"
"""The environment variable that sets the llama.cpp threads of models without ``n_threads``."""

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
    """The thread count set for this process, or ``None`` when none was set.

    The count comes from :func:`set_default_threads`, else ``$SPRI_LLAMA_THREADS``; a
    forked process that has not set its own count since the fork runs on one thread.

    Example:
        >>> os.environ[THREADS_ENV] = "3"
        >>> fixed_threads()
        3
        >>> del os.environ[THREADS_ENV]
    """
    threads, pid = _setting
    if pid != os.getpid():
        return 1
    if threads is not None:
        return threads
    env = os.environ.get(THREADS_ENV, "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else None


def default_threads() -> int:
    """The llama.cpp threads of models loaded from now on that do not set ``n_threads``.

    What :func:`set_default_threads` set in this process, else ``$SPRI_LLAMA_THREADS``,
    else every physical core this process may run on.

    Example:
        >>> set_default_threads(2)
        >>> default_threads()
        2
        >>> set_default_threads(None)
    """
    return fixed_threads() or _usable_cores()


def set_default_threads(threads: int | None) -> None:
    """Set the llama.cpp threads of local models this process loads from now on.

    A forked process starts with ``1``; set more there only if the parent never ran a
    local model on several threads (libgomp would hang). ``None`` restores the default
    (``$SPRI_LLAMA_THREADS``, else the physical cores).

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
