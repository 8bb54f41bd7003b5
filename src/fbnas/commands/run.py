"""``fbnas run --config FILE --out DIR [--preset quick] [--resume] [--set KEY=VALUE ...]``: the whole pipeline
(:mod:`fbnas.pipeline.run`) for the strategy the config names (``strategy:``, default dnas)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_run_args

    p = sub.add_parser("run", help="search, retrain, random baseline, ONNX export, measured latency and a report")
    add_run_args(p, "pipeline run folder (search/, trials/, model.onnx, report.html)", "pipeline.retrain.epochs=3")
    p.set_defaults(func=run)


def run(args) -> int:
    from fbnas.config import resolve_config
    from fbnas.pipeline.run import run_pipeline
    from fbnas.runs import RunFolder
    from fbnas.search.strategy import get_strategy

    data = resolve_config(args.config, args.preset, args.set)
    strategy = get_strategy(str(data.get("strategy", "dnas")))
    cfg = strategy.config_model.parse(data, str(args.config))
    if args.resume:
        saved = RunFolder(args.out, "pipeline").read_config()
        if saved is not None:
            cfg = strategy.config_model.parse(saved, f"{args.out}/config.json")
    summary = run_pipeline(strategy, cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                           source=str(args.config), overwrite=args.overwrite)
    print(format_summary(summary))
    return 0


def format_summary(s: dict) -> str:
    f = s["found"]
    lines = ["found architecture: " + " ".join(s["choice_names"] or [])]
    lat = f" {f['predicted_ms']:.3f} ms (table)" if f.get("predicted_ms") is not None else ""
    meas = f", {f['measured_ms']:.3f} ms measured" if f.get("measured_ms") is not None else ""
    lines.append(f"  latency{lat}{meas}; {f['macs'] / 1e6:.2f} M MACs, {f['params'] / 1e6:.3f} M params")
    dist = s.get("distribution")
    if dist:
        lines.append(f"  distribution: mean normalised entropy {dist['mean_normalized_entropy']:.3f}"
                     + ("  (close to uniform: the pick is nearly random)" if dist.get("near_uniform") else ""))
    lines.append(f"retrained: {100 * f['test_acc']:.2f}% test accuracy")
    c = s["comparison"]
    if "baseline_median" in c:
        lines.append(f"baseline: {len(c['baseline_test_acc'])} random nets of the same latency, median "
                     f"{100 * c['baseline_median']:.2f}%, best {100 * c['baseline_best']:.2f}%")
    lines.append(f"report: {s['report']}")
    lines.append(f"onnx: {s['onnx']}")
    return "\n".join(lines)
