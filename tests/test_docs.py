"""The docs name only what exists: every file they point to, every
`pyvs` command and option they show, every `pyvs.x.y` they name; and the
README stays a page, with the test command CI reads."""
import glob
import importlib
import re
import shlex
from pathlib import Path

import pytest

from pyvs import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md"] + sorted((ROOT / "docs").glob("*.md"))
TREE = ("pyvs/", "csrc/", "scripts/", "tests/", "docs/", "benchmarks/", "examples/")
# Names the CHANGELOG gives for what is gone.
GONE = {"pyvs.quantize", "pyvs.selection", "pyvs.latency.ArrayConfig", "pyvs.dataflow.LayerTiming",
        "pyvs.nn.int8.quantize", "pyvs.nn.int8.requantize"}


def _text(path: Path) -> str:
    return path.read_text()


def _code_spans(text: str):
    """Inline code and the lines of fenced code blocks."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        yield from block.splitlines()
    yield from re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"```.*?```", "", text, flags=re.S))


def _expand(token: str):
    m = re.search(r"\{([^}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m.group(1).split(",") for x in _expand(token[:m.start()] + alt + token[m.end():])]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_file_a_doc_names_exists(doc):
    text, missing = _text(doc), []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):  # links and images, relative to the doc
        if target.startswith(("http://", "https://", "#")):
            continue
        if not (doc.parent / target.split("#")[0]).exists():
            missing.append(target)
    for span in _code_spans(text):
        for token in re.findall(r"[\w./{},*-]+", span):
            token = token.rstrip(".,")
            if token.startswith(TREE) and "/" in token:
                for path in _expand(token):
                    if not glob.glob(str(ROOT / path)):
                        missing.append(path)
    assert not missing, f"{doc.name} names files that do not exist: {sorted(set(missing))}"


def _subcommands():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_a_doc_shows_is_one_the_parser_knows(doc):
    commands, bad = _subcommands(), []
    lines = [ln.replace("\\\n", " ") for ln in re.sub(r"\\\n\s*", " ", _text(doc)).splitlines()]
    for line in lines:
        for m in re.finditer(r"(?:python -m pyvs|(?<![\w./-])pyvs)\s+([a-z]+)((?:\s+[^\s`|&;#]+)*)", line):
            name, rest = m.group(1), m.group(2)
            if name not in commands:
                if name in ("sweep", "run", "timing", "slack", "report", "demo") or m.group(0).startswith("python"):
                    bad.append(m.group(0))
                continue
            known = commands[name]._option_string_actions
            try:
                words = shlex.split(rest)
            except ValueError:
                words = rest.split()
            bad += [f"pyvs {name} {w}" for w in words if w.startswith("--") and w.split("=")[0] not in known]
    assert not bad, f"{doc.name} shows commands or options the parser does not know: {bad}"


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_name_a_doc_gives_exists(doc):
    names = {m for span in _code_spans(_text(doc)) for m in re.findall(r"\bpyvs(?:\.[A-Za-z_]\w*)+", span)}
    if doc.name == "CHANGELOG.md":
        names -= GONE
    missing = sorted(n for n in names if not _resolves(n))
    assert not missing, f"{doc.name} names Python objects that do not exist: {missing}"


def test_the_readme_is_a_page_with_the_two_commands():
    lines = _text(ROOT / "README.md").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    assert sum(ln.endswith("# tests") for ln in lines) == 1 and sum(ln.endswith("# main job") for ln in lines) == 1


def test_the_checker_finds_a_stale_name(tmp_path, monkeypatch):
    # The checks can fail: a doc naming a file, an option and an object that do not exist.
    doc = tmp_path / "x.md"
    doc.write_text("See `pyvs/nowhere.py` and [this](missing.md); run `pyvs sweep --no-such-option`; "
                   "call `pyvs.sweep.no_such_function`.\n")
    for test in (test_every_file_a_doc_names_exists, test_every_command_a_doc_shows_is_one_the_parser_knows,
                 test_every_python_name_a_doc_gives_exists):
        with pytest.raises(AssertionError):
            test(doc)
