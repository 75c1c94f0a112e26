"""Fill the benchmark figures in the docs from ``bench/results/*.json``: numbers are generated,
never typed.

A figure in a markdown file is a marked region::

    <!-- bench: j("resnet18", "results", "z020", "fps") | .1f -->41.6<!-- /bench -->

The comment holds an expression and, after ``|``, a Python format spec (``.1f``, ``,``, ``.1%``,
``,.0f``; none: ``str``). The expression is arithmetic (``+ - * /``, parentheses, numbers) over

* ``j(FILE, KEY, ...)``: a value of ``bench/results/FILE.json``, following keys of objects and
  indices of lists; a key ``"*"`` maps over every element (a list results; ``"*f=v"`` over
  the elements whose field ``f`` is ``v``), a key
  ``"field=value"`` (or ``"f=v&g=w"``) picks the one element of a list whose fields equal those
  values;
* ``sum``, ``min``, ``max``, ``len``, ``abs`` of such lists or numbers.

Between the markers goes the formatted value; everything else in the file is left alone.
Markdown renders the comments as nothing, so the page reads as before.

Run ``python bench/render_docs.py`` after a benchmark has rewritten its JSON (it rewrites every
doc whose figures changed and lists them), ``--check`` to only list the figures that disagree
(exit status 1); ``tests/test_docs_numbers.py`` runs the check on every committed doc.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
#: The files whose figures are generated: the docs and the README.
DOC_GLOBS = ("docs/*.md", "README.md")

MARKER = re.compile(r"<!-- bench:(?P<expr>.*?)(?:\|(?P<fmt>[^|]*?))? -->(?P<value>.*?)"
                    r"<!-- /bench -->", re.S)

__all__ = ["RenderError", "Results", "evaluate", "render", "doc_paths", "main"]


class RenderError(ValueError):
    """A marker whose expression cannot be evaluated (the message names file, line and why)."""


class Results:
    """The benchmark JSON files, loaded on first use."""

    def __init__(self, directory: Path = RESULTS):
        self.directory = Path(directory)
        self._cache: dict[str, object] = {}

    def load(self, name: str):
        if name not in self._cache:
            path = self.directory / f"{name}.json"
            try:
                self._cache[name] = json.loads(path.read_text())
            except FileNotFoundError:
                raise RenderError(f"no benchmark results {path}") from None
        return self._cache[name]

    def get(self, name: str, *keys):
        return _walk(self.load(name), list(keys), [name])


def _walk(value, keys: list, where: list):
    for i, key in enumerate(keys):
        here = "/".join(map(str, where))
        if isinstance(key, str) and key.startswith("*"):
            items = list(value.values()) if isinstance(value, dict) else value
            if not isinstance(items, list):
                raise RenderError(f"{key!r} at {here}: not a list or object")
            if key != "*":  # "*field=value": only the elements that match
                conds = [c.split("=", 1) for c in key[1:].split("&")]
                items = [v for v in items if isinstance(v, dict) and
                         all(str(v.get(f)) == w for f, w in conds)]
            return [_walk(v, keys[i + 1:], where + [key]) for v in items]
        if isinstance(value, list) and isinstance(key, str) and "=" in key:
            conds = [c.split("=", 1) for c in key.split("&")]
            hits = [v for v in value if isinstance(v, dict) and
                    all(str(v.get(f)) == w for f, w in conds)]
            if len(hits) != 1:
                raise RenderError(f"{key!r} at {here}: {len(hits)} matches, need exactly one")
            value = hits[0]
        elif isinstance(value, list) and isinstance(key, int):
            if not -len(value) <= key < len(value):
                raise RenderError(f"index {key} at {here}: the list has {len(value)} items")
            value = value[key]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise RenderError(f"no key {key!r} at {here}")
        where = where + [key]
    return value


_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_FUNCS = {"sum": sum, "min": min, "max": max, "len": len, "abs": abs}


def evaluate(expr: str, results: Results):
    """Evaluate a marker's expression (see the module docstring); nothing else is allowed."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise RenderError(f"not an expression: {expr.strip()!r} ({e.msg})") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            args = [ev(a) for a in node.args]
            if node.func.id == "j":
                if not args or not all(isinstance(a, (str, int)) for a in args):
                    raise RenderError("j() takes a results file name and keys")
                return results.get(*args)
            if node.func.id in _FUNCS:
                return _FUNCS[node.func.id](*args)
        raise RenderError(f"not allowed in a bench marker: {ast.unparse(node)!r}")

    return ev(tree)


def _format(value, fmt: str | None) -> str:
    if fmt is None or not fmt.strip():
        return str(value)
    return format(value, fmt.strip())


def render(text: str, results: Results, *, name: str = "<doc>") -> tuple[str, list[str]]:
    """``(new_text, changes)``: ``text`` with every marked figure regenerated, and one line per
    figure whose value changed (``file:line: old -> new``)."""
    changes: list[str] = []

    def sub(m: re.Match) -> str:
        line = text.count("\n", 0, m.start()) + 1
        try:
            new = _format(evaluate(m.group("expr"), results), m.group("fmt"))
        except (RenderError, TypeError, ValueError, ZeroDivisionError) as e:
            raise RenderError(f"{name}:{line}: {m.group('expr').strip()}: {e}") from None
        if new != m.group("value"):
            changes.append(f"{name}:{line}: {m.group('value')!r} -> {new!r}")
        fmt = "" if m.group("fmt") is None else f"|{m.group('fmt')}"
        return f"<!-- bench:{m.group('expr')}{fmt} -->{new}<!-- /bench -->"

    return MARKER.sub(sub, text), changes


def doc_paths(root: Path = ROOT) -> list[Path]:
    return sorted(p for g in DOC_GLOBS for p in root.glob(g))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="only list the figures that disagree with the JSON (exit status 1)")
    ap.add_argument("files", nargs="*", type=Path, help="markdown files (default: docs, README)")
    args = ap.parse_args(argv)
    results = Results()
    stale = 0
    for path in args.files or doc_paths():
        text = path.read_text()
        new, changes = render(text, results, name=str(path.relative_to(ROOT)
                                                      if path.is_absolute() else path))
        for c in changes:
            print(c)
        stale += len(changes)
        if changes and not args.check:
            path.write_text(new)
    if args.check and stale:
        print(f"{stale} figure(s) disagree with bench/results/*.json: run "
              f"python bench/render_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
