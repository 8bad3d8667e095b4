"""Reading a module's own text, for tests that check which names a module spells out."""

import ast
from pathlib import Path


def string_literals(path: Path) -> list[str]:
    """The string constants of a Python module, docstrings left out."""
    tree = ast.parse(Path(path).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
        and isinstance(node.body[0], ast.Expr)
    }  # fmt: skip
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings]  # fmt: skip
