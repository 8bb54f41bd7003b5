"""FP-NAS (seed 002; CVPR 2021): ``fbnas search fpnas --config FILE --out DIR [--preset quick] [--resume]``.

Probabilistic search on a sampled single-path supernet (:mod:`fbnas.search.single_path`) over a multi-variate
space (:class:`fbnas.space.FPNasSpace`: FBNetV2-F, F-Fine, F++): every step samples K architectures from
P(A | alpha), K adaptive to the distribution's entropy (section 3.2), the weights train on the weight split and
alpha on the other half (the seed's 50/50) with importance weights and a FLOPs (or params, or latency-table)
cost term (section 3.4; :mod:`fbnas.search.sampled_update`); the distribution is factorized for the first
``switch_epoch`` epochs, then joint per layer (section 3.3; :mod:`fbnas.search.distribution`). The found
architecture is the most probable one. Run folder, checkpoints, resume and ``result.json`` are the shared ones
(:mod:`fbnas.search.alternating`, :mod:`fbnas.search.strategy`); ``docs/fpnas.md`` says how it works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from fbnas.config import StrictModel
from fbnas.cost.terms import analytic_cost_model
from fbnas.distributed import world
from fbnas.runs import RunFolder
from fbnas.search.alternating import run_alternating
from fbnas.search.budgeted import most_probable_within
from fbnas.search.common import load_latency_table, search_data
from fbnas.search.config import DataSection, NonNegativeInt, PositiveInt, ResultSection, ScheduleSection, SearchConfig
from fbnas.search.fpnas_plots import write_plots, write_trace
from fbnas.search.loss import CostKind, LossConfig, PositiveFloat
from fbnas.search.results import caps_for, describe_arch, lut_label
from fbnas.search.sampled_update import SampledUpdate
from fbnas.search.single_path import SinglePathSupernet
from fbnas.search.strategy import register_strategy
from fbnas.seeding import STREAMS, step_generator
from fbnas.space.fpnas import FPNasSpace

UNUSED_LOSS = LossConfig(form="none", cost="macs")  # FP-NAS's cost term is the fpnas section's


class FPNasSpaceSection(StrictModel):
    name: str = "fbnetv2_fpp_fmnist"  # a shipped FP-NAS space (fbnetv2_f_fmnist, fbnetv2_fpp_fmnist, fbnetv2_f) or YAML
    fine: bool | None = None  # F-Fine: every block its own micro-architecture (None: the space file's)


class FPNasSection(StrictModel):
    """The method's own settings (docs/fpnas.md); the seed gives lambda = 1/4, the rest are ours."""

    lam: Annotated[float, Field(gt=0.0, alias="lambda")] = 0.25  # K = lambda * H(P(A | alpha)), H in nats
    k_min: PositiveInt = 2  # K is clamped to [k_min, k_max] (one sample has importance weight 1: nothing to compare)
    k_max: PositiveInt = 16
    fixed_k: PositiveInt | None = None  # PARSEC's fixed sample count instead of the adaptive one
    switch_epoch: NonNegativeInt | None = 3  # FD -> JD as this epoch starts (0: JD from the start; null: FD only)
    beta: Annotated[float, Field(ge=0.0)] = 1.0  # weight of beta * log C(alpha) (both terms of eq. 7 carry unit mass)
    cost: CostKind = "macs"  # macs (MMACs, the seed's FLOPs), params (M), latency (ms, lut.path)
    target: PositiveFloat | None = None  # TAR, in cost's unit (null: no cost term)
    # C(A) also penalises max(0, target_floor - cost / TAR): 0 is the seed's one-sided term (only ever pushes down)
    target_floor: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # the found architecture: the most probable one (the seed), or the most probable one with its cost in
    # [target_floor * TAR, TAR] (within_target; the most probable one when there is no target)
    select: Literal["most_probable", "within_target"] = "most_probable"
    # eq. 7's cost shares minus 1/K (a zero-mean baseline): the cost term moves mass between the samples only
    cost_baseline: bool = False
    weight_loss: Literal["importance", "mean"] = "importance"  # children's weights in the weight step

    @model_validator(mode="after")
    def _k_bounds(self) -> FPNasSection:
        if self.k_min > self.k_max:
            raise ValueError(f"k_max: must be >= k_min ({self.k_min}), got {self.k_max}")
        return self


