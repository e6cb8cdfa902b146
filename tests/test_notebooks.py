"""The course notebooks (notebooks/*.ipynb): each runs top to bottom in quick mode, its set-up cell
does not touch the network where dlcourse imports, every override string in them composes, and
the committed files carry no outputs."""
from __future__ import annotations

import ast
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "scripts" / "run_notebooks.py")
run_notebooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_notebooks)

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = run_notebooks.notebooks()
CHAPTERS = sorted((ROOT / "docs" / "course").glob("[0-9][0-9]_*.md"))


def cells(path: Path, kind: str) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == kind]


def python_of(cell: str) -> str:
    """A code cell as plain Python (IPython's `%pip`, `!cmd` and `%%writefile` turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(cell)


def test_there_is_a_quick_start_and_a_notebook_per_chapter():
    names = [p.stem for p in NOTEBOOKS]
    assert names[0] == "00_quick_start"
    for number in {p.name[:2] for p in NOTEBOOKS} - {"00"}:
        assert any(c.name.startswith(number) for c in CHAPTERS), f"notebook {number} has no chapter"
    for path in NOTEBOOKS[1:]:  # each chapter notebook links its page of the course book, and the page links back
        page = next(c for c in CHAPTERS if c.name[:2] == path.name[:2])
        assert f"../docs/course/{page.name}" in "\n".join(cells(path, "markdown")), path.name
        assert f"../../notebooks/{path.name}" in page.read_text(), page.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"
    assert "colab.research.google.com/github/OWNER/dlcourse/blob/main/notebooks/" + path.name in nb.cells[0].source


# the set-up cell ------------------------------------------------------------------------------
def _guarded(tree: ast.Module) -> bool:
    """Every pip / shell call sits in `except ImportError:` of a `try: import dlcourse`."""
    allowed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(isinstance(s, ast.Import) and s.names[0].name == "dlcourse" for s in node.body):
            for handler in node.handlers:
                if isinstance(handler.type, ast.Name) and handler.type.id == "ImportError":
                    allowed |= {id(n) for s in handler.body for n in ast.walk(s)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
             and n.func.attr in ("run_line_magic", "system", "run_cell_magic", "getoutput")]
    return bool(calls) and all(id(c) in allowed for c in calls)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_installs_only_where_dlcourse_is_missing(path):
    setup = cells(path, "code")[0]
    assert "git+https://github.com/OWNER/dlcourse" in setup and 'os.environ.get("DLCOURSE_QUICK") == "1"' in setup
    assert _guarded(ast.parse(python_of(setup))), f"{path.name}: pip must run only when `import dlcourse` fails"


STUB = r'''
import socket, subprocess, sys
CALLS = []
def _pip(line):
    CALLS.append(("pip", line))
    sys.modules.pop("dlcourse", None)   # "installed": importable again
get_ipython().register_magic_function(_pip, "line", "pip")
_connect = socket.socket.connect
def _no_network(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "localhost", "::1"):
        CALLS.append(("connect", address))
    return _connect(self, address)
socket.socket.connect = _no_network
_popen = subprocess.Popen.__init__
def _record(self, *args, **kwargs):
    CALLS.append(("subprocess", args[0] if args else kwargs.get("args")))
    return _popen(self, *args, **kwargs)
subprocess.Popen.__init__ = _record
'''


def test_setup_cells_do_not_touch_the_network_when_dlcourse_imports(tmp_path):
    """Every notebook's set-up cell, run in one kernel with pip, sockets and subprocesses recorded: nothing;
    then once more with dlcourse made unimportable: the recorder sees the pip install (it is not blind)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(STUB)]
    nb.cells += [nbformat.v4.new_code_cell(cells(p, "code")[0]) for p in NOTEBOOKS]
    nb.cells += [nbformat.v4.new_code_cell("assert CALLS == [], CALLS"),
                 nbformat.v4.new_code_cell('sys.modules["dlcourse"] = None  # import dlcourse -> ImportError'),
                 nbformat.v4.new_code_cell(cells(NOTEBOOKS[0], "code")[0]),
                 nbformat.v4.new_code_cell('assert [c[0] for c in CALLS] == ["pip"] and "git+https" in CALLS[0][1], CALLS')]
    path = tmp_path / "setup.ipynb"
    nbformat.write(nb, path)
    run_notebooks.execute(path, workdir=tmp_path, quick=True, timeout=120)


# override strings -------------------------------------------------------------------------------
def _first(value: str) -> str:
    """One job of a multirun value: `a,b,c` -> a, `range(20)` -> 0 (commas inside brackets stay)."""
    if value.startswith("range("):
        return "0"
    depth = 0
    for i, ch in enumerate(value):
        depth += ch in "[({"
        depth -= ch in "])}"
        if ch == "," and depth == 0:
            return value[:i]
    return value


