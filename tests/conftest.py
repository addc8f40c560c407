from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("SPRI_REFERENCE", ROOT.parent / "shared" / "reference"))

# Test modules whose tests share a module-scoped server, process pool or cache (named here).
# Under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``) each of these modules
# runs whole, in order, on one worker, so its server starts once per run; the other tests
# are handed out one at a time. (xdist's own ``xdist_group`` marks are not used: with
# pytest 9.2 and xdist 3.8 they are silently ignored, pytest-xdist#1386.)
SHARED_SERVER_MODULES = {
    "tests/test_langgraph_dev.py": "dev_server: a langgraph dev server",
    "tests/test_openai_server.py": "server_url: a llama_cpp.server",
    "tests/test_ray.py": "ray_local: a local Ray instance",
    "tests/test_packaging.py": "installed: the wheel built and installed in a virtualenv",
    "tests/test_judge_local.py": "cache_file: the CLI, graph and evaluator share gradings",
}


# One llama.cpp thread per core for each xdist worker: its threads wait for each other at
# every step, so two workers with two threads each on two cores run slower than with one.
# Subprocesses (the CLI, notebook kernels) inherit the setting.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("SPRI_LLAMA_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))


def reference_dir(name: str) -> Path:
    """A folder of the paper's reference data; skips the test when it is absent."""
    path = REFERENCE / name
    if not path.is_dir():
        pytest.skip(f"reference data not found at {path} (set SPRI_REFERENCE)")
    return path


@pytest.fixture(autouse=True)
def _no_default_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never pick up a developer's SPRI_MODEL or API keys."""
    monkeypatch.delenv("SPRI_MODEL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("LANGSMITH_API_KEY", raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the figures tests record with ``record_property("summary", line)``."""
    lines = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "summary"
    ]
    if lines:
        terminalreporter.section("reference figures")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, hand out the slow tests first.

    The slowest tests are the notebooks and the integration tests (the real local model, real
    servers); started last, one of them would leave the other worker idle at the end.
    """
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: 0 if is_slow(item) else 1)


def is_slow(item: pytest.Item) -> bool:
    """Notebooks, integration tests and tests on a shared server."""
    return (
        item.path.suffix == ".ipynb"
        or item.get_closest_marker("integration") is not None
        or item.nodeid.split("::", 1)[0] in SHARED_SERVER_MODULES
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup``: one work unit per test, or per module in SHARED_SERVER_MODULES."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedServerScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            module = nodeid.split("::", 1)[0]
            return module if scope == nodeid and module in SHARED_SERVER_MODULES else scope

    return SharedServerScheduling(config, log)
