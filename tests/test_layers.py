"""The rooms hold: house, bus, box office and the shared kernel never import the scanner firmware.

Walks every module's imports with `ast` (top-level and function-level alike) and fails on the
first import that crosses a layer, naming the file, line and module.
"""

import ast
from pathlib import Path

GATE = Path(__file__).resolve().parent.parent / "gate"

# which rooms each room may import (besides itself); anything else under gate/ is firmware or tools
ALLOWED = {
    "core": set(),
    "bus": {"core"},
    "boxoffice": {"core", "bus"},
    "config": {"core", "bus", "boxoffice"},
    "house": {"core", "bus", "config", "boxoffice"},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gate":
                for a in node.names:
                    yield node.lineno, f"gate.{a.name}"
            else:
                yield node.lineno, node.module


def _room_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "gate" or len(parts) == 1:
        return ""
    return parts[1] if (GATE / parts[1]).is_dir() else "<top>"


def layer_violations(gate_dir: Path = GATE):
    found = []
    for room, allowed in ALLOWED.items():
        for path in sorted((gate_dir / room).rglob("*.py")):
            for line, module in _imports(path):
                target = _room_of(module)
                if not target or target == room or target in allowed:
                    continue
                if module == "gate.__version__":
                    continue
                found.append(f"{path.relative_to(gate_dir.parent)}:{line}: {room} imports {module}")
    return found


def test_layers_house_bus_boxoffice_and_core_import_no_firmware():
    assert layer_violations() == []


def test_layers_a_crossing_is_caught(tmp_path):
    # the check itself must be able to fail: a house module importing the ticket store
    (tmp_path / "house").mkdir()
    (tmp_path / "house" / "bad.py").write_text("def f():\n    from gate.state.tickets import TicketStore\n")
    (tmp_path / "state").mkdir()
    for room in ALLOWED:
        (tmp_path / room).mkdir(exist_ok=True)
    found = layer_violations(tmp_path)
    assert len(found) == 1 and found[0].endswith("house/bad.py:2: house imports gate.state.tickets")
