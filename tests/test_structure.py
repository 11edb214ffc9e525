"""The package's shape: arrows point down, modules stay small, methods are chosen by data."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest


def test_runtime_never_imports_tensorflow() -> None:
    code = (
        "import sys, realtime, realtime.live.cli, realtime.live.start, realtime.engines.opening, realtime.image_cli;"
        "realtime.GradCam;"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


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
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            names |= submodules
            if not submodules <= known:  # `from package import module` depends on the module alone
                names.add(node.module)
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


# the runtime's parts, lowest first: a module imports only from its own rank or below. The package's own
# __init__ is the front door (it names the API, the methods and open_source), so it sits on top.
RUNTIME_RANKS = (
    (
        "realtime.contract",
        "realtime.files",
        "realtime.model_files",
        "realtime.quiet",
        "realtime.progress",
        "realtime.labels",
        "realtime.arguments",
        "realtime.timing",
        "realtime.data",
    ),
    ("realtime.sources",),
    ("realtime.engines",),
    ("realtime.maps",),
    ("realtime.view",),
    ("realtime.outputs",),
    ("realtime.demo",),
    ("realtime.live",),
    ("realtime.detections",),
    ("realtime.api", "realtime.image_cli"),
    ("realtime",),
)


# the exporter sits beside the runtime's upper floors: it may use the contract, sources (calibration
# frames), engines (its checks) and maps (metrics), never the view, outputs or the live loop
EXPORTER_MAY_IMPORT = 3  # the highest runtime rank realtime.export may import


# realtime/export's stages, lowest first: a module imports only from its own rank or below
EXPORT_RANKS = (
    ("realtime.export.graph", "realtime.export.messages"),
    ("realtime.export.ops",),
    (
        "realtime.export.preprocessing",
        "realtime.export.targets.tokens",
        "realtime.export.triton",
        "realtime.export.variants.int8.quantize",
        "realtime.export.variants.int8.calibration",
        "realtime.export.variants.fp16",
        "realtime.export.variants.trt8",
    ),
    ("realtime.export.config",),
    ("realtime.export.importers",),
    ("realtime.export.targets",),
    ("realtime.export.autodiff",),
    ("realtime.export.contract_graph", "realtime.export.checks"),
    ("realtime.export.assemble", "realtime.export.variants", "realtime.export.detect"),
    ("realtime.export.pipeline",),
    ("realtime.export.cli_args",),
    ("realtime.export.cli",),
    ("realtime.export",),
)


def _rank(module: str, ranks: tuple[tuple[str, ...], ...], package: str) -> int:
    """The rank of the longest prefix that covers `module`; a package's bare name covers only itself."""
    best = None
    for rank, prefixes in enumerate(ranks):
        for prefix in prefixes:
            covers = module == prefix or (module.startswith(prefix + ".") and prefix != package)
            if covers and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, (
        f"{module} has no rank: add it to {'EXPORT_RANKS' if 'export' in package else 'RUNTIME_RANKS'}"
    )
    return best[0]


def test_arrows_point_down_in_the_runtime_and_the_exporter() -> None:
    found = modules()
    upward = []
    for name, path in found.items():
        exporter = name.startswith("realtime.export")
        for target in imports(path, set(found)) - {name}:
            if target.startswith("realtime.export"):
                if not exporter:
                    upward.append(f"{name} -> {target}: the runtime never imports the exporter")
                elif _rank(target, EXPORT_RANKS, "realtime.export") > _rank(name, EXPORT_RANKS, "realtime.export"):
                    upward.append(f"{name} -> {target}: up the exporter's stages")
                continue
            rank = _rank(target, RUNTIME_RANKS, "realtime")
            limit = EXPORTER_MAY_IMPORT if exporter else _rank(name, RUNTIME_RANKS, "realtime")
            if rank > limit:
                upward.append(f"{name} -> {target} (rank {rank} above {limit})")
    assert not upward, "\n".join(sorted(upward))


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
