"""The package has no import cycle, and its modules form layers (LAYERS below: io/config -> models/tokenizer -> data
-> training -> eval/distillation -> finetuning/export -> runner -> report -> sweep -> api -> cli) that no import
runs up, counting imports inside functions too."""

import ast
from pathlib import Path

from helpers import REPO

SRC = REPO / "src" / "babyllama"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle_in_src():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    g = import_graph()
    assert "babyllama.errors" in g["babyllama.config.loader"]
    assert "babyllama.runner.plan" in g["babyllama.report.collect"]


# the layers, bottom first: a module may import its own layer and those below, never one above
LAYERS = [
    {"errors", "io", "special_tokens", "progress", "distributed"},
    {"config"},
    {"hardware", "losses", "runinfo", "tokenizer", "models", "regional"},
    {"data"},
    {"training"},
    {"eval", "distillation"},
    {"finetuning", "export", "generate"},
    {"runner"},
    {"report"},
    {"sweep"},
    {"api"},
    {"cli", "__main__", ""},  # "" is the package itself (its lazy attributes are the API)
]


def layer_of(module: str) -> int:
    top = module.removeprefix("babyllama").removeprefix(".").split(".")[0]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_no_import_runs_up_the_layers():
    assert upward_imports(import_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    assert upward_imports({"babyllama.config": {"babyllama.runner.plan"}}) == [
        "babyllama.config -> babyllama.runner.plan"]
    assert upward_imports({"babyllama.report.markdown": {"babyllama.runner.kinds"}}) == []


def test_the_report_does_not_import_torch():
    """report/ reads result files: importing it (as `babyllama report` and `status` do) loads no torch."""
    import subprocess
    import sys

    code = "import sys, babyllama.report.markdown; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
