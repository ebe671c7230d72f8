"""The checks `comfy node validate` (comfy-cli) runs before publishing to the registry, on every tracked Python
file: ruff's S102 (exec), S307 (eval) and E702 (several statements on one line with `;`), here with the standard
library's parser so that the test needs no linter."""
from __future__ import annotations

import ast
import io
import subprocess
import tokenize

from server_fixture import REPO


def _tracked_python_files() -> list:
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "*.py"], capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.splitlines() if line.strip() and (REPO / line).is_file()]


def _findings(source: str, name: str) -> list:
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval"):
            found.append(f"{name}:{node.lineno}: {'S102' if node.func.id == 'exec' else 'S307'} {node.func.id}()")
    depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.type == tokenize.OP and tok.string == ";" and depth == 0:
            found.append(f"{name}:{tok.start[0]}: E702 statements separated by ';'")
    return found


def test_the_checks_find_what_they_look_for():
    assert len(_findings("x = 1; y = 2\nexec('1')\neval('2')\nz = {'a': ';'}\n", "bad.py")) == 3


def test_no_exec_eval_or_semicolon_statements_in_the_pack():
    files = _tracked_python_files()
    assert any(p.name == "__init__.py" and p.parent == REPO for p in files)
    found = [f for p in files for f in _findings(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))]
    assert found == []
