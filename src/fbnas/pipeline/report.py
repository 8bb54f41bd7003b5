"""The pipeline's report: ``report.json`` (the numbers) and ``report.html`` (one self-contained page: figures
inline as PNG data, no network access, no scripts but a check that every figure loaded).

It shows the found architecture layer by layer (block, channels, predicted ms, MACs), the search curves, the
per-layer probabilities, accuracy against latency of every trained network with the cap drawn in, the latency
table's prediction against the measured latency, the baseline comparison in one sentence, and the commands
that reproduce the run.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from fbnas.io import atomic_write_json, atomic_write_text, read_jsonl
from fbnas.runs import RunFolder

ROLE_STYLE = {"found": ("tab:red", "*", 220), "sampled": ("tab:orange", "s", 60), "baseline": ("tab:blue", "o", 60)}


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def search_curves(rows: list[dict]) -> str | None:
    """Weight- and architecture-step accuracy, and the expected / argmax cost, per search epoch."""
    if not rows:
        return None
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    ep = [r["epoch"] for r in rows]
    a.plot(ep, [r["w_acc"] for r in rows], "o-", label="weights step accuracy")
    t = [(r["epoch"], r["t_acc"]) for r in rows if "t_acc" in r]
    if t:
        a.plot(*zip(*t, strict=True), "s-", label="architecture step accuracy")
    a.set_xlabel("epoch")
    a.set_ylabel("accuracy")
    a.legend(fontsize=8)
    a.set_title("search: accuracy")
    b.plot(ep, [r["argmax_cost"] for r in rows], "o-", label="most probable architecture")
    c = [(r["epoch"], r["t_cost"]) for r in rows if "t_cost" in r]
    if c:
        b.plot(*zip(*c, strict=True), "s--", label="expected (Gumbel samples)")
    b.set_xlabel("epoch")
    b.set_ylabel("cost")
    b.legend(fontsize=8)
    b.set_title("search: cost")
    return _png(fig)


def probability_heatmap(history: dict | None) -> str | None:
    """The last epoch's probabilities: one row per dimension, one column per option, labelled in the cells."""
    if not history or not history.get("epochs"):
        return None
    import numpy as np

    plt = _plt()
    probs = history["epochs"][-1]["probs"]
    labels = history["candidates"]
    width = max(len(p) for p in probs)
    grid = np.full((len(probs), width), np.nan)
    for i, p in enumerate(probs):
        grid[i, : len(p)] = p
    fig, ax = plt.subplots(figsize=(1.2 + 1.05 * width, 0.9 + 0.42 * len(probs)))
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i, p in enumerate(probs):
        for j, v in enumerate(p):
            ax.text(j, i, f"{labels[i][j]}\n{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v < 0.6 else "black")
    ax.set_yticks(range(len(probs)))
    ax.set_yticklabels(history["layers"], fontsize=8)
    ax.set_xticks([])
    ax.set_title(f"P(option) per searchable dimension after epoch {history['epochs'][-1]['epoch']}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _png(fig)


def accuracy_vs_latency(nets: list[dict], cap: float | None, unit: str) -> str | None:
    trained = [n for n in nets if n.get("test_acc") is not None]
    if not trained:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    xkey = "predicted_ms" if all(n.get("predicted_ms") is not None for n in trained) else "cost"
    for role, (color, marker, size) in ROLE_STYLE.items():
        pts = [(n[xkey], 100 * n["test_acc"]) for n in trained if n["role"] == role]
        if pts:
            ax.scatter(*zip(*pts, strict=True), c=color, marker=marker, s=size, label=role, zorder=3)
    if cap is not None:
        ax.axvline(cap, color="gray", linestyle="--", label=f"cap {cap:g} {unit}")
    ax.set_xlabel("latency, table prediction (ms)" if xkey == "predicted_ms" else f"cost ({unit})")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("every trained network")
    return _png(fig)


def predicted_vs_measured(nets: list[dict]) -> str | None:
    pts = [(n["predicted_ms"], n["measured_ms"], n["role"]) for n in nets
           if n.get("predicted_ms") is not None and n.get("measured_ms") is not None]
    if not pts:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4))
    for role, (color, marker, size) in ROLE_STYLE.items():
        sel = [(p, m) for p, m, r in pts if r == role]
        if sel:
            ax.scatter(*zip(*sel, strict=True), c=color, marker=marker, s=size, label=role, zorder=3)
    lo = min(min(p, m) for p, m, _ in pts)
    hi = max(max(p, m) for p, m, _ in pts)
    ax.plot([lo, hi], [lo, hi], "k:", label="measured = predicted")
    ax.set_xlabel("latency table (ms)")
    ax.set_ylabel("measured on this machine (ms)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("latency: prediction vs measurement")
    return _png(fig)


def layer_table(arch: dict, num_classes: int, lut_blocks: list | None,
                searched: list[str] | None = None) -> list[dict[str, Any]]:
    """Per block of the found network: the dimensions that chose it, block, channels, stride, output size,
    predicted ms, MACs."""
    from fbnas.arch.spec import ArchSpec
    from fbnas.cost.counting import count

    spec = ArchSpec.from_dict(arch)
    rep = count(spec, num_classes=num_classes)
    rows = []
    for i, (b, bc) in enumerate(zip(spec.expand(), rep.blocks, strict=True)):
        rows.append({"block": bc.name, "searched": searched[i] if searched and i < len(searched) else "",
                     "op": b.op, "kwargs": b.kwargs, "channels": f"{b.in_channels}->{b.out_channels}",
                     "stride": b.stride, "out": f"{bc.out_hw[0]}x{bc.out_hw[1]}", "macs": bc.macs,
                     "ms": lut_blocks[i][2] if lut_blocks else None})
    rows.append({"block": "classifier", "op": "pool + linear", "kwargs": {}, "channels": f"->{num_classes}",
                 "stride": "", "out": "", "macs": rep.head_macs, "ms": lut_blocks[-1][2] if lut_blocks else None})
    return rows


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for _, h in cols)
    body = []
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            if k.endswith("acc") and isinstance(v, float):
                v = f"{100 * v:.2f}%"
            elif isinstance(v, float):
                v = f"{v:.4g}"
            elif isinstance(v, int) and not isinstance(v, bool):
                v = f"{v:,}"
            elif isinstance(v, dict):
                v = ", ".join(f"{a}={b}" for a, b in v.items())
            cells.append(f"<td>{html.escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45}h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}.verdict{font-size:1.1em;
background:#f6f8fa;border-left:4px solid #2a7;padding:.6em 1em}img{max-width:100%;display:block;margin:.5em 0}
code,pre{background:#f6f8fa;padding:2px 4px;font-size:.85em}pre{padding:.7em;overflow-x:auto}"""

CHECK = """<script>window.addEventListener('load',function(){var i=[].slice.call(document.images);
document.body.setAttribute('data-images',i.length);document.body.setAttribute('data-broken',
i.filter(function(x){return !(x.complete&&x.naturalWidth>0)}).length);});</script>"""


def render_html(report: dict[str, Any], figures: dict[str, str | None]) -> str:
    f = report["found"]
    comp = report["comparison"]
    lat = report.get("latency") or {}
    dist = report.get("distribution") or {}
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>fbnas run: "
             f"{html.escape(report['strategy'])}</title><style>{CSS}</style></head><body>",
             f"<h1>fbnas run: {html.escape(report['strategy'])} search, retraining and baseline</h1>",
             f"<p>Run folder <code>{html.escape(report['out'])}</code>, config "
             f"<code>{html.escape(report['config'])}</code>.</p>",
             f"<p class='verdict'>{html.escape(comp['sentence'])}.</p>"]
    facts = [("test accuracy", f"{100 * f['test_acc']:.2f}%" if f.get("test_acc") is not None else "-"),
             ("latency (table)", f"{f['predicted_ms']:.3f} ms" if f.get("predicted_ms") is not None else "-"),
             ("latency (measured here)", f"{f['measured_ms']:.3f} ms" if f.get("measured_ms") is not None else "-"),
             ("MACs", f"{f['macs'] / 1e6:.2f} M"), ("params", f"{f['params'] / 1e6:.3f} M"),
             ("decided", f"mean normalised entropy {dist['mean_normalized_entropy']:.3f}" if dist else "-")]
    for name, c in (report.get("constraints") or {}).items():
        facts.append((f"cap {name}", f"{c['value']:.4g} <= {c['limit']:g} {c['unit']}"))
    parts.append("<h2>The found architecture</h2>" + _table([{"k": k, "v": v} for k, v in facts],
                                                              [("k", ""), ("v", "")]))
    parts.append(_table(report["layers"], [("block", "block"), ("searched", "searched dimension"), ("op", "op"),
                                           ("kwargs", "options"),
                                           ("channels", "channels"), ("stride", "stride"), ("out", "output"),
                                           ("ms", "predicted ms"), ("macs", "MACs")]))
    if figures.get("curves"):
        parts.append(f"<h2>Search</h2><img alt='search curves' src='data:image/png;base64,{figures['curves']}'>")
    if figures.get("heatmap"):
        parts.append(f"<img alt='per-layer probabilities' src='data:image/png;base64,{figures['heatmap']}'>")
    parts.append("<h2>Against random networks of the same latency</h2>")
    if figures.get("acc_latency"):
        parts.append(f"<img alt='accuracy vs latency' src='data:image/png;base64,{figures['acc_latency']}'>")
    parts.append(_table(report["nets"], [("name", "network"), ("role", "role"), ("test_acc", "test accuracy"),
                                         ("predicted_ms", "table ms"), ("measured_ms", "measured ms"),
                                         ("macs", "MACs"), ("params", "params")]))
    if figures.get("latency"):
        parts.append("<h2>The latency table against this machine</h2>"
                     f"<img alt='predicted vs measured latency' src='data:image/png;base64,{figures['latency']}'>")
    if lat:
        parts.append(f"<p>{html.escape(lat['backend'])}, {lat['threads']} thread(s), {html.escape(lat['statistic'])}: "
                     f"the found net {lat['found_measured_ms']:.3f} ms measured vs {lat['found_predicted_ms']:.3f} ms "
                     f"predicted; its ONNX export in onnxruntime {lat['onnx_measured_ms']:.3f} ms.</p>")
    t = report["times_s"]
    parts.append("<h2>Reproduce</h2><pre>" + html.escape("\n".join(report["commands"])) + "</pre>")
    parts.append("<p>Stage times: " + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in t.items())
                 + f". ONNX: <code>{html.escape(report['onnx'])}</code>. Numbers: <code>report.json</code>.</p>")
    parts.append(CHECK + "</body></html>")
    return "\n".join(parts)


