"""Which 8-bit dot products this CPU has, and so which int8 graphs it runs without losing accuracy.

On x86 without VNNI (SSE, AVX2, AVX-512 without VNNI), onnxruntime's u8 x s8 kernels add pairs
of products into 16-bit lanes (vpmaddubsw), which saturate: 255 * 127 * 2 > 32767. An int8 graph
made for VNNI then gives visibly worse maps there. The exporter asks `int8_target()` which form
to write, and the engine asks `int8_warning()` whether a loaded graph suits this CPU.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

VNNI = "vnni"  # u8 x s8 products with 8-bit weights: fastest where the CPU adds them in 32 bits
NO_VNNI = "no-vnni"  # u8 x u8 products (the kernels widen before adding): no saturation anywhere
ANY = "any"  # a graph whose int8 products are the same for both (no backward products: --int8-scope forward, convs)
INT8_TARGETS = {
    VNNI: "8-bit signed weights (u8s8 kernels): for CPUs with VNNI, AMX or Arm dot products",
    NO_VNNI: "8-bit unsigned weights (u8u8 kernels, no 16-bit saturation): for x86 CPUs without VNNI",
}
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo names
_NUMPY_VNNI = ("AVX512VNNI", "AVX512_CLX", "AVX512_ICL", "AVX512_SPR")  # numpy's names, on any OS


@dataclass(frozen=True)
class CpuInt8:
    """What this CPU does with 8-bit dot products."""

    name: str
    x86: bool
    vnni: tuple[str, ...]  # the VNNI-like features found, empty if none

    @property
    def saturates(self) -> bool:
        """u8 x s8 products lose accuracy here (x86 without VNNI)."""
        return self.x86 and not self.vnni

    @property
    def target(self) -> str:
        """The int8 form that is exact enough and fastest here."""
        return NO_VNNI if self.saturates else VNNI

    def describe(self) -> str:
        found = ", ".join(self.vnni) if self.vnni else ("no VNNI" if self.x86 else "not x86: no 16-bit saturation")
        return f"{self.name} ({found})"


def _cpuinfo() -> tuple[str, set[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", set()
    name, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not name:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def _numpy_vnni() -> set[str]:
    import importlib

    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        try:
            features = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return {name for name in _NUMPY_VNNI if features.get(name)}
    return set()


@functools.lru_cache(maxsize=1)
def detect() -> CpuInt8:
    """This machine's CPU, read once: /proc/cpuinfo's flags where there are some, numpy's otherwise."""
    name, flags = _cpuinfo()
    x86 = platform.machine().lower() in _X86
    found = [f for f in _VNNI_FLAGS if f in flags] if flags else ["avx512_vnni"] * bool(_numpy_vnni())
    vnni = tuple(found)
    return CpuInt8(name or platform.processor() or platform.machine(), x86, vnni)


def int8_target(asked: str = "auto") -> str:
    """The form to quantize for: `auto` is this CPU's; `vnni` or `no-vnni` when exporting for another machine."""
    return detect().target if asked == "auto" else asked


def target_reason(asked: str = "auto") -> str:
    """Why `int8_target(asked)` is what it is, in one phrase for the export's progress."""
    cpu = detect()
    if asked != "auto":
        return f"asked for with --int8-cpu (this is {cpu.describe()})"
    if cpu.saturates:
        return f"this {cpu.describe()} would saturate u8s8 products: the backward's weights are u8 (u8u8 kernels)"
    return f"this {cpu.describe()} adds 8-bit products without saturating"


def int8_warning(graph_target: str | None, path: str) -> str | None:
    """One line when an int8 graph made for VNNI is loaded where its products saturate; None when it suits.

    Graphs written before the target was recorded were all made the VNNI way (8-bit signed weights).
    """
    cpu = detect()
    if (graph_target or VNNI) == VNNI and cpu.saturates:
        return (
            f"warning: {path} was quantized for CPUs with VNNI; this {cpu.describe()} saturates its 8-bit "
            "products and the maps lose accuracy. Re-export it here (gradcam-export ... --int8) or with "
            f"--int8-cpu {NO_VNNI}"
        )
    return None
