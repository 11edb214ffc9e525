"""Node-for-node fingerprints of the exported graphs, to show that a refactor changed none of them.

    python scripts/graph_digests.py --json before.json            # on the old commit
    python scripts/graph_digests.py --json after.json --against before.json

Exports the eight torchvision and timm models of the exactness tests (seeded random weights; full
and pooled) and Keras VGG16 (random weights: full, pooled, int8, two layers, guided and both input
gradients), then hashes every node in order (op, attributes, and its inputs and outputs by what
they are: a graph input, a constant's content or another node's output), every initializer's
content, the outputs and metadata. Node and tensor names are left out: tf2onnx's change from one
run to the next. With --against, any graph whose
fingerprint differs is named with its first differing node, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KERAS_VARIANTS: dict[str, tuple[str, ...]] = {  # "keras_": torch's VGG16 is among the cases too
    "keras_vgg16_full": ("--gradients", "full"),
    "keras_vgg16_pooled": ("--gradients", "pooled"),
    "keras_vgg16_int8": ("--gradients", "pooled", "--int8", "--int8-cpu", "no-vnni"),
    "keras_vgg16_layers": ("--gradients", "full", "--layer", "block5_conv3", "--layer", "block4_conv3"),
    "keras_vgg16_guided": ("--gradients", "pooled", "--input-gradients", "guided"),
    "keras_vgg16_both": ("--gradients", "full", "--input-gradients", "both"),
}


def canonical_names(model: Any) -> dict[str, str]:
    """Tensor names that do not depend on what a converter called things: graph inputs by position,
    initializers by their content, node outputs by the node's position (contract outputs keep theirs).
    tf2onnx's names for the constants it merges change from run to run (same code, same seed)."""
    from onnx import numpy_helper

    names = {value.name: f"input{i}" for i, value in enumerate(model.graph.input)}
    for init in model.graph.initializer:
        content = hashlib.sha256(f"{init.data_type} {list(init.dims)}".encode())
        content.update(numpy_helper.to_array(init).tobytes())
        names[init.name] = f"const:{content.hexdigest()[:16]}"
    for i, node in enumerate(model.graph.node):
        for k, out in enumerate(node.output):
            if out and out not in names:
                names[out] = f"node{i}:{k}"
    for value in model.graph.output:
        names[value.name] = value.name
    return names


def node_lines(model: Any) -> list[str]:
    import onnx

    names = canonical_names(model)
    lines = []
    for node in model.graph.node:
        attributes = sorted(
            (a.name, str(onnx.helper.get_attribute_value(a)) if a.type != onnx.AttributeProto.TENSOR else
             hashlib.sha256(a.t.SerializeToString()).hexdigest())
            for a in node.attribute
        )  # fmt: skip
        inputs = [names.get(i, i) for i in node.input]
        outputs = [names.get(o, o) for o in node.output]
        lines.append(f"{node.domain}:{node.op_type} {inputs} -> {outputs} {attributes}")
    return lines


def fingerprint(path: Path) -> dict[str, Any]:
    import onnx

    model = onnx.load(str(path))
    digest = hashlib.sha256()
    lines = node_lines(model)
    for line in lines:
        digest.update(line.encode())
    names = canonical_names(model)
    for key in sorted(names[init.name] for init in model.graph.initializer):
        digest.update(key.encode())
    for value in model.graph.output:
        digest.update(value.SerializeToString())
    for prop in sorted(model.metadata_props, key=lambda p: p.key):
        if prop.key != "gradcam.int8_cpu":  # names the machine, not the graph
            digest.update(f"{prop.key}={prop.value}".encode())
    return {"nodes": len(lines), "digest": digest.hexdigest(), "lines": lines}


def export_all(folder: Path, only: Sequence[str]) -> dict[str, Path]:
    from realtime.export import cli
    from tests.helpers.optional import needs
    from tests.helpers.torch_models import CASES, build_model, export_onnx

    graphs: dict[str, Path] = {}
    for name, args in KERAS_VARIANTS.items():
        if only and name not in only:
            continue
        out = folder / f"{name}.onnx"
        # one process per Keras export, as a user runs it: tf2onnx numbers the constants it merges with a
        # counter that runs on across conversions in one process
        # and with a fixed string hash: tf2onnx picks among equal constants in set order
        argv = ["--weights", "random", "--seed", "0", *args, "--output", str(out), "--quiet"]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        command = [sys.executable, "-m", "realtime.export.cli", *argv]
        if subprocess.run(command, cwd=ROOT, env=env, check=False).returncode:
            raise SystemExit(f"export {name} failed")
        graphs[name] = out
    needs("torch")
    for case in CASES.values():
        if only and case.name not in only:
            continue
        source = export_onnx(build_model(case), folder / f"{case.name}_source.onnx", case.size)
        for gradients in ("full", "pooled"):
            out = folder / f"{case.name}_{gradients}.onnx"
            if cli.main(["--onnx", str(source), "--gradients", gradients, "--output", str(out), "--quiet"]) != 0:
                raise SystemExit(f"export {case.name} {gradients} failed")
            graphs[f"{case.name}_{gradients}"] = out
    return graphs


def compare(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    problems = []
    for name, old in before.items():
        new = now.get(name)
        if new is None:
            problems.append(f"{name}: not exported now")
        elif new["digest"] != old["digest"]:
            first = next(
                (i for i, (a, b) in enumerate(zip(old["lines"], new["lines"], strict=False)) if a != b),
                min(len(old["lines"]), len(new["lines"])),
            )
            problems.append(
                f"{name}: differs ({old['nodes']} -> {new['nodes']} nodes; first at node {first}: "
                f"{(old['lines'] + [''])[first][:160]!r} -> {(new['lines'] + [''])[first][:160]!r})"
            )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="write the fingerprints here")
    parser.add_argument("--against", type=Path, help="fingerprints of the old commit to compare with")
    parser.add_argument("--only", nargs="*", default=(), help="export only these (names as in the JSON)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        prints = {name: fingerprint(path) for name, path in export_all(Path(tmp), args.only).items()}
    partial = args.json.with_name(f".{args.json.name}.partial")
    partial.write_text(json.dumps(prints, indent=1))
    partial.replace(args.json)
    for name, p in prints.items():
        print(f"{name}: {p['nodes']} nodes {p['digest'][:16]}")
    if args.against is None:
        return 0
    problems = compare(prints, json.loads(args.against.read_text()))
    print("\n".join(problems) if problems else f"all {len(prints)} graphs node for node the same")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
