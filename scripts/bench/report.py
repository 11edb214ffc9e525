"""The benchmark's report: goals from the figures, and the markdown for docs/benchmarks.md."""

from __future__ import annotations

from typing import Any

from scripts.bench import int8, real_world
from scripts.bench.drawing import TRACKING_CLIPS
from scripts.bench.graphs import GRAPHS, INT8_VARIANTS
from scripts.bench.timing import goal


def _layer_goals(layers: dict[str, Any]) -> dict[str, str]:
    if "block4_conv3" not in layers:
        return {}
    return {
        "Grad-CAM at block4_conv3 <= 1.25x forward-only": goal(layers["block4_conv3"]["ratio"], 1.25),
        "Guided Grad-CAM to the input <= 2.2x forward-only (the graph it needs: --gradients pooled)": goal(
            layers["guided_pooled"]["ratio"], 2.2
        )
        + f"; with the full gradients at block5_conv3 too: {layers['guided']['ratio']:.3f}x",
    }


def int8_goals(results: dict[str, Any]) -> dict[str, str]:
    """The int8 form chosen for this CPU keeps the demo's maps and classes."""
    demo = results["fair demo model"]
    chosen = demo["forms"][demo["chosen"]]
    return {
        f"int8 ({demo['chosen']}, chosen on {demo['cpu']}) map correlation >= 0.995 on the demo scenes": goal(
            chosen["map_correlation"], 0.995, below=False
        ),
        "int8 top-1 agreement = 1 on the demo scenes": goal(chosen["top1_agreement"], 1.0, below=False),
    }


def goals(report: dict[str, Any]) -> dict[str, str]:
    """Every target of the issues, met or MISSED, from one run's figures."""
    cost, rss, pipe = report["model_cost"]["batch1"], report["session_rss"], report["pipeline"]
    onnx_goals = {
        f"{name} {graph} <= 1.03x forward-only (batch 1)": goal(row[graph]["ratio"], 1.03)
        + f"; re-reading its backward weights alone: {row['floor'][graph]['ratio_floor']:.3f}"
        for name, row in report["onnx_models"].items()
        for graph in ("pooled", "full")
    }
    vgg16 = {
        "pooled <= 1.03x forward-only (batch 1)": goal(cost["pooled"]["ratio"], 1.03)
        + f"; re-reading its backward weights alone: {report['backward_floor']['pooled']['ratio_floor']:.3f}",
        "full <= 1.15x forward-only (batch 1)": goal(cost["full"]["ratio"], 1.15)
        + f"; re-reading its backward weights alone: {report['backward_floor']['full']['ratio_floor']:.3f}",
        "session RSS full <= 1.15x forward-only": goal(rss["full"]["ratio"], 1.15),
        "seed's method >= 5x slower than the full graph": goal(report["seed"]["speedup"], 5.0, below=False),
        "export <= 35 s, self-check included": goal(max(e["seconds"] for e in report["export"].values()), 35.0),
        "self-check <= 5 s": goal(max(e["stages"].get("self-check", 0.0) for e in report["export"].values()), 5.0),
        "export peak RSS <= 5 GB": goal(max(e["peak_rss_mb"] for e in report["export"].values()) / 1024, 5.0),
        "display rate >= 0.95 x 1/model time": goal(pipe["display_vs_model_rate"], 0.95, below=False),
        "pre+post+drawing <= 3 ms per 640x480 frame (CPU time)": goal(pipe["pre_post_draw_cpu_ms"], 3.0),
        "int8 pooled <= 40 ms per frame": goal(report["int8"]["pooled_int8"]["ms"], 40.0),
        "camera-rate display >= 28 FPS from a 30 FPS source": goal(
            report["camera_rate"]["display_fps"], 28.0, below=False
        ),
        "flow + warp <= 2 ms per displayed frame (CPU time)": goal(report["camera_rate"]["flow_warp_cpu_ms"], 2.0),
        **{
            f"{clip}: tracking error warped <= 0.5x stale at 5 FPS": goal(
                report["tracking"][f"{clip} 5 FPS"]["tracking_ratio"], 0.5
            )
            for clip in TRACKING_CLIPS
        },
        **{
            f"{clip}: raw centroid distance warped <= 0.5x stale at 5 FPS": goal(
                report["tracking"][f"{clip} 5 FPS"]["raw_ratio"], 0.5
            )
            for clip in TRACKING_CLIPS
        },
        "static scene: warped no worse than stale": goal(
            report["tracking"]["static"]["raw_warped_px"], report["tracking"]["static"]["raw_stale_px"] + 0.5
        ),
        "int8 pooled >= 3x faster than fp32 pooled": goal(report["int8"]["pooled_speedup"], 3.0, below=False),
        **int8_goals(report["int8_cpu"]),
        **real_world.goals(report["real_world"]),
        "gradcam-live on int8 >= 20 FPS end to end": goal(report["int8_pipeline"]["display_fps"], 20.0, below=False),
        "int8 quantization <= 120 s": goal(max(e["seconds"] for e in report["int8_export"].values()), 120.0),
        "int8 quantization peak RSS <= 6 GB": goal(
            max(e["peak_rss_mb"] for e in report["int8_export"].values()) / 1024, 6.0
        ),
        "latency <= 1.5x model time": goal(pipe["latency_vs_model"], 1.5),
        "soak RSS growth < 20 MB": goal(report["soak"]["growth_mb"], 20.0),
        "browser clients cost < 5% of the loop's display rate (model-bound)": goal(
            report["browser_load"]["model_rate"]["drop"], 0.05
        ),
        "browser clients cost < 5% of the loop's display rate (30 FPS demo)": goal(
            report["browser_load"]["camera_rate_demo"]["drop"], 0.05
        ),
        **{
            f"side by side, {name}: display >= 0.95 x min(source rate, 1/(sum of model times))": goal(
                p["display_vs_bound"], 0.95, below=False
            )
            for name, p in report["side_by_side"].items()
        },
        "4 sources in one call no slower than 4 calls": goal(report["batching"]["ratio"], 1.0),
        **_layer_goals(report["layers"]),
    }
    if report["quick"]:  # the goals are VGG16's; the small architecture's figures only show the script runs
        vgg16 = {k: "n/a (--quick measures the small demo architecture)" for k in vgg16}
    return {**onnx_goals, **vgg16}