class FPNasData(DataSection):
    theta_split: Annotated[float, Field(gt=0.0, le=0.9)] = 0.5  # the seed: half the images train alpha
    batch_size: PositiveInt = 64
    channels_last: bool = False


class FPNasSchedule(ScheduleSection):
    epochs: PositiveInt = 10
    warmup_epochs: NonNegativeInt = 1  # weights only (tau0 / tau_decay: unused by fpnas)


class FPNasConfig(SearchConfig):
    strategy: Literal["fpnas"] = "fpnas"
    space: FPNasSpaceSection = FPNasSpaceSection()
    fpnas: FPNasSection = FPNasSection()
    data: FPNasData = FPNasData()
    schedule: FPNasSchedule = FPNasSchedule()
    loss: LossConfig = UNUSED_LOSS
    result: ResultSection = ResultSection(samples=3)

    @model_validator(mode="after")
    def _fpnas_fields(self) -> FPNasConfig:
        if self.loss != UNUSED_LOSS:
            raise ValueError("loss: fpnas does not use the loss section; its cost term is fpnas.beta / fpnas.target / "
                             "fpnas.cost")
        if self.fpnas.cost == "latency" and not self.lut.path:
            raise ValueError("lut.path: fpnas.cost 'latency' needs a latency table path (or use macs / params)")
        s = self.fpnas.switch_epoch
        if s is not None and s >= self.schedule.epochs:
            raise ValueError(f"fpnas.switch_epoch: must be < schedule.epochs ({self.schedule.epochs}) or null (FD "
                             f"throughout), got {s}")
        return self


class FPNas:
    name = "fpnas"
    help = "FP-NAS: sampled single-path search, entropy-adaptive K, FD -> JD, FLOPs cost, split attention"
    data_parallel = True  # torchrun: the ranks share every step (fbnas.distributed)
    config_model = FPNasConfig
    smoke_config: dict[str, Any] = {
        "seed": 2, "threads": 1,
        "space": {"name": "fbnetv2_fpp_fmnist", "fine": True},
        "data": {"name": "synthetic", "subset": 128, "batch_size": 32},
        "schedule": {"epochs": 3, "warmup_epochs": 1},
        "fpnas": {"switch_epoch": 2, "k_max": 3, "target": 0.6},
        "result": {"samples": 2},
    }

    def space(self, cfg: FPNasConfig, source: str = "config") -> FPNasSpace:
        from fbnas.errors import SpecError
        from fbnas.space.fpnas import parse_fpnas_space
        from fbnas.space.registry import read_space_file

        data, where = read_space_file(cfg.space.name)
        if not isinstance(data, dict) or data.get("kind") != "fpnas":
            raise SpecError(f"{source}: space.name: fpnas searches a space of kind fpnas; {cfg.space.name!r} is not "
                            "one (shipped: fbnetv2_f_fmnist, fbnetv2_fpp_fmnist, fbnetv2_f)")
        return parse_fpnas_space(data, where, fine=cfg.space.fine)

    def run(self, cfg: FPNasConfig, folder: RunFolder, *, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None = None, source: str = "config") -> dict[str, Any] | None:
        space = self.space(cfg, source)
        data = search_data(cfg, space.in_channels, space.input_size, source)
        f = cfg.fpnas
        lut = load_latency_table(cfg, space, data.num_classes, log) if f.cost == "latency" else None
        cost_model = lut.cost_model(space) if lut is not None else analytic_cost_model(space, f.cost,
                                                                                        data.num_classes)
        if cfg.constraints.active():
            caps_for(space, cfg.constraints.active(), data.num_classes, lut)  # one line: costs do not add up per dim
        lo, hi = cost_model.min_max()
        if f.target is not None and not lo <= f.target <= hi:
            log(f"warning: fpnas.target {f.target} {cost_model.unit} is outside the space's range [{lo:.3f}, "
                f"{hi:.3f}]")
        net = SinglePathSupernet(space, data.num_classes)
        t = cfg.theta_optimizer
        update = SampledUpdate(net, cost_model, seed=cfg.seed, lam=f.lam, k_min=f.k_min, k_max=f.k_max,
                               fixed_k=f.fixed_k, switch_epoch=f.switch_epoch, beta=f.beta, target=f.target,
                               weight_loss=f.weight_loss, lr=t.lr, weight_decay=t.weight_decay,
                               target_floor=f.target_floor, cost_baseline=f.cost_baseline)
        labels = [list(d.labels) for d in space.dims]  # type: ignore[union-attr]
        history = run_alternating(net, data.weights, data.arch, cost_model, update, cfg, folder, resuming,
                                  space.dim_names, labels, log, stop_after_epoch,
                                  line=lambda rec: epoch_line(rec, cost_model.unit),
                                  after_epoch=lambda h: write_trace(folder, update.trace, f.switch_epoch))
        if history is None:
            return None
        if world().is_writer:
            write_plots(folder, update.trace)
        return build_result(net, space, cfg, cost_model, lut, update, history, log)

    def format_result(self, result: dict[str, Any]) -> str:
        return format_result(result)


