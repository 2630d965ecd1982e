"""The layering the README's folder map promises, checked on the source:
the shells (``services/``) never import the trainer package, and the
learner's modules (``phaser/rl``) import each other without a cycle, lazy
imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at top level or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_services_never_import_the_trainer_package():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.split(".")[0] == "policy_trainer")
                 for p in (ROOT / "services").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_learner_modules_import_without_a_cycle():
    rl = ROOT / "phaser" / "rl"
    mods = {f"phaser.rl.{p.stem}": p for p in rl.glob("*.py") if p.stem != "__init__"}
    graph = {m: {d for d in _imports(p) if d in mods and d != m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path + [m, d])
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
