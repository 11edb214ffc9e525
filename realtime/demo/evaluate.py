"""`gradcam-eval`: how well each CAM method finds the animal, for the biased and the fair model.

Held-out scenes draw the background independently of the animal, so half
match the biased training set (elephant on savanna) and half are swapped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.demo.models import demo_model_paths
from realtime.engines.local import LocalEngine
from realtime.engines.providers import EngineOptions
from realtime.maps import metrics
from realtime.maps.methods import METHODS, compute_maps, normalise
from realtime.progress import Progress
from realtime.sources import scenes

BASELINES = ("random", "centre")


@dataclass(frozen=True)
class SceneScore:
    matching: bool  # background as in the biased training set
    correct: bool
    pointing: dict[str, bool]
    mass: dict[str, float]
    deletion: dict[str, float]
    insertion: dict[str, float]


@dataclass(frozen=True)
class Summary:
    """Means over a subset of scenes; per method (and baseline) where it applies."""

    scenes: int
    accuracy: float
    pointing: dict[str, float] = field(default_factory=dict)
    mass_inside: dict[str, float] = field(default_factory=dict)
    deletion: dict[str, float] = field(default_factory=dict)
    insertion: dict[str, float] = field(default_factory=dict)


def score_scene(
    engine: LocalEngine, scene: scenes.Scene, methods: Sequence[str], steps: int, rng: np.random.Generator
) -> SceneScore:
    size = (engine.info.input_height, engine.info.input_width)
    result = engine.run(scene.image[None], [[scene.label]])
    assert result.activations is not None

    def probability(batch: np.ndarray) -> np.ndarray:
        return engine.run(batch, [[scene.label]], need_gradients=False).probabilities[:, scene.label]

    saliency: dict[str, np.ndarray] = {}
    for method in methods:
        grads = None if result.gradients is None else result.gradients[0]
        raw = compute_maps(method, result.activations[0], grads, result.weights[0])
        saliency[method] = metrics.upsample(normalise(raw)[0], size)
    saliency["random"] = metrics.random_map(size, rng)
    saliency["centre"] = metrics.centre_gaussian(size)
    pointing, mass, deletion, insertion = {}, {}, {}, {}
    for name, sal in saliency.items():
        if name not in BASELINES:
            pointing[name] = metrics.pointing_hit(sal, scene.mask)
            mass[name] = metrics.mass_inside(sal, scene.mask)
        deletion[name], insertion[name] = metrics.deletion_insertion(scene.image, sal, probability, steps, rng)
    matching = scene.background == scene.label  # SAVANNA == ELEPHANT, SNOW == PENGUIN
    correct = int(result.logits[0].argmax()) == scene.label
    return SceneScore(matching, correct, pointing, mass, deletion, insertion)


def summarise(scores: Sequence[SceneScore]) -> Summary:
    if not scores:
        return Summary(0, float("nan"))

    def mean(values: Sequence[float | bool]) -> float:
        return float(np.mean(np.asarray(values, np.float64)))

    first = scores[0]
    return Summary(
        scenes=len(scores),
        accuracy=mean([s.correct for s in scores]),
        pointing={k: mean([s.pointing[k] for s in scores]) for k in first.pointing},
        mass_inside={k: mean([s.mass[k] for s in scores]) for k in first.mass},
        deletion={k: mean([s.deletion[k] for s in scores]) for k in first.deletion},
        insertion={k: mean([s.insertion[k] for s in scores]) for k in first.insertion},
    )


@dataclass(frozen=True)
class ModelReport:
    name: str
    all: Summary
    matching: Summary
    swapped: Summary


def evaluate(
    model: Path, name: str, n_scenes: int = 100, seed: int = 1000, steps: int = 16, methods: Sequence[str] | None = None
) -> ModelReport:
    engine = LocalEngine(model, EngineOptions(providers="cpu", warmup=1))
    usable = [m for m, spec in METHODS.items() if spec.usable(engine.provides) and not spec.against]
    methods = list(methods or usable)
    held_out = scenes.dataset(n_scenes, seed=seed, biased=False)
    rng = np.random.default_rng(seed)
    scores = [score_scene(engine, scene, methods, steps, rng) for scene in held_out]
    return ModelReport(
        name=name,
        all=summarise(scores),
        matching=summarise([s for s in scores if s.matching]),
        swapped=summarise([s for s in scores if not s.matching]),
    )


def markdown(reports: Sequence[ModelReport], n_scenes: int, steps: int) -> str:
    lines = [
        f"Held-out scenes: {n_scenes}, backgrounds drawn independently of the animal "
        f"(matching = as in the biased training set). Deletion/insertion: RISE, {steps} steps, "
        "deletion to zeros, insertion from a Gaussian-blurred image (sigma 5), class probability, trapezoid AUC. "
        "The explained class is the true animal. An insertion AUC that is the same for every method means "
        "the class probability did not move while pixels were inserted: a model that decides from the "
        "background colour finds it already in the blurred start image, whatever order the map gives.",
        "",
        "| model | accuracy, matching | accuracy, swapped |",
        "|---|---|---|",
    ]
    lines += [f"| {r.name} | {r.matching.accuracy:.1%} | {r.swapped.accuracy:.1%} |" for r in reports]
    for r in reports:
        lines += [
            "",
            f"**{r.name}** (all {r.all.scenes} scenes; mass inside also on matching scenes only)",
            "",
            "| method | pointing game | mass inside | mass inside, matching "
            "| deletion AUC (lower is better) | insertion AUC (higher is better) |",
            "|---|---|---|---|---|---|",
        ]
        for method in r.all.deletion:
            point = r.all.pointing.get(method)
            mass = r.all.mass_inside.get(method)
            mass_m = r.matching.mass_inside.get(method)
            cells = ["" if v is None else f"{v:.1%}" for v in (point, mass, mass_m)]
            lines.append(
                f"| {method} | {' | '.join(cells)} | {r.all.deletion[method]:.3f} | {r.all.insertion[method]:.3f} |"
            )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class EvalConfig:
    scenes: int = 100
    steps: int = 16
    seed: int = 1000
    output: Path | None = None


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: a whole number from {low} to {high}")
        return int(text)

    return parse


def parse_config(argv: Sequence[str] | None = None) -> EvalConfig:
    parser = argparse.ArgumentParser(prog="gradcam-eval", description=__doc__)
    parser.add_argument("--scenes", type=_count(1, 10_000), default=100, help="held-out scenes per model (default 100)")
    parser.add_argument(
        "--steps", type=_count(2, 256), default=16, help="deletion/insertion steps per curve (default 16)"
    )
    parser.add_argument("--seed", type=_count(0, 2**31), default=1000, help="seed of the held-out scenes")
    parser.add_argument("--output", type=Path, help="also write the markdown table here (.md)")
    return EvalConfig(**vars(parser.parse_args(argv)))


def run(config: EvalConfig) -> int:
    """Every demo model on held-out scenes; the table printed and, with --output, written (checked first)."""
    from realtime.demo.models import DemoModelsMissingError
    from realtime.files import OutputPathError, check_output_file, finish, new_partial

    try:
        if config.output is not None:
            check_output_file(config.output, "--output", (".md", ".txt"))  # before minutes of evaluation
        models = demo_model_paths()
    except (OutputPathError, DemoModelsMissingError) as exc:
        print(f"gradcam-eval: {exc}", file=sys.stderr)
        return 2
    progress = Progress(len(models))
    reports = []
    for name, path in models.items():
        with progress.step(
            f"{name}: {config.scenes} scenes x every method, {config.steps}-step deletion and insertion"
        ):
            reports.append(evaluate(path, name, config.scenes, config.seed, config.steps))
    text = markdown(reports, config.scenes, config.steps)
    print(text)
    if config.output is not None:
        config.output.parent.mkdir(parents=True, exist_ok=True)
        partial = new_partial(config.output)
        partial.write_text("# Demo models: where do they look?\n\n" + text, encoding="utf-8")
        finish(partial, config.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_config(argv))


if __name__ == "__main__":
    sys.exit(main())
