"""The packages depend one way and their modules import no circle (read from the source with ``ast``).

* Every import, at module level or inside a function, points down
  ``lsg_deploy -> export -> {training, hardware} -> lsg_io``: ``training`` and ``hardware`` never
  import each other, nothing imports ``lsg_deploy``, and ``lsg_io`` imports the standard library
  only. ``hardware`` imports no torch at all (it runs in the Lava interpreter and on FPGA
  designers' machines).
* The modules' module-level imports form no cycle. An import under ``if TYPE_CHECKING:`` counts
  (a circle of types is still a circle); an import inside a function does not (it runs once both
  modules are loaded). Importing a submodule runs its package's ``__init__`` first, which is not
  counted as an edge.

Each check is a function of a repository root, run on the real one and on planted trees in
``tmp_path``, so each is seen to fail.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: each package and what it may import of the project's packages
MAY_IMPORT = {
    "lsg_deploy": {"lsg_deploy", "export", "training", "hardware", "lsg_io"},
    "export": {"export", "training", "hardware", "lsg_io"},
    "training": {"training", "lsg_io"},
    "hardware": {"hardware", "lsg_io"},
    "lsg_io": {"lsg_io"},
}
#: third-party packages a package must never import, at any level
NEVER = {"hardware": {"torch"}, "lsg_io": {"torch", "numpy"}}


def modules(root: Path) -> dict[str, Path]:
    """Every module of the packages under ``root``, by dotted name (a package by its own name)."""
    found = {}
    for package in MAY_IMPORT:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for every import in ``path`` (module ``name``);
    ``from a import b`` names ``a.b`` where that is a module of ``known``, else ``a``."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the module's package, up level - 1
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(package[:len(package) - child.level + 1] + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in known else base, child.lineno, top))
            visit(child, top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), True)
    return found


def wrong_way(root: Path) -> list[str]:
    """Every import that goes against the packages' order or imports what a package never may."""
    found = modules(root)
    problems = []
    for name, path in found.items():
        package = name.split(".")[0]
        for target, line, _ in imports(name, path, set(found)):
            top = target.split(".")[0]
            where = f"{path.relative_to(root)}:{line} imports {target}"
            if top in MAY_IMPORT and top not in MAY_IMPORT[package]:
                problems.append(f"{where} ({package} may import only {', '.join(sorted(MAY_IMPORT[package]))})")
            elif top in NEVER.get(package, ()):
                problems.append(f"{where} ({package} never imports {top})")
            elif package == "lsg_io" and top not in MAY_IMPORT and top not in sys.stdlib_module_names:
                problems.append(f"{where} (lsg_io imports the standard library only)")
    return problems


def cycle(root: Path) -> list[str]:
    """A cycle of module-level imports between the packages' modules, as ``[a, b, ..., a]``; [] if none."""
    found = modules(root)
    graph = {name: sorted({t for t, _, top in imports(name, path, set(found)) if top and t in found and t != name})
             for name, path in found.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = 1
        for target in graph[name]:
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                loop = visit(target, path + [target])
                if loop:
                    return loop
        state[name] = 2
        return []

    for name in graph:
        if name not in state:
            loop = visit(name, [name])
            if loop:
                return loop
    return []


def test_every_import_points_down_the_packages():
    assert wrong_way(ROOT) == []


def test_the_modules_import_no_circle():
    assert cycle(ROOT) == []


def test_the_walk_sees_every_package_and_both_kinds_of_import():
    found = modules(ROOT)
    assert {"lsg_deploy.cli", "export.fold", "training.data", "training.data.cifar", "hardware.graph",
            "lsg_io.files"} <= set(found)
    kinds = {(t, top) for t, _, top in imports("lsg_deploy.pipeline", found["lsg_deploy.pipeline"], set(found))}
    assert ("lsg_io.files", True) in kinds and ("training.data", True) in kinds  # `from lsg_io import files`
    assert ("training.ablate", False) in kinds  # inside a function


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in {**{f"{p}/__init__.py": "" for p in MAY_IMPORT}, **files}.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    return tmp_path


def test_a_planted_upward_or_sideways_import_is_found(tmp_path):
    root = _tree(tmp_path, {
        "lsg_deploy/cli.py": "from export import fold\nfrom lsg_io import files\n",
        "export/fold.py": "import hardware.graph\nfrom training import model\n",
        "hardware/graph.py": "import numpy\n\n\ndef f():\n    from training import model\n",  # in a function
        "hardware/costs.py": "from . import graph\n\n\ndef g():\n    import torch\n",
        "training/model.py": "from lsg_deploy.cli import main\n",
        "lsg_io/files.py": "import os\nimport numpy as np\n",
    })
    problems = wrong_way(root)
    assert sorted(p.split(" (")[0] for p in problems) == [
        "hardware/costs.py:5 imports torch", "hardware/graph.py:5 imports training.model",
        "lsg_io/files.py:2 imports numpy", "training/model.py:1 imports lsg_deploy.cli"], problems
    assert wrong_way(_tree(tmp_path / "clean", {"export/fold.py": "from hardware import graph\n",
                                                "hardware/graph.py": "from lsg_io import files\n",
                                                "lsg_io/files.py": "import os\n"})) == []


def test_a_planted_circle_is_found_and_a_function_level_import_breaks_it(tmp_path):
    files = {
        "training/config.py": "from training.models import ARCHITECTURES\n",
        "training/models.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                              "    from training.config import C\n",
        "training/loop.py": "from training import config\n",
    }
    assert cycle(_tree(tmp_path / "a", files)) == ["training.config", "training.models", "training.config"]
    files["training/models.py"] = "def build():\n    from training.config import C\n"
    assert cycle(_tree(tmp_path / "b", files)) == []
    relative = {"training/data/__init__.py": "from .digits import ENTRIES\n",
                "training/data/digits.py": "from . import records\n",
                "training/data/records.py": "from training.data import digits\n"}
    assert cycle(_tree(tmp_path / "c", relative)) == ["training.data.digits", "training.data.records",
                                                        "training.data.digits"]
