"""The public API: what ``spri_graph`` exports, what importing it does, who imports what.

Public means listed in the defining module's ``__all__`` (and no leading underscore). The
tests use only public names, and no module of the package imports another's private name.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pkgutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import spri_graph
from spri_graph import RefineLoop, add_refine_loop
from tests.conftest import ROOT

PACKAGE = ROOT / "spri_graph"
TESTS = ROOT / "tests"


def submodules() -> list[str]:
    """Every module of the package, by dotted name."""
    found = pkgutil.walk_packages([str(PACKAGE)], prefix="spri_graph.")
    return sorted(info.name for info in found)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def imported_names(path: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` for each ``from MODULE import NAME`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found += [(node.lineno, module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, "") for alias in node.names]
    return found


# --------------------------------------------------------------------------- exports


def test_all_is_sorted_unique_and_resolves() -> None:
    names = spri_graph.__all__
    assert len(set(names)) == len(names)
    assert not [name for name in names if is_private(name)]

    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert names == sorted(names, key=kind)
    for name in names:
        assert getattr(spri_graph, name) is not None, name


@pytest.mark.parametrize("module", submodules())
def test_each_module_lists_its_public_names(module: str) -> None:
    loaded = importlib.import_module(module)
    names = loaded.__all__
    assert isinstance(names, list) and len(set(names)) == len(names), module
    for name in names:
        assert not is_private(name) and hasattr(loaded, name), (module, name)


def test_extension_points_are_exported() -> None:
    from spri_graph.engine import steps
    from spri_graph.judges import absolute, base, rubric

    extension = {
        "JudgeSettings": base,
        "add_rubric_stage": rubric,
        "add_judgment_stage": absolute,
        "grading_step": base,
        "ModelCall": steps,
        "Spawn": steps,
        "Join": steps,
        "step_node": steps,
        "route_node": steps,
    }
    for name, module in extension.items():
        assert name in spri_graph.__all__, name
        assert getattr(spri_graph, name) is getattr(module, name), name
    assert {"RefineLoop", "add_refine_loop", "LoopSettings"} <= set(spri_graph.__all__)


# --------------------------------------------------------------------------- deprecated names


def test_a_renamed_name_warns_and_returns_the_new_object(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        spri_graph.DEPRECATED_NAMES, "RefineStage", ("spri_graph.engine.loop", "RefineLoop")
    )
    with pytest.warns(DeprecationWarning, match=r"spri_graph\.RefineStage is deprecated; use "):
        assert spri_graph.RefineStage is RefineLoop
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=r"use spri_graph\.RefineLoop$"):
        exec("from spri_graph import RefineStage", namespace)  # the old import line
    assert namespace["RefineStage"] is RefineLoop
    # Each read warns again: the old name is never stored on the package.
    with pytest.warns(DeprecationWarning):
        assert spri_graph.RefineStage is RefineLoop
    assert "RefineStage" not in dir(spri_graph)
    assert "RefineStage" not in spri_graph.__all__


def test_unknown_names_still_raise_attribute_error() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
            _ = spri_graph.no_such_name
        assert hasattr(spri_graph, "add_refine_loop") and add_refine_loop is not None


def test_every_deprecated_name_points_at_a_public_name() -> None:
    for old, (module, new) in spri_graph.DEPRECATED_NAMES.items():
        assert old not in spri_graph.__all__, old
        assert new in importlib.import_module(module).__all__, (old, module, new)


# --------------------------------------------------------------------------- imports


IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib, json, sys
    import llama_cpp
    from langgraph.graph import StateGraph

    compiled, loads = [], []
    compile_graph = StateGraph.compile

    def record_compile(self, *args, **kwargs):
        compiled.append(kwargs.get("name"))
        return compile_graph(self, *args, **kwargs)

    def refuse_load(self, *args, **kwargs):
        loads.append(kwargs.get("model_path"))
        raise RuntimeError("model load refused by the test")

    StateGraph.compile = record_compile
    llama_cpp.Llama.__init__ = refuse_load

    from spri_graph.models import loaded_llama_count

    for name in ["spri_graph", "spri_graph.studio", *sys.argv[1:]]:
        importlib.import_module(name)
    before_build = list(compiled)
    from spri_graph.studio import make_spri

    make_spri()
    print(json.dumps({
        "compiled": before_build,
        "after_build": compiled[len(before_build):],
        "loads": loads,
        "loaded": loaded_llama_count(),
    }))
    """
)


def test_importing_the_package_compiles_no_graph_and_loads_no_model() -> None:
    modules = submodules()
    assert {"spri_graph.studio", "spri_graph.cli.judge", "spri_graph.engine.steps"} <= set(modules)
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING, *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["compiled"] == []
    assert report["loads"] == [] and report["loaded"] == 0
    # The recording works: building a Studio graph compiles it (and still loads no model).
    assert report["after_build"] == ["spri"]


def unlisted(module: str, name: str) -> bool:
    """Whether ``from module import name`` names neither a listed name nor a submodule."""
    loaded = importlib.import_module(module)
    if name in loaded.__all__ or (name.startswith("__") and name.endswith("__")):
        return False
    return not (hasattr(loaded, "__path__") and importlib.util.find_spec(f"{module}.{name}"))


def import_problems(folder: Path) -> list[str]:
    """Imports of the package's private or unlisted names in the files of ``folder``."""
    problems = []
    for path in sorted(folder.rglob("*.py")):
        for line, module, name in imported_names(path):
            where = f"{path.relative_to(folder.parent)}:{line}: {module} {name}"
            parts = [part for part in module.lstrip(".").split(".") if part]
            if any(is_private(part) for part in parts) or is_private(name):
                problems.append(f"{where}: private")
            elif module.startswith("spri_graph") and name and unlisted(module, name):
                problems.append(f"{where}: not in {module}.__all__")
    return problems


def test_tests_import_only_public_names() -> None:
    assert import_problems(TESTS) == []


def test_no_module_imports_another_modules_private_name() -> None:
    # Nor a name its module does not list, nor a private name of another library.
    assert import_problems(PACKAGE) == []


def test_the_scans_catch_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from spri_graph.engine.steps import _hidden\n"
        "from spri_graph._impl import thing\n"
        "import spri_graph.models as models\n"
    )
    found = imported_names(sample)
    assert found == [
        (1, "spri_graph.engine.steps", "_hidden"),
        (2, "spri_graph._impl", "thing"),
        (3, "spri_graph.models", ""),
    ]
    assert [is_private(name) for _, _, name in found] == [True, False, False]
    assert is_private("_impl") and not is_private("__version__")
    assert unlisted("spri_graph.judges.pairwise", "ORDERS")
    assert not unlisted("spri_graph.judges.pairwise", "create_pairwise_judge")
    assert not unlisted("spri_graph", "studio") and not unlisted("spri_graph", "__version__")
    assert [problem.split(": ", 1)[1] for problem in import_problems(tmp_path)] == [
        "spri_graph.engine.steps _hidden: private",
        "spri_graph._impl thing: private",
    ]
