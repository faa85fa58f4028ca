"""The package's layering (pyproject.toml [tool.importlinter]) holds, bites, and leaves no import circle."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_contracts_are_kept(repo):
    p = _lint(repo)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 kept, 0 broken" in p.stdout


def test_an_upward_import_breaks_the_layers_with_its_chain(repo, tmp_path):
    # a copy of the package where scoring (low) reaches for the pipeline (high), through a lazy import
    shutil.copytree(repo / "emotion_fusion", tmp_path / "emotion_fusion", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(repo / "pyproject.toml", tmp_path)
    metrics = tmp_path / "emotion_fusion" / "scoring" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n\ndef _upward():\n    from emotion_fusion.pipeline import run\n    return run\n")
    p = _lint(tmp_path)
    assert p.returncode != 0
    assert "BROKEN" in p.stdout and "emotion_fusion.scoring.metrics -> emotion_fusion.pipeline" in p.stdout


def test_no_module_imports_itself_through_a_circle():
    graph = grimp.build_graph("emotion_fusion", exclude_type_checking_imports=True)
    cycles = []
    for m in sorted(graph.modules):
        for dep in graph.find_modules_directly_imported_by(m):
            if dep != m and graph.chain_exists(importer=dep, imported=m):
                back = graph.find_shortest_chain(importer=dep, imported=m)
                cycles.append(" -> ".join((m, *back)))
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("limit", [350])
def test_every_module_reads_in_one_sitting(repo, limit):
    long = {str(p.relative_to(repo)): n for p in (repo / "emotion_fusion").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > limit}
    assert not long, f"modules over {limit} lines: {long}"
