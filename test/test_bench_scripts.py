"""The bench scripts are not run by the suite (they measure for minutes), so their imports of
the package are checked here: every ``from invdyn_ros... import NAME`` in ``bench/`` names a
module that exists and a NAME it has. A module that moves or a name that leaves a module then
fails here instead of in the next person's benchmark run."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / 'bench'
SCRIPTS = sorted(BENCH.glob('*.py'))


def _package_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import of the package, also inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('invdyn_ros'):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name, []) for a in node.names
                         if a.name.startswith('invdyn_ros'))
    return found


def test_the_bench_folder_was_found():
    assert len(SCRIPTS) > 15
    assert sum(len(_package_imports(p)) for p in SCRIPTS) > 30


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda p: p.name)
def test_bench_imports_resolve(script):
    for line, module, names in _package_imports(script):
        mod = importlib.import_module(module)
        for name in names:
            if not hasattr(mod, name):                 # a submodule imported by name
                try:
                    importlib.import_module(f'{module}.{name}')
                except ImportError:
                    pytest.fail(f'{script.name}:{line}: {module} has no {name}')
