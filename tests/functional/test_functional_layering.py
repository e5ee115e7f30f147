"""The functional core is pure: it imports nothing from the rest of the package and exports no
Modules (DESIGN.md: "functional imports nothing from the package")."""

import ast
import inspect
from pathlib import Path

import torch

import beyondmse.functional as F

FUNCTIONAL = Path(F.__file__).resolve().parent


def test_functional_imports_nothing_from_the_package():
    offenders = []
    for path in sorted(FUNCTIONAL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level >= 2 or (node.level == 0 and (node.module or "").split(".")[0] == "beyondmse"):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module or ''}")
            elif isinstance(node, ast.Import):
                offenders += [f"{path.name}: import {a.name}" for a in node.names if a.name.split(".")[0] == "beyondmse"]
    assert offenders == []
    assert len(list(FUNCTIONAL.glob("*.py"))) >= 7  # the scan saw the modules


def test_functional_exports_only_functions():
    for name in F.__all__:
        obj = getattr(F, name)
        assert not (inspect.isclass(obj) and issubclass(obj, torch.nn.Module)), name
        assert not isinstance(obj, torch.nn.Module), name
    assert callable(F.soft_rank) and not inspect.ismodule(F.soft_rank)
