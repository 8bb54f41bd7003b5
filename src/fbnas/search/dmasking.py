"""FBNetV2 DMaskingNAS: ``fbnas search dmasking --config FILE --out DIR [--preset quick] [--resume]``.

Channel widths (per stage), hidden widths (per block expansion) and the input resolution are searched by
masking a single supernet at its largest shapes (:mod:`fbnas.search.masking`, over a
:class:`fbnas.space.MaskingSpace`). The resource term of the loss is the effective-shape MACs or params
(seed 000, eqs. 5-10), or the expected latency from a latency table: every block's table entry for each
combination of the resolution and its input, hidden and output widths, weighted by the product of their
Gumbel weights (:mod:`fbnas.cost.terms`), which is the child's table sum at one-hot weights. The schedule,
loss forms, run folder, checkpoint/resume and Gumbel streams are the shared ones (:mod:`fbnas.search.alternating`,
:class:`fbnas.search.updates.GumbelUpdate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import field_validator

from fbnas.config import StrictModel
from fbnas.runs import RunFolder
from fbnas.search.alternating import run_alternating
from fbnas.search.common import cost_model_for, gumbel_update, load_latency_table, search_data
from fbnas.search.config import (
    DataSection,
    NonNegativeInt,
    PositiveInt,
    ResultSection,
    ScheduleSection,
    SearchConfig,
    SupernetMode,
)
from fbnas.search.history import choices_probability
from fbnas.search.loss import CostKind, LossConfig, LossForm, Penalty, PositiveFloat
from fbnas.search.masking import DMaskingSupernet, EffectiveCostModel
from fbnas.search.results import caps_for, describe_arch, lut_label, sampled_archs
from fbnas.search.strategy import register_strategy
from fbnas.space.masking import MaskingSpace, parse_space

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


class DMaskingSupernetSection(StrictModel):
    mode: SupernetMode = "soft"  # soft: Gumbel-weighted masks; hard: straight-through one-hot masks


class DMaskingData(DataSection):
    channels_last: bool = False


class DMaskingSchedule(ScheduleSection):
    epochs: PositiveInt = 10
    warmup_epochs: NonNegativeInt = 2


class DMaskingLoss(LossConfig):
    form: LossForm = "target"
    cost: CostKind = "macs"  # macs / params: effective shapes; latency: the latency table
    target: PositiveFloat | None = 2.0
    penalty: Penalty = "abs"


class DMaskingConfig(SearchConfig):
    strategy: Literal["dmasking"] = "dmasking"
    space: dict[str, Any] = DEFAULT_SPACE  # a masking space mapping (docs/dmasking.md), or a shipped space name
    supernet: DMaskingSupernetSection = DMaskingSupernetSection()
    data: DMaskingData = DMaskingData()
    schedule: DMaskingSchedule = DMaskingSchedule()
    loss: DMaskingLoss = DMaskingLoss()
    result: ResultSection = ResultSection(samples=3)

    @field_validator("space", mode="before")
    @classmethod
    def _space_by_name(cls, v: Any) -> Any:
        if isinstance(v, str):
            from fbnas.space.registry import read_space_file

            return read_space_file(v)[0]
        return v


class DMasking:
    name = "dmasking"
    help = "FBNetV2 DMaskingNAS: channel / expansion / resolution search by masking"
    data_parallel = True  # torchrun: the ranks share every step (fbnas.distributed)
    config_model = DMaskingConfig
    smoke_config: dict[str, Any] = {
        "seed": 5, "threads": 1,
        "space": {"input_size": 16, "in_channels": 1, "resolutions": [16, 12], "width_divisor": 4, "act": "relu",
                  "stem": {"c": [4, 8], "s": 1, "k": 3},
                  "stages": [{"c": [4, 8], "s": 1, "n": 1, "e": [1, 2]},
                             {"c": [8, 12], "s": 2, "n": 2, "e": [1, 2], "se": "hsigmoid", "act": "hswish"}],
                  "last": {"c": 16}, "dropout": 0.0},
        "data": {"name": "synthetic", "subset": 192, "batch_size": 32},
        "schedule": {"epochs": 3, "warmup_epochs": 1},
        "loss": {"form": "target", "target": 0.05, "penalty": "abs"},
        "result": {"samples": 2},
    }

    def space(self, cfg: DMaskingConfig, source: str = "config") -> MaskingSpace:
        return parse_space(cfg.space, source)

    def run(self, cfg: DMaskingConfig, folder: RunFolder, *, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None = None, source: str = "config") -> dict[str, Any] | None:
        space = self.space(cfg, source)
        data = search_data(cfg, space.in_channels, space.input_size, source)
        net = DMaskingSupernet(space, data.num_classes, hard=cfg.supernet.mode == "hard")
        lut = load_latency_table(cfg, space, data.num_classes, log) if cfg.loss.cost == "latency" else None
        cost_model = (cost_model_for(cfg, space, data.num_classes, lut) if lut is not None
                      else EffectiveCostModel(net, cfg.loss.cost))
        lo, hi = cost_model.min_max()
        cfg.loss.check_cost_range(lo, f"{source}: loss")
        if cfg.constraints.active():
            caps_for(space, cfg.constraints.active(), data.num_classes, lut)  # one line: masked costs do not add up
        target = cfg.loss.target
        if cfg.loss.form == "target" and target is not None and not lo <= target <= hi:
            log(f"warning: loss.target {target} {cost_model.unit} is outside the space's range "
                f"[{lo:.3f}, {hi:.3f}]; set loss.target in {cost_model.unit}")
        labels = [list(c.labels) for c in space.choices]
        history = run_alternating(net, data.weights, data.arch, cost_model, gumbel_update(net, cost_model, cfg), cfg,
                                  folder, resuming, space.dim_names, labels, log, stop_after_epoch)
        if history is None:
            return None
        return build_result(net, space, cfg, cost_model, lut, history)

    def format_result(self, result: dict[str, Any]) -> str:
        lines = ["found architecture (argmax of every Gumbel choice):"]
        lines += [f"  {name}" for name in result["choice_names"]]
        lines.append(f"input {result['arch']['input_size']}  MACs: {result['macs'] / 1e6:.3f} M   "
                     f"params: {result['params'] / 1e6:.3f} M")
        if result.get("latency_ms") is not None:
            lines.append(f"predicted latency: {result['latency_ms']:.3f} ms ({lut_label(result)})")
        c = result["cost"]
        target = f" (target {c['target']})" if c.get("target") is not None else ""
        lines.append(f"search cost ({c['kind']}): {c['value']:.3f} {c['unit']}{target}")
        return "\n".join(lines)


def build_result(net: DMaskingSupernet, space: MaskingSpace, cfg: DMaskingConfig, cost_model, lut,
                 history: list[dict]) -> dict:
    """result.json: the argmax of every dimension (``sample`` and ``arch``), analytic MACs/params, samples."""
    probs = net.probabilities()
    choices = net.argmax_choices()
    latency_fn = (lambda spec: lut.predict(spec).total_ms) if lut is not None else None
    best = describe_arch(space, choices, net.num_classes, "dmasking_argmax", latency_fn)
    lo, hi = cost_model.min_max()
    return {
        "strategy": "dmasking",
        **best,
        "probability": choices_probability(probs, choices),
        "cost": {"kind": cost_model.kind, "unit": cost_model.unit, "value": cost_model.of_choices(choices),
                 "target": cfg.loss.target if cfg.loss.form == "target" else None, "space_min": lo, "space_max": hi},
        "num_classes": net.num_classes,
        **({"lut": lut.info()} if lut is not None else {}),
        "space": cfg.space,
        "samples": sampled_archs(space, probs, cfg.result.samples, cfg.seed, net.num_classes, "dmasking",
                                 cost_model, latency_fn),
        "groups": space.dim_names,
        "probs": [p.tolist() for p in probs],
        "epochs": len(history),
        "final": {k: v for k, v in history[-1].items() if k != "elapsed_s"} if history else {},
        "timing": {"search_seconds": history[-1]["elapsed_s"] if history else 0.0},
    }


register_strategy(DMasking())
