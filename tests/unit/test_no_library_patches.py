"""Libraries are extended at their seams (subclasses selected by configuration), never patched:
no module of ours assigns to an attribute of celery, kombu, redis, flower or billiard, or of
anything imported from them."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.processes import REPO_ROOT

LIBRARIES = ("celery", "kombu", "redis", "flower", "billiard")
OUR_CODE = ("internal", "pkg", "services", "bench", "tests")


def library_names(tree: ast.Module) -> set[str]:
    """Names a module binds to a library's modules, classes or functions."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def patches_in(source: str) -> list[int]:
    """Line numbers where ``source`` assigns to (or setattr()s) a library object's attribute."""
    tree = ast.parse(source)
    names = library_names(tree)
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and node.args
        ):
            targets = [ast.Attribute(value=node.args[0], attr="?", ctx=ast.Store())]
        for target in targets:
            if isinstance(target, ast.Attribute) and root_name(target) in names:
                lines.append(node.lineno)
    return lines


def test_the_check_sees_a_patch() -> None:
    patched = "from kombu.transport import redis as r\nr.Channel._create_client = None\n"
    assert patches_in(patched) == [2]
    assert patches_in("import celery.app\ncelery.app.x = 1\n") == [2]
    assert patches_in("from kombu import Q\nsetattr(Q, 'x', 1)\n") == [2]
    assert patches_in("from kombu import Q\nclass Mine(Q):\n    x = 1\n") == []


def test_no_module_of_ours_patches_a_library() -> None:
    found = {
        str(path.relative_to(REPO_ROOT)): lines
        for folder in OUR_CODE
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if (lines := patches_in(Path(path).read_text()))
    }
    assert found == {}, f"assignments to a library's attributes: {found}"
