"""The client contract is one leaf module: the client systems depend on it, not on each other.

Read from the source (ast), not from sys.modules: importing any system imports the package,
which imports them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import astranet.systems

SYSTEMS = Path(astranet.systems.__file__).parent
CLIENT_SYSTEMS = ("clock_sync", "prediction", "reconciliation", "interpolation")


def _imports(module: str) -> set[str]:
    tree = ast.parse((SYSTEMS / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_contract_imports_no_system_and_no_wire_message() -> None:
    imported = _imports("contract")
    assert not {name for name in imported if name.startswith("astranet.systems")}
    assert not {name for name in imported if name.startswith(("astranet.net", "astranet.client"))}


def test_client_systems_import_only_the_contract_of_each_other() -> None:
    for module in CLIENT_SYSTEMS:
        others = {f"astranet.systems.{m}" for m in CLIENT_SYSTEMS if m != module}
        assert _imports(module) & others == set(), module


def test_reconciliation_does_not_wrap_the_wire_snapshot() -> None:
    assert "astranet.net.messages" not in _imports("reconciliation")
    assert "astranet.net.messages" not in _imports("contract")