def epoch_line(rec: dict, unit: str) -> str:
    parts = [f"epoch {rec['epoch']:3d} [{rec['phase']}] {rec['dist']} K {rec['k']} H {rec['entropy']:.2f}",
             f"w_ce {rec['w_ce']:.4f} w_acc {rec['w_acc']:.4f}"]
    if "t_nll" in rec:
        parts.append(f"t_nll {rec['t_nll']:.4f} E[cost] {rec['t_cost']:.3f} C {rec['t_c']:.3f} "
                     f"ESS {rec['t_ess']:.2f}/{rec['t_k']:.1f}")
    parts.append(f"most probable {rec['argmax_cost']:.3f} {unit} ({rec['elapsed_s']:.0f}s)")
    return " | ".join(parts)


def build_result(net: SinglePathSupernet, space: FPNasSpace, cfg: FPNasConfig, cost_model, lut,
                 update: SampledUpdate, history: list[dict], log: Callable[[str], Any] = print) -> dict:
    """result.json: the found architecture (``sample`` and ``arch``: the most probable one, or the most probable one
    within the target band), its costs, architectures sampled from P(A | alpha), the distribution's form and size,
    and how many architectures the search drew."""
    dist = net.dist
    f = cfg.fpnas
    free = net.argmax_choices()
    selection = found_choices(dist, cost_model, f.select, f.target, f.target_floor)
    choices = selection.pop("choices")
    if selection.get("fallback"):
        log(f"warning: fpnas.select within_target: no architecture with cost in {selection['band']} found; the "
            "result is the most probable architecture")
    latency_fn = (lambda spec: lut.predict(spec).total_ms) if lut is not None else None
    best = describe_arch(space, choices, net.num_classes, "fpnas_most_probable", latency_fn)
    samples = []
    for i, ch in enumerate(dist.sample(cfg.result.samples, step_generator(cfg.seed, 0, STREAMS["samples"]))):
        entry = describe_arch(space, ch, net.num_classes, f"fpnas_sample{i}", latency_fn)
        samples.append({**entry, "probability": dist.probability(ch), "cost": cost_model.of_choices(ch)})
    lo, hi = cost_model.min_max()
    trace = update.trace
    return {
        "strategy": "fpnas",
        **best,
        "probability": dist.probability(choices),
        "cost": {"kind": cost_model.kind, "unit": cost_model.unit, "value": cost_model.of_choices(choices),
                 "target": f.target, "target_floor": f.target_floor, "space_min": lo, "space_max": hi},
        "selection": {**selection, "most_probable": {"choices": free, "cost": cost_model.of_choices(free),
                                                     "probability": dist.probability(free)}},
        "num_classes": net.num_classes,
        "space": {"name": space.name, "fine": space.fine},
        "samples": samples,
        "groups": space.groups(),
        "probs": [p.tolist() for p in net.probabilities()],
        "distribution": {"form": "jd" if dist.is_joint else "fd", "switch_epoch": f.switch_epoch,
                         "fd_parameters": dist.num_parameters(joint=False),
                         "jd_parameters": dist.num_parameters(joint=True), "entropy": dist.entropy()},
        "sampling": {"mode": "fixed" if f.fixed_k is not None else "adaptive", "lambda": f.lam, "k_min": f.k_min,
                     "k_max": f.k_max, "fixed_k": f.fixed_k, "drawn": sum(update.drawn.values()),
                     "drawn_weight_steps": update.drawn["weights"], "drawn_arch_steps": update.drawn["arch"],
                     "steps": len(trace), "k_first": int(trace[0][2]) if trace else None,
                     "k_last": int(trace[-1][2]) if trace else None},
        "epochs": len(history),
        "final": {k: v for k, v in history[-1].items() if k != "elapsed_s"} if history else {},
        "timing": {"search_seconds": history[-1]["elapsed_s"] if history else 0.0},
    }


