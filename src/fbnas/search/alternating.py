"""The alternating weight / architecture optimisation shared by the differentiable searches (DNAS, DMaskingNAS).

A strategy supplies a supernet (``weight_parameters``, ``arch_parameters``, ``arch_weights(tau, generator,
batch_size)``, ``probabilities``, ``argmax_choices``), a cost model (``expected(weights)``,
``of_choices(choices)``, ``unit``) and settings with the common schedule fields; :func:`run_alternating` does
the rest: warm-up epochs on the weights only, then per epoch the weights (SGD, cosine) and theta (Adam),
the Gumbel temperature schedule, an atomic checkpoint per epoch, theta history and heatmap, and bit-exact
resume. Gumbel noise is keyed by (seed, step, stream), never the global RNG, so DDP ranks and resumed runs
draw the same architectures.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from fbnas.search.gumbel import step_generator, temperature
from fbnas.search.loss import FORMS, PENALTIES, LossConfig, dnas_loss
from fbnas.search.run import ConfigView, RunFolder, rng_state, set_rng_state, theta_history

# Streams of step_generator: one per kind of random draw, so they never collide.
STREAM_WEIGHTS, STREAM_THETA, STREAM_SAMPLES = 0, 1, 2


@dataclass
class CommonSettings:
    """Validated fields every alternating search shares; strategies subclass it with their space's fields."""

    seed: int
    threads: int | None
    data_name: str
    data_dir: str | None
    subset: int | None
    theta_split: float
    batch_size: int
    augment: bool
    channels_last: bool
    epochs: int
    warmup_epochs: int
    tau0: float
    tau_decay: float
    w_lr: float
    w_momentum: float
    w_weight_decay: float
    w_nesterov: bool
    w_min_lr: float
    t_lr: float
    t_weight_decay: float
    loss: LossConfig
    cost_kind: str
    weight_loss: str
    num_samples: int


def common_settings(v: ConfigView, source: str, cost_kinds: tuple[str, ...]) -> dict[str, Any]:
    """The config fields every alternating search shares (seed, data, schedule, optimizers, loss, result), validated,
    as keyword arguments for a strategy's settings dataclass."""
    loss = LossConfig(form=v.str("loss.form", FORMS), alpha=v.float("loss.alpha"), beta=v.float("loss.beta"),
                      target=v.float("loss.target", optional=True), lam=v.float("loss.lambda"),
                      penalty=v.str("loss.penalty", PENALTIES), cost_scale=v.float("loss.cost_scale"))
    loss.validate(f"{source}: loss")
    fields = dict(
        seed=v.int("seed", 0), threads=v.int("threads", 1, optional=True),
        data_name=v.str("data.name"), data_dir=v.str("data.dir", optional=True),
        subset=v.int("data.subset", 10, optional=True),
        theta_split=v.float("data.theta_split", 0.0, 0.9, strict_min=True),
        batch_size=v.int("data.batch_size", 1), augment=v.bool("data.augment"),
        channels_last=v.bool("data.channels_last"),
        epochs=v.int("schedule.epochs", 1), warmup_epochs=v.int("schedule.warmup_epochs", 0),
        tau0=v.float("schedule.tau0", 0.0, strict_min=True), tau_decay=v.float("schedule.tau_decay", 0.0),
        w_lr=v.float("weights_optimizer.lr", 0.0, strict_min=True),
        w_momentum=v.float("weights_optimizer.momentum", 0.0, 1.0),
        w_weight_decay=v.float("weights_optimizer.weight_decay", 0.0),
        w_nesterov=v.bool("weights_optimizer.nesterov"), w_min_lr=v.float("weights_optimizer.min_lr", 0.0),
        t_lr=v.float("theta_optimizer.lr", 0.0, strict_min=True),
        t_weight_decay=v.float("theta_optimizer.weight_decay", 0.0),
        loss=loss, cost_kind=v.str("loss.cost", cost_kinds),
        weight_loss=v.str("loss.weight_loss", ("ce", "full")), num_samples=v.int("result.samples", 0),
    )
    if fields["warmup_epochs"] >= fields["epochs"]:
        raise v.fail("schedule.warmup_epochs", f"must be < schedule.epochs ({fields['epochs']}) so theta trains at "
                                               f"all, got {fields['warmup_epochs']}")
    return fields


def start_run(cfg: dict, out, resume: bool, s: CommonSettings) -> tuple[RunFolder, bool]:
    """Open the run folder (refusing to resume with a different config), set threads and seeds; returns
    ``(folder, resuming)``."""
    from fbnas.errors import FbnasError
    from fbnas.runtime import set_threads
    from fbnas.search.run import seed_everything

    folder = RunFolder(out)
    resuming = folder.prepare(resume)
    if resuming:
        saved = folder.read_config()
        if saved is not None and saved != cfg:
            raise FbnasError(f"{folder.path}: --resume with a different config than the run's config.json")
    set_threads(s.threads)
    seed_everything(s.seed)
    return folder, resuming


