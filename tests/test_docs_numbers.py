"""Benchmark figures in the docs are generated from ``bench/results/*.json``
(``bench/render_docs.py``): a committed doc whose figure disagrees with its JSON fails here."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _renderer():
    spec = importlib.util.spec_from_file_location("render_docs", ROOT / "bench" / "render_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rd = _renderer()
DOCS = rd.doc_paths(ROOT)


@pytest.mark.parametrize("path", DOCS, ids=[str(p.relative_to(ROOT)) for p in DOCS])
def test_committed_figures_match_the_json(path):
    text = path.read_text()
    new, changes = rd.render(text, rd.Results(ROOT / "bench" / "results"),
                             name=str(path.relative_to(ROOT)))
    assert not changes, ("figures disagree with bench/results/*.json; run "
                         "`python bench/render_docs.py`:\n" + "\n".join(changes))
    assert new == text


def test_performance_page_is_generated():
    text = (ROOT / "docs" / "performance.md").read_text()
    assert text.count("<!-- bench:") >= 60
    # the figures the issue found stale or typed are generated now
    for expr in ('j("resnet18", "results", "z020", "gops") | .0f',
                 'j("resnet18", "results", "base8_z020", "cycles") | ,',
                 'j("resnet18", "speedup", "z020") | .2f'):
        assert f"<!-- bench: {expr} -->" in text, expr


@pytest.fixture
def results(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({
        "x": {"fps": 41.644, "cycles": 2401299},
        "layers": [{"layer": "a", "where": "accel", "c": 3},
                   {"layer": "b", "where": "cpu"},
                   {"layer": "c", "where": "accel", "c": 4}],
        "named": {"MSQ (W4A4)": {"fps": 21.3}}}))
    return rd.Results(tmp_path)


def test_render_fills_and_reports_changes(results):
    text = ("fps <!-- bench: j(\"b\", \"x\", \"fps\") | .1f -->40.0<!-- /bench --> and "
            "<!-- bench: j(\"b\", \"x\", \"cycles\") | , -->2,401,299<!-- /bench -->")
    new, changes = rd.render(text, results, name="t.md")
    assert new == text.replace("40.0", "41.6")
    assert changes == ["t.md:1: '40.0' -> '41.6'"]
    again, none = rd.render(new, results)
    assert again == new and none == []


@pytest.mark.parametrize("expr, value", [
    ('j("b", "x", "fps") / j("b", "named", "MSQ (W4A4)", "fps")', 41.644 / 21.3),
    ('sum(j("b", "layers", "*where=accel", "c"))', 7),
    ('len(j("b", "layers"))', 3),
    ('j("b", "layers", "layer=c", "c") * 2 - 1', 7),
    ('max(j("b", "layers", "*where=accel", "c")) + -min(1, 2)', 3),
    ('j("b", "layers", -1, "layer")', "c"),
])
def test_expressions(results, expr, value):
    assert rd.evaluate(expr, results) == pytest.approx(value) if not isinstance(value, str) \
        else rd.evaluate(expr, results) == value


@pytest.mark.parametrize("expr, why", [
    ('j("b", "x", "nope")', "no key 'nope'"),
    ('j("nothere", "x")', "no benchmark results"),
    ('j("b", "layers", "where=accel", "c")', "2 matches"),
    ('__import__("os")', "not allowed"),
    ('j("b", "x").keys()', "not allowed"),
    ('j("b", "x", "fps") ** 2', "not allowed"),
])
def test_bad_markers_are_named(results, expr, why):
    with pytest.raises(rd.RenderError, match=why.replace("(", r"\(").replace("*", r"\*")):
        rd.render(f"a\n<!-- bench: {expr} -->1<!-- /bench -->", results, name="t.md")
