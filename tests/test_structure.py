"""The runtime package's shape: arrows point down, modules stay small, methods are chosen by data."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "realtime"
MAX_LINES = 300


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every realtime module this file imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n in known and n != "realtime"}


def test_realtime_has_no_import_cycle() -> None:
    found = modules()
    graph = {name: imports(path, set(found)) - {name} for name, path in found.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*trail[trail.index(name) :], name]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        state[name] = 1
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        visit(name, [])


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_runtime_never_picks_a_method_by_its_name() -> None:
    """What a method needs is data (cam.Method.needs_gradients); no code compares method names."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                names = [s for s in sides if isinstance(s, ast.Constant) and s.value in ("gradcam", "gradcam++")]
                if names:
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders


# realtime/export's stages, lowest first: a module imports only from its own rank or below
EXPORT_RANKS = (
    ("realtime.export.graph", "realtime.export", "realtime.export.messages"),  # the package's __init__: nothing
    ("realtime.export.ops",),
    (
        "realtime.export.preprocessing",
        "realtime.export.tokens",
        "realtime.export.int8.quantize",
        "realtime.export.int8.calibration",
        "realtime.export.fp16",
        "realtime.export.trt8",
        "realtime.export.triton_repo",
        "realtime.export.triton_python_model",
    ),
    ("realtime.export.config",),
    ("realtime.export.importers",),
    ("realtime.export.targets",),
    ("realtime.export.autodiff",),
    ("realtime.export.contract_graph", "realtime.export.checks"),
    ("realtime.export.assemble", "realtime.export.int8.stage", "realtime.export.int8", "realtime.export.variants"),
    ("realtime.export.pipeline",),
    ("realtime.export.cli_args",),
    ("realtime.export.cli",),
)


def _rank(module: str) -> int:
    best = None
    for rank, prefixes in enumerate(EXPORT_RANKS):
        for prefix in prefixes:
            covers = module == prefix or (module.startswith(prefix + ".") and prefix != "realtime.export")
            if covers and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{module} has no rank in EXPORT_RANKS: add it"
    return best[0]


def test_arrows_point_down_in_the_exporter_and_the_runtime_never_imports_it() -> None:
    found = modules()
    upward = []
    for name, path in found.items():
        targets = imports(path, set(found)) - {name}
        if not name.startswith("realtime.export"):
            upward += [f"{name} -> {t}" for t in targets if t.startswith("realtime.export")]
            continue
        for target in targets:
            if target.startswith("realtime.export") and _rank(target) > _rank(name):
                upward.append(f"{name} (rank {_rank(name)}) -> {target} (rank {_rank(target)})")
    assert not upward, upward


def test_the_runtime_never_imports_tensorflow_or_torch() -> None:
    heavy = ("tensorflow", "keras", "tf2onnx", "torch", "torchvision", "timm")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "export" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in heavy]
    assert not offenders, offenders
