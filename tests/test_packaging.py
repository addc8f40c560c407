"""The built distribution works on its own: sdist -> wheel -> a fresh virtualenv.

The wheel is built from the sdist (as ``python -m build`` does for a release), so a file left
out of either shows up here. It is installed without ``-e`` into a new virtualenv that sees the
dependencies already installed for the tests (through a ``.pth`` line naming this interpreter's
site-packages; ``.pth`` files there, such as the editable install's, are not processed), with
``--no-deps --no-index``: nothing is downloaded. The checks then run from an empty folder, so
the source tree cannot be imported by accident.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "spri_graph"


@dataclass(frozen=True)
class Installed:
    """A wheel installed into a fresh virtualenv."""

    wheel: Path
    sdist: Path
    python: Path
    bin: Path
    cwd: Path

    def run(self, *args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}"
        }
        return subprocess.run(
            [str(arg) for arg in args],
            cwd=self.cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def package_files() -> set[str]:
    """Every file of the package in the source tree, as paths inside the wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    pytest.importorskip("build", reason="the 'dev' extra installs build")
    pytest.importorskip("hatchling", reason="the 'dev' extra installs hatchling")
    root = tmp_path_factory.mktemp("packaging")
    dist = root / "dist"
    # sdist first, then the wheel from the sdist; --no-isolation builds with the installed
    # hatchling instead of downloading one.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = dist.glob("spri_graph-*.whl")
    (sdist,) = dist.glob("spri_graph-*.tar.gz")

    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    cwd = root / "elsewhere"
    cwd.mkdir()
    # The project's scripted chat model, copied beside the check script (not installed).
    shutil.copy(ROOT / "tests" / "fakes.py", cwd / "fakes.py")
    yield Installed(wheel=wheel, sdist=sdist, python=python, bin=bindir, cwd=cwd)


def test_the_wheel_holds_the_package_its_types_and_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(whl.read(metadata_name).decode())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = whl.read(entry_points).decode()
    assert "spri_graph/py.typed" in names
    # Every file of the package, code or data, made it into the wheel; nothing else did.
    assert package_files() <= names
    assert {n.split("/")[0] for n in names} == {"spri_graph", metadata_name.split("/")[0]}
    assert "spri = spri_graph.cli:main" in scripts
    assert {"local", "metrics", "ray", "server", "dev", "all"} <= set(
        metadata.get_all("Provides-Extra") or []
    )
    assert any(
        req.startswith("llama-cpp-python") and "extra == 'local'" in req
        for req in metadata.get_all("Requires-Dist") or []
    )
    with tarfile.open(installed.sdist) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "README.md", "spri_graph/py.typed", "langgraph.json"} <= members
    assert not any(m.startswith((".venv/", "dist/")) for m in members)


def test_spri_help_from_the_installed_script(installed: Installed) -> None:
    done = installed.run(installed.bin / "spri", "--help")
    assert done.returncode == 0, done.stderr
    for command in ("align", "judge", "agreement", "synthesize"):
        assert command in done.stdout


SCRIPTED_RUN = textwrap.dedent(
    """
    import importlib.metadata
    import pathlib

    import spri_graph
    from fakes import ScriptedChatModel
    from spri_graph import create_spri_graph

    print(pathlib.Path(spri_graph.__file__).resolve())
    print(importlib.metadata.version("spri-graph"))

    model = ScriptedChatModel(
        ["1. Be honest.", "[RESULT] 5", "Tell your lead this week.", "[RESULT] 4"]
    )
    graph = create_spri_graph(model, threshold=4).compile()
    out = graph.invoke({"query": "How do I tell my team I am burning out?"})
    assert out["principles"] == "1. Be honest.", out
    assert out["response"] == "Tell your lead this week.", out
    assert [c.score for c in out["principle_critiques"]] == [5]
    assert [c.score for c in out["response_critiques"]] == [4]
    print("ok", len(model.calls))
    """
)


def test_a_graph_runs_on_a_scripted_model_from_the_wheel(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", SCRIPTED_RUN)
    assert done.returncode == 0, done.stderr
    location, version, *result = done.stdout.split()
    # The package came from the wheel in the new virtualenv, not from the source tree.
    assert Path(location).is_relative_to(installed.python.parent.parent.resolve())
    assert not Path(location).is_relative_to(ROOT)
    assert installed.wheel.name.startswith(f"spri_graph-{version}-")
    assert result == ["ok", "4"]
