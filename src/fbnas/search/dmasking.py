"""FBNetV2 DMaskingNAS search: ``fbnas search dmasking --config FILE --out DIR [--preset quick] [--resume]``.

Channel widths (per stage), hidden widths (per block expansion) and the input resolution are searched by
masking a single supernet at its largest shapes (:mod:`fbnas.search.masking`); the resource term of the loss
is the effective-shape MACs or params (eqs. 5-10). The schedule, loss forms, run folder, checkpoint/resume
and Gumbel noise streams are those of the DNAS search (:mod:`fbnas.search.dnas`), whose weight/theta steps
are reused as they are: the supernet and cost model here have the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fbnas.search import register_strategy
from fbnas.search.alternating import (
    STREAM_SAMPLES,
    CommonSettings,
    check_loaders,
    common_settings,
    run_alternating,
    start_run,
)
from fbnas.search.dmasking_space import DMaskingSpace, parse_space
from fbnas.search.dnas import _add_args, make_loaders
from fbnas.search.gumbel import step_generator
from fbnas.search.masking import DMaskingSupernet, EffectiveCostModel
from fbnas.search.run import (
    ConfigView,
    RunFolder,
    choices_probability,
    load_config,
    sample_choices,
)

DEFAULT_SPACE: dict[str, Any] = {
    "input_size": 28,
    "in_channels": 1,
    "resolutions": [28, 24, 20],
    "width_divisor": 4,
    "act": "relu",
    "stem": {"c": [8, 12, 16], "s": 2, "k": 3, "act": "hswish"},
    "stages": [
        {"c": [8, 12, 16], "s": 1, "n": 1, "e": [1], "k": 3},
        {"c": [16, 20, 24], "s": 2, "n": 2, "e": [1, 2, 3, 4], "k": 3},
        {"c": [24, 32, 40], "s": 2, "n": 2, "e": [1, 2, 3, 4], "k": 5, "se": "hsigmoid", "act": "hswish"},
    ],
    "last": {"c": 128, "act": "hswish"},
    "dropout": 0.1,
}

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "threads": None,
    "space": DEFAULT_SPACE,
    "data": {"name": "fashion-mnist", "dir": None, "subset": None, "theta_split": 0.2, "batch_size": 128,
             "augment": False, "channels_last": False},
    "supernet": {"mode": "soft"},
    "schedule": {"epochs": 10, "warmup_epochs": 2, "tau0": 5.0, "tau_decay": 0.045},
    "weights_optimizer": {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False, "min_lr": 0.0},
    "theta_optimizer": {"lr": 0.01, "weight_decay": 5e-4},
    "loss": {"form": "target", "alpha": 0.2, "beta": 0.6, "cost": "macs", "target": 2.0, "lambda": 1.0,
             "penalty": "abs", "cost_scale": 1.0, "weight_loss": "ce"},
    "result": {"samples": 3},
}


@dataclass
class DMaskingSettings(CommonSettings):
    """Validated config; has the attribute names the DNAS data loaders and steps read."""

    space: DMaskingSpace
    input_size: int
    in_channels: int
    hard: bool


def settings_from_config(cfg: dict, source: str = "config") -> DMaskingSettings:
    v = ConfigView(cfg, source)
    common = common_settings(v, source, ("macs", "params"))
    space = parse_space(v.raw("space"), source)
    return DMaskingSettings(**common, space=space, input_size=space.input_size, in_channels=space.in_channels,
                            hard=v.str("supernet.mode", ("soft", "hard")) == "hard")


def describe(net: DMaskingSupernet, choices: list[int], name: str) -> dict:
    """A result entry: arch spec, choices, names, analytic MACs/params (of the spec) and effective cost."""
    from fbnas.cost.counting import count

    spec = net.space.to_spec(choices, name=name)
    report = count(spec, num_classes=net.num_classes)
    return {"arch": spec.to_dict(), "choices": [int(c) for c in choices],
            "choice_names": net.space.choice_names(choices), "latency_ms": None,
            "macs": int(report.macs), "params": int(report.params)}


def run_search(cfg: dict, out: str | Path, resume: bool = False, log=print, source: str = "config",
               stop_after_epoch: int | None = None) -> dict:
    """Run (or resume) a DMaskingNAS search with the resolved ``cfg``; returns the result.json document."""

    s = settings_from_config(cfg, source)
    folder, resuming = start_run(cfg, out, resume, s)
    w_loader, t_loader, num_classes = make_loaders(s)
    check_loaders(w_loader, t_loader, s, source)
    net = DMaskingSupernet(s.space, num_classes, hard=s.hard)
    cost_model = EffectiveCostModel(net, s.cost_kind)
    lo, hi = cost_model.min_max()
    s.loss.check_cost_range(lo, f"{source}: loss")
    if s.loss.form == "target" and s.loss.target is not None and not lo <= s.loss.target <= hi:
        log(f"warning: loss.target {s.loss.target} {cost_model.unit} is outside the space's range "
            f"[{lo:.4g}, {hi:.4g}]")
    layer_names = [g.name for g in s.space.groups]
    cand_names = [list(g.labels) for g in s.space.groups]
    history = run_alternating(net, w_loader, t_loader, cost_model, s, folder, cfg, resuming, layer_names, cand_names,
                              log, stop_after_epoch)
    if history is None:
        return {}

    result = build_result(net, s, cost_model, history)
    folder.write_result(result)
    return result


def build_result(net: DMaskingSupernet, s: DMaskingSettings, cost_model: EffectiveCostModel,
                 history: list[dict]) -> dict:
    """result.json: the argmax of every g as an arch spec, with analytic MACs/params, plus samples."""
    probs = net.probabilities()
    choices = net.argmax_choices()
    best = describe(net, choices, "dmasking_argmax")
    samples = []
    gen = step_generator(s.seed, 0, STREAM_SAMPLES)
    for k, ch in enumerate(sample_choices(probs, s.num_samples, gen)):
        entry = describe(net, ch, f"dmasking_sample{k}")
        entry["probability"] = choices_probability(probs, ch)
        entry["cost"] = cost_model.of_choices(ch)
        samples.append(entry)
    lo, hi = cost_model.min_max()
    return {
        "strategy": "dmasking",
        **best,
        "probability": choices_probability(probs, choices),
        "cost": {"kind": cost_model.kind, "unit": cost_model.unit, "value": cost_model.of_choices(choices),
                 "target": s.loss.target if s.loss.form == "target" else None, "space_min": lo, "space_max": hi},
        "num_classes": net.num_classes,
        "samples": samples,
        "groups": [g.name for g in s.space.groups],
        "probs": [p.tolist() for p in probs],
        "epochs": len(history),
        "final": {k: v for k, v in history[-1].items() if k != "elapsed_s"} if history else {},
        "timing": {"search_seconds": history[-1]["elapsed_s"] if history else 0.0},
    }


def format_result(result: dict) -> str:
    lines = ["found architecture (argmax of every Gumbel choice):"]
    lines += [f"  {name}" for name in result["choice_names"]]
    lines.append(f"input {result['arch']['input_size']}  MACs: {result['macs'] / 1e6:.3f} M   "
                 f"params: {result['params'] / 1e6:.3f} M")
    c = result["cost"]
    target = f" (target {c['target']})" if c.get("target") is not None else ""
    lines.append(f"search cost ({c['kind']}): {c['value']:.3f} {c['unit']}{target}")
    return "\n".join(lines)


def _run_cli(args) -> int:
    cfg = load_config(args.config, DEFAULTS, args.preset, args.set)
    folder = RunFolder(args.out)
    if args.resume and folder.file(RunFolder.CHECKPOINT).exists():
        saved = folder.read_config()
        if saved is not None:
            cfg = saved
    result = run_search(cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                        source=str(args.config))
    print(format_result(result))
    print(f"result: {folder.file(RunFolder.RESULT)}")
    return 0


register_strategy("dmasking", "FBNetV2 DMaskingNAS: channel / expansion / resolution search by masking",
                  _add_args, _run_cli)