def found_choices(dist, cost_model, select: str, target: float | None, floor: float) -> dict[str, Any]:
    """The found architecture's choices and how it was chosen (``rule``; ``band``, ``in_band``, ``fallback`` and
    ``is_most_probable`` for ``within_target``)."""
    free = dist.most_probable()
    if select == "most_probable" or target is None:
        return {"rule": "most_probable", "choices": free, "is_most_probable": True}
    band = [floor * target, target]
    inside = most_probable_within(dist, cost_model, band[0], band[1])
    chosen = inside if inside is not None else free
    return {"rule": "within_target", "band": band, "choices": chosen, "fallback": inside is None,
            "in_band": band[0] <= cost_model.of_choices(chosen) <= band[1], "is_most_probable": chosen == free}


def format_result(result: dict) -> str:
    rule = result.get("selection", {}).get("rule", "most_probable")
    how = "the most probable under P(A | alpha)" if rule == "most_probable" else "the most probable within the target"
    lines = [f"found architecture ({how}):"]
    lines += [f"  {name}" for name in result["choice_names"]]
    lines.append(f"MACs: {result['macs'] / 1e6:.3f} M   params: {result['params'] / 1e6:.3f} M   "
                 f"probability {result['probability']:.3g}")
    if result.get("latency_ms") is not None:
        lines.append(f"predicted latency: {result['latency_ms']:.3f} ms ({lut_label(result)})")
    c, d, s = result["cost"], result["distribution"], result["sampling"]
    target = f" (target {c['target']})" if c.get("target") is not None else ""
    lines.append(f"search cost ({c['kind']}): {c['value']:.3f} {c['unit']}{target}")
    sel = result.get("selection", {})
    if sel.get("rule") == "within_target":
        mp = sel["most_probable"]
        lines.append(f"chosen: the most probable within [{sel['band'][0]:.3f}, {sel['band'][1]:.3f}] "
                     f"{c['unit']}; the most probable overall costs {mp['cost']:.3f} (probability "
                     f"{mp['probability']:.3g}){' - the same' if sel['is_most_probable'] else ''}")
    lines.append(f"distribution: {d['form'].upper()} (FD {d['fd_parameters']} / JD {d['jd_parameters']} parameters), "
                 f"entropy {d['entropy']:.2f} nats")
    lines.append(f"sampling: {s['mode']} K {s['k_first']} -> {s['k_last']}, {s['drawn']} architectures drawn in "
                 f"{s['steps']} steps")
    return "\n".join(lines)


register_strategy(FPNas())
