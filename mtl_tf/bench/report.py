"""Bench results -> ratios, a markdown report and a plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mtl_tf.bench.contenders import MULTITASK, NAIVE, TRUNK  # noqa: E402

MB = 1e6


def safe_ratio(numerator, denominator) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def additive_ideal(rows: dict, tasks: list[str]) -> float | None:
    """naive / multitask if the multitask model took the measured trunk time plus each head's
    measured extra time (single-task p50 - trunk p50): the FLOP-ideal ratio with each part
    weighted by its measured time instead of its MACs. Measured latency below it means the
    multitask graph costs more than its parts; the FLOP-ideal below it means the heads take more
    time per MAC than the trunk (or less)."""
    if TRUNK not in rows or any(t not in rows for t in tasks):
        return None
    trunk, singles = rows[TRUNK]["p50_ms"], [rows[t]["p50_ms"] for t in tasks]
    return safe_ratio(sum(singles), trunk + sum(s - trunk for s in singles))


def add_ratios(results: dict) -> dict:
    """Add `ratios` (naive / multitask per runtime, beside the FLOP-ideal and additive ideal
    ratios) and `int8_vs_fp32` (per contender) to `results`, computed from the measured medians."""
    contenders = results["contenders"]
    ideal = safe_ratio(contenders[NAIVE]["macs"], contenders[MULTITASK]["macs"])
    ratios = {}
    for runtime, rows in results["runtimes"].items():
        naive, multi = rows[NAIVE], rows[MULTITASK]
        base = results.get("baseline_rss_mb", {}).get(runtime)
        latency = safe_ratio(naive.get("p50_ms"), multi.get("p50_ms"))
        ratios[runtime] = {
            "latency": latency,
            "memory": safe_ratio(naive.get("peak_rss_mb"), multi.get("peak_rss_mb")),
            "memory_above_baseline": (
                safe_ratio(naive["peak_rss_mb"] - base, multi["peak_rss_mb"] - base)
                if base is not None and "peak_rss_mb" in naive and "peak_rss_mb" in multi
                else None
            ),
            "size": safe_ratio(naive.get("size_mb"), multi.get("size_mb")),
            "flop_ideal": ideal,
            "latency_vs_ideal": safe_ratio(latency, ideal),
            "additive_ideal": additive_ideal(rows, contenders[NAIVE].get("members", [])),
        }
        ratios[runtime]["latency_vs_additive"] = safe_ratio(latency, ratios[runtime]["additive_ideal"])
    results["ratios"] = ratios
    fp32, int8 = results["runtimes"].get("tflite_fp32"), results["runtimes"].get("tflite_int8")
    if fp32 and int8:
        results["int8_vs_fp32"] = {
            name: {
                "speedup": safe_ratio(fp32[name].get("p50_ms"), int8[name].get("p50_ms")),
                "size": safe_ratio(int8[name].get("size_mb"), fp32[name].get("size_mb")),
            }
            for name in fp32
        }
    return results


def head_cost_table(results: dict) -> list[str]:
    """Markdown lines: per runtime, the trunk's and each head's measured time against its MACs
    (ms per GMAC; heads: single-task p50 - trunk p50), which says whose time the MACs understate."""
    contenders = results["contenders"]
    if TRUNK not in contenders:
        return []
    tasks = contenders[NAIVE]["members"]
    trunk_macs = contenders[TRUNK]["macs"]
    lines = ["", "### Time per MAC: trunk and heads", "",
             "| runtime | trunk ms (ms/GMAC) | " + " | ".join(f"{t} head ms (ms/GMAC)" for t in tasks) + " |",
             "|---|" + "---:|" * (len(tasks) + 1)]
    for runtime, rows in results["runtimes"].items():
        trunk_ms = rows[TRUNK]["p50_ms"]
        cells = [f"{trunk_ms:.2f} ({_fmt(safe_ratio(trunk_ms, trunk_macs / 1e9), 1)})"]
        for t in tasks:
            extra, macs = rows[t]["p50_ms"] - trunk_ms, contenders[t]["macs"] - trunk_macs
            cells.append(f"{extra:.2f} ({_fmt(safe_ratio(extra, macs / 1e9), 1)})")
        lines.append(f"| {runtime} | " + " | ".join(cells) + " |")
    return lines


def _neck(neck: dict | None) -> str:
    return f" + {neck['type']} neck ({neck['channels']} channels, {neck.get('repeats', 1)} repeats)" if neck else ""


def _fmt(value, digits: int = 1, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def markdown(results: dict) -> str:
    """The report: one row per (runtime, contender), then the ratio tables."""
    meta, contenders = results["meta"], results["contenders"]
    lines = [
        f"## mtl-tf bench: {meta['recipe']} ({meta['backbone']}{_neck(meta.get('neck'))}, "
        f"{meta['image_size'][0]}x{meta['image_size'][1]})",
        "",
        f"Machine: {meta['machine']}. Threads: {meta['threads']} (Keras: intra-op, one op at a time; "
        f"LiteRT: num_threads, XNNPACK; ONNX Runtime: intra-op, sequential, CPU provider). Latency: {meta['runs']} runs after {meta['warmup']} warm-up rounds, "
        "timed round-robin in one process, one runtime after the other (each round in a random order), batch 1. Peak RSS: a fresh "
        f"process per model (the naive set: one process holding all its models). {meta['weights_note']}",
        "",
        "| runtime | contender | p50 ms | p90 ms | peak RSS MB | size MB | params M | GMACs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime, rows in results["runtimes"].items():
        for name, row in rows.items():
            lines.append(
                f"| {runtime} | {name} | {_fmt(row.get('p50_ms'))} | {_fmt(row.get('p90_ms'))} | "
                f"{_fmt(row.get('peak_rss_mb'), 0)} | {_fmt(row.get('size_mb'))} | "
                f"{contenders[name]['params'] / 1e6:.2f} | {contenders[name]['macs'] / 1e9:.3g} |"
            )
    if "trunk" in contenders:
        trunk = contenders["trunk"]["macs"]
        heads = {n: contenders[n]["macs"] - trunk for n in contenders[NAIVE]["members"]}
        lines += ["", f"GMACs (multiply-accumulates of conv/dense layers, FLOPs = 2 x MACs): trunk {trunk / 1e9:.3g}; "
                  "heads (single-task model minus trunk): "
                  + ", ".join(f"{n} {m / 1e9:.3g}" for n, m in heads.items()) + "."]
    fallbacks = sorted({f"{runtime} {name}" for runtime, rows in results["runtimes"].items()
                        for name, row in rows.items() if row.get("delegate", "XNNPACK") != "XNNPACK"})
    if fallbacks:
        lines += ["", "Not on XNNPACK (it failed to prepare them; LiteRT's builtin kernels ran): "
                  + ", ".join(fallbacks) + "."]
    baselines = results.get("baseline_rss_mb", {})
    if baselines:
        lines += ["", "Baseline peak RSS of an empty process (runtime started, no model): "
                  + ", ".join(f"{r} {v:.0f} MB" for r, v in baselines.items()) + "."]
    lines += [
        "",
        "### naive / multitask",
        "",
        "| runtime | latency (p50) | peak RSS | RSS above baseline | size | FLOP-ideal | latency / ideal "
        "| additive ideal | latency / additive |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for runtime, r in results["ratios"].items():
        lines.append(
            f"| {runtime} | {_fmt(r['latency'], 2, 'x')} | {_fmt(r['memory'], 2, 'x')} | "
            f"{_fmt(r['memory_above_baseline'], 2, 'x')} | {_fmt(r['size'], 2, 'x')} | "
            f"{_fmt(r['flop_ideal'], 2, 'x')} | {_fmt(r['latency_vs_ideal'], 2)} | "
            f"{_fmt(r.get('additive_ideal'), 2, 'x')} | {_fmt(r.get('latency_vs_additive'), 2)} |"
        )
    lines += ["", "Additive ideal: naive / multitask if the multitask model took the trunk's measured time plus "
              "each head's measured extra time (single-task p50 - trunk p50), i.e. the FLOP-ideal with each part "
              "weighted by its time instead of its MACs."]
    lines += head_cost_table(results)
    if "int8_vs_fp32" in results:
        lines += ["", "### TFLite int8 vs fp32", "", "| contender | speedup (fp32 p50 / int8 p50) | size (int8 / fp32) |",
                  "|---|---:|---:|"]
        for name, r in results["int8_vs_fp32"].items():
            lines.append(f"| {name} | {_fmt(r['speedup'], 2, 'x')} | {_fmt(r['size'], 2, 'x')} |")
    if meta.get("command"):
        lines += ["", f"Command: `{meta['command']}`"]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: str | Path) -> None:
    """Grouped bars per runtime: p50 latency (p10-p90 whiskers), peak RSS and file size."""
    runtimes = list(results["runtimes"])
    names = list(next(iter(results["runtimes"].values())))
    panels = [("p50_ms", "latency p50 (ms)"), ("peak_rss_mb", "peak RSS (MB)"), ("size_mb", "file size (MB)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    width = 0.8 / len(names)
    x = np.arange(len(runtimes))
    for ax, (key, title) in zip(axes, panels):
        for i, name in enumerate(names):
            rows = [results["runtimes"][r][name] for r in runtimes]
            values = [row.get(key) or 0 for row in rows]
            err = None
            if key == "p50_ms":
                err = np.array([[row["p50_ms"] - row["p10_ms"], row["p90_ms"] - row["p50_ms"]] for row in rows]).T
            ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, yerr=err, capsize=2, label=name)
        ax.set_xticks(x, runtimes)
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"{meta['recipe']}: {meta['backbone']} {meta['image_size'][0]}x{meta['image_size'][1]}, "
                 f"{meta['threads']} threads, {meta['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
