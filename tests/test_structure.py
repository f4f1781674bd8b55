"""The code's shape, kept by tests: no import cycles in pyvs, data flowing
one way along the pipeline, no long function without a stated reason; and
configuration settled once: the clock and the hardware's defaults only in
ArrayConfig (pyvs.hardware), timing-model names only inside pyvs.timing,
the sweep taking its experiment, result rows flattened only in
pyvs.results."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "pyvs"

# The pipeline, left to right: a module may import from its own step and
# the steps to its left, never from the right.
STEPS = [
    ["pyvs.checks", "pyvs.accumulator", "pyvs.files", "pyvs.distributed",  # shared facts, checks, scale-out,
     "pyvs.hardware", "pyvs.schedule"],                    # the hardware, its defaults, per-layer supplies
    ["pyvs.timing"],                                       # voltage -> error table
    ["pyvs.ops", "pyvs.reference"],                        # error table -> op
    ["pyvs.nn"],                                           # op -> layer -> model
    ["pyvs.models", "pyvs.data"],                          # networks and images
    ["pyvs.evaluate", "pyvs.dataflow"],                    # model -> evaluation, operands -> per-layer timing
    ["pyvs.latency", "pyvs.energy", "pyvs.costs", "pyvs.strategies"],  # what a point costs
    ["pyvs.results"],                                      # the result row and its files
    ["pyvs.experiment"],                                   # evaluation + costs -> result row
    ["pyvs.sweep", "pyvs.slack", "pyvs.schedule_search"],  # a grid of points; guard-band x voltage; joint search
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


# ---- configuration settled once -----------------------------------------------------

def _trees():
    for path in sorted(PKG.rglob("*.py")):
        yield path, ast.parse(path.read_text())


HARDWARE_NAMES = {"freq_ghz", "rows", "cols", "v_nominal", "vdd_nominal", "acc_bits"}


def test_the_clock_is_only_arraycfg_s():
    # No function of pyvs takes a clock of its own: the clock is ArrayConfig.freq_ghz.
    found = [f"{p.relative_to(ROOT)}:{a.lineno} {a.arg}" for p, tree in _trees() for a in ast.walk(tree)
             if isinstance(a, ast.arg) and a.arg in ("freq_ghz", "freq")]
    assert not found, "functions taking a clock beside ArrayConfig: " + ", ".join(found)


def _literal_defaults(tree):
    """(name, line, value) of every parameter or class field default that is a number literal."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args
            pairs = list(zip(args[len(args) - len(node.args.defaults):], node.args.defaults))
            pairs += [(a, d) for a, d in zip(node.args.kwonlyargs, node.args.kw_defaults) if d is not None]
            for a, d in pairs:
                if isinstance(d, ast.Constant) and isinstance(d.value, (int, float)):
                    yield a.arg, d.lineno, d.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and \
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, (int, float)):
            yield node.target.id, node.lineno, node.value.value


def test_hardware_defaults_live_in_one_place():
    found = [f"{p.relative_to(ROOT)}:{line} {name}={value}" for p, tree in _trees() if p.name != "hardware.py"
             for name, line, value in _literal_defaults(tree) if name in HARDWARE_NAMES]
    assert not found, "hardware defaults written outside pyvs/hardware.py: " + ", ".join(found)


def test_the_cpp_schema_mirrors_the_default_tile_height():
    import re
    from pyvs import hardware
    schema = (ROOT / "csrc" / "systolic_matmul.cpp").read_text()
    m = re.search(r"int rows=(\d+)", schema)
    assert m and int(m.group(1)) == hardware.ROWS, "the op's schema default must equal pyvs.hardware.ROWS"
    assert "mirrors pyvs.hardware.ROWS" in schema


def test_timing_model_names_are_decided_inside_pyvs_timing():
    # Outside pyvs.timing nothing compares against a model's name: it asks
    # the TimingSpec (needs_operands, what_errs, ...).
    names = {"event", "static", "event-uniform", "static-uniform"}
    found = []
    for p, tree in _trees():
        if "timing" in p.relative_to(PKG).parts[:1]:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                consts = [c.value for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                if any(c in names for c in consts):
                    found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not found, "timing-model names tested outside pyvs.timing: " + ", ".join(found)


def test_the_sweep_takes_an_experiment_a_grid_a_budget_and_a_folder():
    import inspect
    from pyvs.sweep import sweep
    params = list(inspect.signature(sweep).parameters)
    assert params == ["experiment", "grid", "budget", "out_dir", "meta"], params


def test_result_rows_are_flattened_only_in_pyvs_results():
    found = []
    for p, tree in _trees():
        if p.name == "results.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "row" \
                    and not node.args:
                found.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not found, "result rows flattened outside pyvs/results.py: " + ", ".join(found)