def check_loaders(w_loader, t_loader, s: CommonSettings, source: str) -> None:
    """Both splits need at least one batch, or the search would silently skip its steps."""
    from fbnas.errors import FbnasError

    if len(w_loader) == 0 or len(t_loader) == 0:
        raise FbnasError(f"{source}: data.batch_size: {s.batch_size} is larger than a split "
                         f"({len(w_loader)} weight / {len(t_loader)} theta batches); lower it or raise data.subset")


def cosine_lambda(total_steps: int, base_lr: float, min_lr: float) -> Callable[[int], float]:
    """LambdaLR factor: cosine from ``base_lr`` to ``min_lr`` over ``total_steps``."""
    def f(step: int) -> float:
        t = min(step, total_steps) / max(1, total_steps)
        return (min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * t))) / base_lr
    return f


class FrozenWeights:
    """Turn off weight gradients during the theta step (only activations' gradients are needed)."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        self.params = params

    def __enter__(self) -> None:
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc: Any) -> None:
        for p in self.params:
            p.requires_grad_(True)


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr, disable=not sys.stderr.isatty())


def train_weights(net, loader, opt, sched, cost_model, s, epoch: int, tau: float) -> dict:
    """One epoch of weight steps; the architecture is sampled under no_grad (theta is not trained here)."""
    net.train()
    loader.set_epoch(epoch)
    n_batches = len(loader)
    total_ce, correct, seen = 0.0, 0, 0
    bar = progress_bar(n_batches, f"epoch {epoch} weights")
    for i, (x, y) in enumerate(loader):
        step = epoch * n_batches + i
        with torch.no_grad():
            sample = net.arch_weights(tau, step_generator(s.seed, step, STREAM_WEIGHTS), batch_size=x.shape[0])
        logits = net(x, sample)
        if s.weight_loss == "full" and s.loss.form != "none":
            loss, parts = dnas_loss(logits, y, cost_model.expected(sample.weights), s.loss)
            ce = parts["ce"]
        else:
            loss = F.cross_entropy(logits, y)
            ce = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        total_ce += ce * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        seen += len(y)
        bar.update(1)
    bar.close()
    return {"w_ce": total_ce / max(1, seen), "w_acc": correct / max(1, seen)}


def cost_gradient(logits: torch.Tensor, labels: torch.Tensor, cost: torch.Tensor, s,
                  params: list[torch.nn.Parameter]) -> list[torch.Tensor] | None:
    """The part of the theta gradient that comes through the cost term: the loss with the logits held
    constant, differentiated through the cost alone (a tiny graph; ``.grad`` is not touched)."""
    if s.loss.form == "none" or not cost.requires_grad:
        return None
    cost_only, _ = dnas_loss(logits.detach(), labels, cost, s.loss)
    grads = torch.autograd.grad(cost_only, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def _accumulate(total: list[torch.Tensor] | None, grads: list[torch.Tensor]) -> list[torch.Tensor]:
    return grads if total is None else [a + b for a, b in zip(total, grads, strict=True)]


def cost_pull(cost_sum: list[torch.Tensor] | None, total_sum: list[torch.Tensor] | None) -> float:
    """|sum of the cost term's theta gradients| / |sum of the rest| over an epoch: how hard the cost term
    pulls theta relative to cross-entropy (0: not at all; well below 1: CE decides the architecture)."""
    if cost_sum is None or total_sum is None:
        return 0.0
    c = torch.cat([g.flatten() for g in cost_sum])
    rest = torch.cat([t.flatten() for t in total_sum]) - c
    return float(c.norm() / rest.norm().clamp_min(1e-30))


def train_theta(net, loader, opt, cost_model, s, epoch: int, tau: float) -> dict:
    """One epoch of architecture steps on the whole loss (CE and the cost term); weights frozen.

    Also reports ``t_cost_pull`` (see :func:`cost_pull`), so a user sees whether the latency term can move
    the search at all with the chosen alpha / beta / cost unit.
    """
    net.train()
    loader.set_epoch(epoch)
    n_batches = len(loader)
    sums = {"t_loss": 0.0, "t_ce": 0.0, "t_cost": 0.0}
    correct, seen = 0, 0
    params = net.arch_parameters()
    cost_sum: list[torch.Tensor] | None = None
    total_sum: list[torch.Tensor] | None = None
    bar = progress_bar(n_batches, f"epoch {epoch} theta")
    with FrozenWeights(net.weight_parameters()):
        for i, (x, y) in enumerate(loader):
            step = epoch * n_batches + i
            sample = net.arch_weights(tau, step_generator(s.seed, step, STREAM_THETA), batch_size=x.shape[0])
            logits = net(x, sample)
            cost = cost_model.expected(sample.weights)
            loss, parts = dnas_loss(logits, y, cost, s.loss)
            g_cost = cost_gradient(logits, y, cost, s, params)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if g_cost is not None:
                cost_sum = _accumulate(cost_sum, g_cost)
                total_sum = _accumulate(total_sum, [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
                                                    for p in params])
            opt.step()
            sums["t_loss"] += float(loss.detach()) * len(y)
            sums["t_ce"] += parts["ce"] * len(y)
            sums["t_cost"] += parts["cost"] * len(y)
            correct += int((logits.detach().argmax(1) == y).sum())
            seen += len(y)
            bar.update(1)
    bar.close()
    out = {k: v / max(1, seen) for k, v in sums.items()}
    out["t_acc"] = correct / max(1, seen)
    out["t_cost_pull"] = cost_pull(cost_sum, total_sum)
    return out


def epoch_line(rec: dict, unit: str) -> str:
    parts = [f"epoch {rec['epoch']:3d} [{rec['phase']}] tau {rec['tau']:.3f}",
             f"w_ce {rec['w_ce']:.4f} w_acc {rec['w_acc']:.4f}"]
    if "t_loss" in rec:
        parts.append(f"t_loss {rec['t_loss']:.4f} t_ce {rec['t_ce']:.4f} E[cost] {rec['t_cost']:.3f} "
                     f"cost pull {rec.get('t_cost_pull', 0.0):.3f}")
    parts.append(f"argmax {rec['argmax_cost']:.3f} {unit} ({rec['elapsed_s']:.0f}s)")
    return " | ".join(parts)


def run_alternating(net, w_loader, t_loader, cost_model, s, folder: RunFolder, cfg: dict, resuming: bool,
                    layer_names: list[str], cand_names: list[list[str]], log: Callable[[str], Any] = print,
                    stop_after_epoch: int | None = None) -> list[dict] | None:
    """Train ``net`` for ``s.epochs`` (resuming from ``folder`` when asked); returns the per-epoch history,
    or None when ``stop_after_epoch`` ended the work early (tests of resume).

    ``s`` needs: seed, epochs, warmup_epochs, tau0, tau_decay, w_lr, w_momentum, w_weight_decay, w_nesterov,
    w_min_lr, t_lr, t_weight_decay, weight_loss, loss.
    """
    weight_params, arch_params = net.weight_parameters(), net.arch_parameters()
    opt_w = torch.optim.SGD(weight_params, lr=s.w_lr, momentum=s.w_momentum, weight_decay=s.w_weight_decay,
                            nesterov=s.w_nesterov and s.w_momentum > 0)
    opt_t = torch.optim.Adam(arch_params, lr=s.t_lr, weight_decay=s.t_weight_decay)
    sched_w = torch.optim.lr_scheduler.LambdaLR(opt_w, cosine_lambda(s.epochs * len(w_loader), s.w_lr, s.w_min_lr))

    history: list[dict] = []
    theta_epochs: list[dict] = []
    start_epoch, elapsed = 0, 0.0
    if resuming:
        ck = folder.load_checkpoint()
        net.load_state_dict(ck["model"])
        opt_w.load_state_dict(ck["opt_weights"])
        opt_t.load_state_dict(ck["opt_theta"])
        sched_w.load_state_dict(ck["sched_weights"])
        set_rng_state(ck["rng"])
        history, theta_epochs = ck["history"], ck["theta_epochs"]
        start_epoch, elapsed = int(ck["epoch"]) + 1, float(ck.get("elapsed_s", 0.0))
        log(f"resuming {folder.path} after epoch {start_epoch - 1}")
    else:
        folder.write_config(cfg)

    for epoch in range(start_epoch, s.epochs):
        t0 = time.perf_counter()
        search_epoch = epoch >= s.warmup_epochs
        tau = temperature(max(0, epoch - s.warmup_epochs), s.tau0, s.tau_decay)
        rec: dict[str, Any] = {"epoch": epoch, "tau": tau, "phase": "search" if search_epoch else "warmup"}
        rec.update(train_weights(net, w_loader, opt_w, sched_w, cost_model, s, epoch, tau))
        if search_epoch:
            rec.update(train_theta(net, t_loader, opt_t, cost_model, s, epoch, tau))
        rec["argmax_cost"] = cost_model.of_choices(net.argmax_choices())
        rec["lr"] = opt_w.param_groups[0]["lr"]
        elapsed += time.perf_counter() - t0
        rec["elapsed_s"] = round(elapsed, 3)
        history.append(rec)
        theta_epochs.append({"epoch": epoch, "tau": tau, "theta": [t.detach().tolist() for t in arch_params],
                             "probs": [p.tolist() for p in net.probabilities()]})
        folder.save_checkpoint({"epoch": epoch, "model": net.state_dict(), "opt_weights": opt_w.state_dict(),
                                "opt_theta": opt_t.state_dict(), "sched_weights": sched_w.state_dict(),
                                "rng": rng_state(), "history": history, "theta_epochs": theta_epochs,
                                "elapsed_s": elapsed, "config": cfg})
        hist_doc = theta_history(layer_names, cand_names, theta_epochs)
        folder.write_theta_history(hist_doc)
        folder.write_heatmap(hist_doc)
        log(epoch_line(rec, cost_model.unit))
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return None
    return history
