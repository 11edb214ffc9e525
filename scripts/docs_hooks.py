"""mkdocs hook: the reference pages' tables, generated from the code's own tables at build time, so they
cannot drift from it (mkdocs.yml: hooks). A page asks for one with a line `<!-- generated: NAME -->`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def methods() -> str:
    from realtime.maps.methods import METHODS

    rows = ["| method | what it weighs | needs from the graph |", "|---|---|---|"]
    for name, method in METHODS.items():
        needs = ", ".join(sorted(method.needs)) or "nothing extra (every graph)"
        rows.append(f"| `{name}` | {method.summary} | {needs} |")
    return "\n".join(rows)


def keys() -> str:
    from realtime.outputs.controls import KEYS

    rows = ["| key | what it does |", "|---|---|"]
    rows += [f"| `{key}` | {what} |" for key, what in KEYS.items()]
    return "\n".join(rows)


def ops() -> str:
    from realtime.export.ops import OPS

    rows = ["| op | derivative rule | gradient flows to | TensorRT parser | int8 role | notes |",
            "|---|---|---|---|---|---|"]
    for name in sorted(OPS):
        op = OPS[name]
        trt = {0: "no", 8.5: "8.5 and later", 8.6: "8.6 and later", 10: "10 and later"}[op.tensorrt]
        rule = "yes" if op.rule is not None else "no (forward only)"
        note = "; ".join(part for part in (op.tensorrt_note, "plumbing" if op.plumbing else "") if part)
        note = note.replace("|", "\\|")
        rows.append(f"| `{name}` | {rule} | {op.grad_inputs} | {trt} | {op.int8 or '-'} | {note} |")
    return "\n".join(rows)


def _help(parser: argparse.ArgumentParser) -> str:
    return "```text\n" + parser.format_help().rstrip() + "\n```"


def cli() -> str:
    from realtime.export.cli_args import build_parser as export_parser
    from realtime.image_cli import build_parser as image_parser
    from realtime.live.cli import build_parser as live_parser

    parts = []
    for title, make in (("gradcam-live", live_parser), ("gradcam-export", export_parser),
                        ("gradcam-image", image_parser)):  # fmt: skip
        parser = make()
        parser.prog = title
        parts.append(f"## {title}\n\n{_help(parser)}")
    return "\n\n".join(parts)


TABLES: dict[str, Callable[[], str]] = {"methods": methods, "keys": keys, "ops": ops, "cli": cli}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs' hook: each `<!-- generated: NAME -->` line replaced by its table."""

    def table(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise KeyError(f"no generated table {name!r}: one of {', '.join(TABLES)}")
        return TABLES[name]()

    return re.sub(r"^<!-- generated: ([a-z]+) -->$", table, markdown, flags=re.MULTILINE)
