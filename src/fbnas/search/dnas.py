"""FBNetV1 DNAS (arXiv 1812.03443): ``fbnas search dnas --config FILE --out DIR [--preset quick] [--resume]``.

A Gumbel-softmax supernet over a layer-wise space (:class:`fbnas.space.LayerwiseSpace`). Schedule (all
configurable, defaults from the paper): the training set is split 80/20; the supernet's weights train on the
80% with SGD (lr 0.1, momentum 0.9, cosine), theta on the 20% with Adam (lr 0.01, wd 5e-4). The first
``warmup_epochs`` train only the weights; after that each epoch trains the weights, then theta. The Gumbel
temperature is ``tau0 * exp(-tau_decay * e)`` with ``e`` counted from the first theta epoch. The cost term is
the expected latency from a latency table, or the expected MACs / params counted analytically (eq. 9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from fbnas.config import StrictModel
from fbnas.cost.terms import TermCostModel
from fbnas.errors import FbnasError
from fbnas.runs import RunFolder
from fbnas.search.alternating import run_alternating
from fbnas.search.caps import Cap, check_feasible
from fbnas.search.common import cost_model_for, gumbel_update, load_latency_table, search_data
from fbnas.search.config import SearchConfig, SupernetMode
from fbnas.search.history import choices_probability, distribution_summary
from fbnas.search.results import best_choices, caps_for, describe_arch, lut_label, sampled_archs
from fbnas.search.strategy import register_strategy
from fbnas.search.supernet import Supernet
from fbnas.space.layerwise import LayerwiseSpace


class DnasSpace(StrictModel):
    name: str = "fbnet_v1"  # a shipped layer-wise space (fbnet_v1, fbnet_fmnist) or a YAML file
    input_size: Annotated[int, Field(ge=8)] = 28
    in_channels: Annotated[int, Field(ge=1)] = 1
    width_multiplier: Annotated[float, Field(gt=0.0)] | None = None  # scales every stage's channels
    strides: list[int] | None = None  # one per stage (None: the space's own; a smaller input drops stride-2s)


class DnasSupernet(StrictModel):
    mode: SupernetMode = "soft"  # soft: every candidate runs, Gumbel-weighted (paper); hard: straight-through
    noise: Literal["batch", "sample"] = "batch"  # one Gumbel sample per batch, or one per image


class DnasConfig(SearchConfig):
    strategy: Literal["dnas"] = "dnas"
    space: DnasSpace = DnasSpace()
    supernet: DnasSupernet = DnasSupernet()


class Dnas:
    name = "dnas"
    help = "FBNetV1 DNAS: Gumbel-softmax supernet with a latency-aware loss"
    data_parallel = True  # torchrun: the ranks share every step (fbnas.distributed)
    config_model = DnasConfig
    smoke_config: dict[str, Any] = {
        "seed": 3, "threads": 1,
        "space": {"name": "fbnet_v1", "input_size": 16, "in_channels": 1, "width_multiplier": 0.25},
        "data": {"name": "synthetic", "subset": 320, "batch_size": 32},
        "schedule": {"epochs": 3, "warmup_epochs": 1},
        "loss": {"cost": "macs", "cost_scale": 10.0},
        "result": {"samples": 3},
    }

    def space(self, cfg: DnasConfig) -> LayerwiseSpace:
        from fbnas.space.registry import load_space

        s = cfg.space
        space = load_space(s.name, input_size=s.input_size, in_channels=s.in_channels,
                           width_multiplier=s.width_multiplier, strides=s.strides)
        if not isinstance(space, LayerwiseSpace):
            raise FbnasError(f"space.name: dnas searches a layer-wise space; {s.name!r} is a {type(space).__name__}")
        return space

    def run(self, cfg: DnasConfig, folder: RunFolder, *, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None = None, source: str = "config") -> dict[str, Any] | None:
        space = self.space(cfg)
        data = search_data(cfg, cfg.space.in_channels, cfg.space.input_size, source)
        lut = load_latency_table(cfg, space, data.num_classes, log)
        cost_model = cost_model_for(cfg, space, data.num_classes, lut)
        cfg.loss.check_cost_range(cost_model.min_max()[0], f"{source}: loss")
        caps = caps_for(space, cfg.constraints.active(), data.num_classes, lut)
        check_feasible(caps)  # before any training: a cap the space cannot meet is one line
        net = Supernet(space, data.num_classes, mode=cfg.supernet.mode, noise=cfg.supernet.noise)
        if cfg.data.channels_last:
            net = net.to(memory_format=torch.channels_last)
        update = gumbel_update(net, cost_model, cfg)
        labels = [[c.name for c in layer.candidates] for layer in space.layers]
        history = run_alternating(net, data.weights, data.arch, cost_model, update, cfg, folder, resuming,
                                  space.dim_names, labels, log, stop_after_epoch)
        if history is None:
            return None
        return build_result(net, space, cfg, cost_model, lut, data.num_classes, history, caps)

    def format_result(self, result: dict[str, Any]) -> str:
        return format_result(result)


def build_result(net: Supernet, space: LayerwiseSpace, cfg: DnasConfig, cost_model: TermCostModel, lut,
                 num_classes: int, history: list[dict], caps: list[Cap] | None = None) -> dict:
    """result.json: the most probable architecture (``sample`` and ``arch``; under the caps when there are any)
    and ``samples`` drawn from P_theta (eq. 6), restricted to the caps."""
    probs = net.probabilities()
    latency_fn = (lambda spec: lut.predict(spec).total_ms) if lut is not None else None
    caps = caps or []
    choices = best_choices(probs, caps) if caps else net.argmax_choices()
    best = describe_arch(space, choices, num_classes, "dnas_argmax", latency_fn)
    best["probability"] = choices_probability(probs, choices)
    best_cost = cost_model.of_choices(choices)
    extra = {}
    if caps:
        extra["constraints"] = {c.name: {"limit": c.limit, "value": c.of(choices), "unit": c.unit} for c in caps}
        free = net.argmax_choices()
        extra["unconstrained"] = {"choices": free, "choice_names": space.choice_names(free),
                                  **{c.name: c.of(free) for c in caps}}
    return {
        "strategy": "dnas",
        **best,
        "cost": {"kind": cost_model.kind, "unit": cost_model.unit, "value": best_cost},
        **extra,
        "num_classes": num_classes,
        **({"lut": lut.info()} if lut is not None else {}),
        "space": cfg.space.to_dict(),
        "samples": sampled_archs(space, probs, cfg.result.samples, cfg.seed, num_classes, "dnas", cost_model,
                                 latency_fn, caps),
        "probs": [p.tolist() for p in probs],
        "distribution": distribution_summary(probs),
        "epochs": len(history),
        "final": {k: v for k, v in history[-1].items() if k != "elapsed_s"} if history else {},
        "timing": {"search_seconds": history[-1]["elapsed_s"] if history else 0.0},
    }


def format_result(result: dict) -> str:
    """The found architecture as printed at the end of a search."""
    lines = ["found architecture (argmax of P_theta), choice per searchable layer:"]
    dist = result.get("distribution")
    for li, (dim, name) in enumerate(zip(result["sample"], result["choice_names"], strict=True)):
        p_s = ""
        if dist is not None:
            p_s = f"  (p {dist['max_prob'][li]:.2f}, uniform {1 / len(result['probs'][li]):.2f})"
        lines.append(f"  {dim:>6}: {name}{p_s}")
    lat = result.get("latency_ms")
    lat_s = f"{lat:.3f} ms ({lut_label(result)})" if lat is not None else "n/a (no LUT configured)"
    lines.append(f"predicted latency: {lat_s}")
    lines.append(f"MACs: {result['macs'] / 1e6:.3f} M   params: {result['params'] / 1e6:.3f} M")
    lines.append(f"search cost ({result['cost']['kind']}): {result['cost']['value']:.3f} {result['cost']['unit']}")
    for name, c in (result.get("constraints") or {}).items():
        lines.append(f"cap {name}: {c['value']:.4g} <= {c['limit']:g} {c['unit']} (most probable architecture that "
                     "meets every cap)")
    if dist is not None and dist["near_uniform"]:
        lines.append(f"note: P_theta is still close to uniform (mean entropy {dist['mean_normalized_entropy']:.3f} "
                     "of the maximum): the argmax is nearly a random pick at this cost; search longer or on more "
                     "data for a decided architecture")
    return "\n".join(lines)


register_strategy(Dnas())