def searched_labels(summary: dict[str, Any], folder: RunFolder) -> list[str] | None:
    """For every block position of the found network, ``dimension=value`` of the dimensions that chose it."""
    import json

    from fbnas.search.strategy import get_strategy

    strategy = get_strategy(summary["strategy"])
    cfg = strategy.config_model.parse(json.loads(folder.file(folder.CONFIG).read_text()))
    space = strategy.space(cfg)
    try:
        per_pos = space.term_dims()
    except NotImplementedError:
        return None
    sample = summary["found"]["sample"]
    return [", ".join(f"{d}={sample[d]}" for d in dims) for dims in per_pos]


def write_report(folder: RunFolder, summary: dict[str, Any]) -> dict[str, Any]:
    """report.json and report.html in ``folder``; the figures also as PNG files under plots/."""
    import json

    search = RunFolder(folder.path / "search", "search")
    rows = read_jsonl(search.file(search.METRICS))
    history = search.read_json("theta_history.json")
    lut_blocks = None
    nets = summary["nets"]
    found = nets[0]
    caps = summary.get("constraints") or {}
    cap = caps.get("latency_ms", {}).get("limit")
    if found.get("predicted_ms") is not None:
        from fbnas.arch.spec import ArchSpec
        from fbnas.lut import LatencyTable

        cfg = json.loads(folder.file(folder.CONFIG).read_text())
        lut = LatencyTable(cfg["lut"]["path"], backend=cfg["lut"]["backend"], threads=cfg["lut"]["threads"],
                           allow_fingerprint=cfg["lut"].get("allow_fingerprint"),
                           dtype=cfg["lut"].get("dtype", "float32"),
                           num_classes=int(search.read_result()["num_classes"]))
        lut_blocks = lut.predict(ArchSpec.from_dict(found["arch"])).blocks
        lut.close()
    num_classes = int(search.read_result()["num_classes"])
    report = {**summary, "layers": layer_table(found["arch"], num_classes, lut_blocks,
                                               searched_labels(summary, folder))}
    figures = {"curves": search_curves(rows), "heatmap": probability_heatmap(history),
               "acc_latency": accuracy_vs_latency(nets, cap, "ms" if cap is not None else
                                                  summary["baseline_matching"]["unit"]),
               "latency": predicted_vs_measured(nets)}
    for name, data in figures.items():
        if data:
            from fbnas.io import atomic_write_bytes

            atomic_write_bytes(folder.plot(f"{name}.png"), base64.b64decode(data))
    atomic_write_json(folder.file("report.json"), report)
    atomic_write_text(folder.file("report.html"), render_html(report, figures))
    return report