def command_lines(text: str) -> list[list[str]]:
    """The overrides of each `python train.py ...` in markdown or comments (one job of each sweep)."""
    found = []
    for m in re.finditer(r"python train\.py([^\n`]*)", text):
        args = shlex.split(m.group(1).split(" #")[0])
        if "--config-dir" in args or any("<" in a for a in args):
            continue
        found.append([f"{a.split('=', 1)[0]}={_first(a.split('=', 1)[1])}" for a in args if "=" in a])
    return found


def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


OVERRIDE = re.compile(r"^[+~]?[A-Za-z_][\w./]*=\S")


def code_overrides(source: str) -> list[list[str]]:
    """Literal override strings of each dlcourse.train/sweep/compose call (grid dicts: their first value) and
    each list of override strings (a budget such as ["trainer.max_epochs=15", ...])."""
    from dlcourse.api import overrides_of

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in (
                "train", "sweep", "compose") and isinstance(node.func.value, ast.Name) and node.func.value.id == "dlcourse":
            strings = []
            for arg in node.args:
                value = _literal(arg)
                if isinstance(value, str):
                    strings.append(value)
                elif isinstance(arg, ast.Dict):
                    for k, v in zip(arg.keys, arg.values):
                        key, val = _literal(k), _literal(v)
                        if isinstance(key, str) and val is not None:
                            val = val[0] if isinstance(val, (list, tuple)) and node.func.attr == "sweep" and val else val
                            strings += overrides_of([{key: val}])
            found.append(strings)
        elif isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            value = _literal(node)
            if value and all(isinstance(v, str) and OVERRIDE.match(v) for v in value):
                found.append(list(value))
    return found


def test_command_line_parser_and_code_scanner():
    assert command_lines("    python train.py -m experiment=xor_mlp 'seed=range(20)' model.hidden_sizes=[3,2]") == [
        ["experiment=xor_mlp", "seed=0", "model.hidden_sizes=[3,2]"]]
    assert code_overrides('dlcourse.sweep({"optim": ["sgd", "adam"]}, "trainer.max_epochs=2", f"x={y}")\n'
                          'B = ["dataset.per_class=50"] if Q else ["dataset.per_class=200"]') == [
        ["optim=sgd", "trainer.max_epochs=2"], ["dataset.per_class=50"], ["dataset.per_class=200"]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_override_in_the_notebook_composes(path, tmp_path, monkeypatch):
    import dlcourse

    monkeypatch.chdir(tmp_path)  # the notebooks' own modules (%%writefile) are written where they run
    text = "\n".join(cells(path, "markdown") + cells(path, "code"))
    sets = command_lines(text)
    for cell in cells(path, "code"):
        source = python_of(cell)
        for m in re.finditer(r"run_cell_magic\('writefile', '([\w.]+)', (.*)\)$", source, flags=re.M):
            (tmp_path / m.group(1)).write_text(ast.literal_eval(m.group(2)))
        sets += code_overrides(source)
    assert sets, f"{path.name}: no overrides found"
    for overrides in sets:
        dlcourse.compose(*overrides)


# execution ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_quick_mode(path, tmp_path):
    nb, seconds = run_notebooks.execute(path, out=tmp_path / path.name, workdir=tmp_path, quick=True, timeout=300)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 2, f"{path.name}: its figures should show inline ({images} images)"
    print(f"{path.name}: {seconds:.0f} s")


def test_a_run_in_a_kernel_shows_one_widget_bar_per_epoch_and_one_line_per_epoch(tmp_path):
    """Progress in Jupyter: tqdm.auto's widget (ipywidgets is in the notebook and dev extras), one bar an epoch,
    and the epoch lines as text: no flood of output, no carriage-return animation in the cell's text."""
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        'import dlcourse\n'
        'run = dlcourse.train("experiment=xor_mlp", "trainer.max_epochs=3", "trainer.val_every_n_epochs=1",\n'
        '                     "trainer.progress_bar=true", "trainer.summary=false", "figures.enabled=false", run_dir="run")')]
    path = tmp_path / "bar.ipynb"
    nbformat.write(nb, path)
    done, _ = run_notebooks.execute(path, workdir=tmp_path, quick=True, timeout=120)
    outputs = done.cells[0].outputs
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert len(widgets) == 3, outputs
    assert [line.split("  ")[0] for line in text.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "\r" not in text and len(outputs) <= 3 + 8, [o.output_type for o in outputs]
