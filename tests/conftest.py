from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = Path(os.environ.get("SPRI_REFERENCE", ROOT.parent / "shared" / "reference"))


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
