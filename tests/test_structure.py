"""The code's shape, kept by tests: no import cycles in pyvs, data flowing
one way along the pipeline, and no long function without a stated reason."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pyvs"

# The pipeline, left to right: a module may import from its own step and
# the steps to its left, never from the right.
STEPS = [
    ["pyvs.checks", "pyvs.accumulator", "pyvs.files", "pyvs.distributed"],  # shared facts, checks, scale-out
    ["pyvs.timing"],                                       # voltage -> error table
    ["pyvs.ops", "pyvs.reference"],                        # error table -> op
    ["pyvs.nn"],                                           # op -> layer -> model
    ["pyvs.models", "pyvs.data"],                          # networks and images
    ["pyvs.evaluate", "pyvs.dataflow"],                    # model -> evaluation, operands -> per-layer timing
    ["pyvs.latency", "pyvs.energy", "pyvs.costs", "pyvs.strategies"],  # what a point costs
    ["pyvs.results"],                                      # the result row and its files
    ["pyvs.experiment"],                                   # evaluation + costs -> result row
    ["pyvs.sweep", "pyvs.slack"],                          # a grid of points; guard-band x voltage
    ["pyvs.plots", "pyvs.report"],                         # results -> report
    ["pyvs.cli"],                                          # parse, call, print
]
MAX_LINES = 60  # longer functions carry a "# long: <reason>" comment on or above their def


def modules():
    """{dotted name: path} of every module of pyvs."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path):
    """Modules of pyvs that ``name`` imports, anywhere in the file (lazy
    imports inside functions included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    known = modules()
    # A module's own packages are imported with it whatever it says.
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in known and m != name and m not in ancestors}


def graph():
    return {name: imports(name, path) for name, path in modules().items()}


def step(name: str):
    for i, group in enumerate(STEPS):
        if any(name == g or name.startswith(g + ".") for g in group):
            return i
    return None


def test_no_import_cycles():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == "open":
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def faces(name):
    """Package faces and entry points, which may name anything they hand on."""
    return name in ("pyvs", "pyvs.nn", "pyvs.timing") or name.endswith("__main__")


def test_every_module_has_a_step():
    missing = [n for n in modules() if not faces(n) and step(n) is None]
    assert not missing, f"modules not placed on the pipeline in STEPS: {missing}"


def test_data_flows_one_way():
    backwards = [f"{a} -> {b}" for a, bs in graph().items() if not faces(a) for b in sorted(bs)
                 if step(b) is not None and step(b) > step(a)]
    assert not backwards, "imports against the pipeline: " + ", ".join(backwards)


@pytest.mark.parametrize("folder", ["pyvs", "scripts"])
def test_no_long_function_without_a_reason(folder):
    long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - node.lineno + 1
                reason = any("# long:" in lines[i - 1] for i in (first - 1, node.lineno) if i >= 1)
                if n > MAX_LINES and not reason:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 60 lines with no '# long:' reason: " + ", ".join(long)


def test_the_checker_sees_a_cycle(tmp_path, monkeypatch):
    # The cycle test can fail: two modules that import each other are found.
    pkg = tmp_path / "pyvs"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__), "PKG", pkg)
    assert graph()["pyvs.a"] == {"pyvs.b"} and graph()["pyvs.b"] == {"pyvs.a"}
    with pytest.raises(AssertionError, match="pyvs.a -> pyvs.b -> pyvs.a"):
        test_no_import_cycles()