def _run_line(r: dict[str, Any]) -> str:
    m = r["machine"]
    return (
        f"Run: {m['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}, OpenCV {m['opencv']}, numpy {m['numpy']}; subject: {r['subject']}, CPU provider."
    )


def _int8_cpu_lines(r: dict[str, Any]) -> list[str]:
    """The per-CPU int8 table: both forms, measured side by side on this machine."""
    return [
        "",
        "int8 on this CPU (demo calibration, --int8-scope all; map correlation and top-1 agreement with fp32 on "
        "held-out demo scenes; kernels as onnxruntime's optimized graph runs them, activation x weight type):",
        "",
        *int8.summary(r["int8_cpu"]),
    ]


def int8_markdown(r: dict[str, Any]) -> str:
    """The report of `benchmark.py --int8-only`."""
    met = [f"- {name}: {verdict}" for name, verdict in int8_goals(r["int8_cpu"]).items()]
    return "\n".join([_run_line(r), *_int8_cpu_lines(r), "", *met])


def markdown(r: dict[str, Any]) -> str:
    lines = [_run_line(r)]
    lines += [
        "",
        "| graph | batch 1 ms | ratio | batch 4 ms | ratio | export s | export peak RSS MB "
        "| session RSS MB | RSS ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g in GRAPHS:
        b1, b4 = r["model_cost"]["batch1"][g], r["model_cost"]["batch4"][g]
        ex, rss = r["export"][g], r["session_rss"][g]
        lines.append(
            f"| {g} | {b1['ms']:.1f} | {b1['ratio']:.3f} | {b4['ms']:.1f} | {b4['ratio']:.3f} | "
            f"{ex['seconds']:.1f} | {ex['peak_rss_mb']:.0f} | {rss['process_mb']:.0f} | {rss['ratio']:.3f} |"
        )
    lines += ["", "Export stages (s): " + "; ".join(
        f"{g}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["export"][g].get("stages", {}).items()) for g in GRAPHS
    )]  # fmt: skip
    lines += [
        "",
        "Any ONNX classifier (torchvision, random weights, `gradcam-export --onnx`), batch 1:",
        "",
        "| model | graph | ms | ratio to forward-only | its weight-read floor | export s | export peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in r["onnx_models"].items():
        for g in GRAPHS:
            c = row[g]
            floor = f"{row['floor'][g]['ratio_floor']:.3f}" if g in row.get("floor", {}) else "-"
            lines.append(
                f"| {name} | {g} | {c['ms']:.1f} | {c['ratio']:.3f} | {floor} | {c['seconds']:.1f} "
                f"| {c['peak_rss_mb']:.0f} |"
            )
    f = r["backward_floor"]
    lines.append("")
    for graph in ("pooled", "full"):
        b = f[graph]
        lines.append(
            f"Floor of an exact `{graph}` backward: re-reading the weights it multiplies by "
            f"({b['weight_mb']:.0f} MB: {', '.join('x'.join(map(str, w)) for w in b['weights'])}) alone took "
            f"{b['floor_ms']:.1f} ms ({b['gb_per_s']:.1f} GB/s, beyond a {b['call_ms']:.2f} ms empty call) "
            f"beside {f['forward_ms']:.1f} ms for the forward-only "
            f"graph: {b['ratio_floor']:.3f}x forward-only, unless those weights are still in cache."
        )
    t = r["model_cost"]["targets"]
    lines += [
        "",
        "Targets per pass (batch 1, ms): "
        + "; ".join(f"{k}: " + ", ".join(f"{g} {v[g]:.1f}" for g in GRAPHS) for k, v in t.items()),
    ]
    s = r["seed"]
    lines += [
        "",
        f"Seed's method (Keras GradientTape, eager, per frame): {s['tape_ms']:.1f} ms against "
        f"{s['onnx_full_ms']:.1f} ms for the full graph: {s['speedup']:.1f}x. Maps: max abs difference "
        f"{s['max_abs_map_diff_vs_seed']:.2e} to the seed's map, {s['max_abs_map_diff_vs_reference']:.2e} "
        "to the GradientTape reference.",
    ]
    p = r["pipeline"]
    st = p["stage_ms"]
    lines += [
        "",
        f"Live loop ({p['frames']} frames of a 640x480 source at 30 FPS, full graph, Grad-CAM): display "
        f"{p['display_fps']:.2f} FPS, model {p['model_ms']:.1f} ms, display x model time "
        f"{p['display_vs_model_rate']:.3f}, latency {p['latency_ms']:.1f} ms = {p['latency_vs_model']:.2f}x "
        f"model; stages (ms): resize {st['resize']:.2f}, inference {st['inference']:.1f}, CAM "
        f"{st['cam']:.2f}, colormap+blend+HUD {st['overlay']:.2f}, sink {st['sink']:.2f}; pre+post+draw "
        f"{p['pre_post_draw_ms']:.2f} ms.",
    ]
    lines.append(
        f"Drawing cost measured as CPU time of the threads doing it (the wall time above includes waiting for "
        f"the cores onnxruntime is using for the next frame): {p['pre_post_draw_cpu_ms']:.2f} ms per frame."
    )
    i8, ie, ip = r["int8"], r["int8_export"], r["int8_pipeline"]
    lines += ["", "Real-world ONNX files (batch 1; ratios in one alternation):", "", *real_world.table(r["real_world"])]
    lines += _int8_cpu_lines(r)
    lines += [
        "",
        "| int8 (demo calibration) | --int8-scope | fp32 ms | int8 ms | speedup | quantize+export s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, (graph, scope) in INT8_VARIANTS.items():
        lines.append(
            f"| {graph} | {scope} | {i8[graph + '_fp32']['ms']:.1f} | {i8[name + '_int8']['ms']:.1f} "
            f"| {i8[name + '_speedup']:.2f}x | {ie[name]['seconds']:.1f} | {ie[name]['peak_rss_mb']:.0f} |"
        )
    lines.append(
        f"Live loop on the int8 pooled graph (640x480 source at 30 FPS): {ip['display_fps']:.1f} FPS displayed, "
        f"model {ip['model_ms']:.1f} ms, latency {ip['latency_ms']:.1f} ms."
    )
    cr = r["camera_rate"]
    lines.append(
        f"Camera-rate display ({cr['frames']} frames, 30 FPS 640x480 source, fp32 full graph): displayed "
        f"{cr['display_fps']:.1f} FPS while the model ran at {cr['model_fps']:.1f} FPS; flow + warp "
        f"{cr['flow_warp_ms']:.2f} ms wall, {cr['flow_warp_cpu_ms']:.2f} ms CPU per displayed frame."
    )
    lines += [
        "",
        "| clip, model rate | scored frames | raw distance stale px | warped px | ratio | tracking error stale px "
        "| warped px | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, t in r["tracking"].items():
        if name == "static":
            continue
        lines.append(
            f"| {name} | {t['frames']} | {t['raw_stale_px']:.1f} | {t['raw_warped_px']:.1f} | {t['raw_ratio']:.2f} | "
            f"{t['tracking_stale_px']:.1f} | {t['tracking_warped_px']:.1f} | {t['tracking_ratio']:.2f} |"
        )
    st = r["tracking"]["static"]
    lines.append(f"Static scene: raw distance {st['raw_stale_px']:.1f} px stale, {st['raw_warped_px']:.1f} px warped.")
    so = r["soak"]
    lines += [
        "",
        f"Soak: {so['frames']} frames in {so['seconds']:.0f} s ({so['models']} demo models x {so['sources']} looping "
        f"120 FPS sources, recording, Grad-CAM++ with smoothing): RSS {so['rss_start_mb']:.1f} -> "
        f"{so['rss_end_mb']:.1f} MB, growth {so['growth_mb']:.1f} MB.",
    ]
    lines += ["", "| side by side | source FPS | display FPS | models' ms (each) | display / min(source, 1/sum) "]
    lines[-1] += "| latency ms |"
    lines += ["|---|---|---|---|---|---|"]
    for name, p in r["side_by_side"].items():
        each = " + ".join(f"{ms:.1f}" for ms in p["engine_ms"])
        lines.append(
            f"| {name} | {p['source_fps']:.0f} | {p['display_fps']:.2f} | {p['model_ms']:.1f} ({each}) "
            f"| {p['display_vs_bound']:.3f} | {p['latency_ms']:.0f} |"
        )
    ly = r["layers"]
    if "guided" in ly:
        g = ly["live_guided"]
        lines += [
            "",
            f"Any layer (VGG16, batch 1): forward-only {ly['none']['ms']:.1f} ms; Grad-CAM at block4_conv3 "
            f"{ly['block4_conv3']['ms']:.1f} ms ({ly['block4_conv3']['ratio']:.3f}x); Grad-CAM at block5_conv3 with "
            f"guided backpropagation to the input {ly['guided']['ms']:.1f} ms ({ly['guided']['ratio']:.3f}x), "
            f"with pooled weights (what Guided Grad-CAM needs) {ly['guided_pooled']['ms']:.1f} ms "
            f"({ly['guided_pooled']['ratio']:.3f}x). "
            f"gradcam-live --method guided-gradcam: {g['display_fps']:.2f} FPS, model {g['model_ms']:.0f} ms.",
        ]
    bt = r["batching"]
    lines.append(
        f"Batching: {bt['sources']} sources in one call {bt['batched']:.1f} ms against {bt['separate']:.1f} ms for "
        f"{bt['sources']} calls: {bt['ratio']:.3f}x."
    )
    for name, b in r["browser_load"].items():
        lines.append(
            f"Browser view ({name}): loop {b['alone_fps']:.2f} FPS alone, {b['loaded_fps']:.2f} FPS with 4 streaming "
            f"clients and 1 stalled one: {b['drop'] * 100:+.1f}% drop; clients received "
            f"{', '.join(f'{mb:.1f}' for mb in b['client_mb'])} MB."
        )
    lines += ["", "| frame | resize ms | CAM ms | blend heat ms | blend tint ms | caption ms | total ms |"]
    lines += ["|---|---|---|---|---|---|---|"]
    for size, v in r["drawing_scale"].items():
        lines.append(
            f"| {size} | {v['resize']:.2f} | {v['cam']:.3f} | {v['blend_heat']:.2f} | {v['blend_tint']:.2f} "
            f"| {v['hud']:.2f} | {v['total']:.2f} |"
        )
    lines += ["", f"GPU: {r['gpu']}", "", "Goals:"]
    lines += [f"- {k}: {v}" for k, v in r["goals"].items()]
    return "\n".join(lines) + "\n"
