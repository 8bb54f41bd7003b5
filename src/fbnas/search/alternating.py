"""The alternating weight / architecture optimisation of the searches: warm-up epochs train only the weights, then
every epoch trains the weights (SGD, cosine) on the weight split and the architecture on the other split through
an :class:`ArchitectureUpdate`. FBNetV1 DNAS and FBNetV2 DMaskingNAS (seed 000) run an epoch of architecture steps
after each weight epoch; FP-NAS (seed 002) interleaves them, one architecture step after each weight step (the
update's ``per_step``). The update owns both losses (:meth:`ArchitectureUpdate.weight_step`).

A fresh search first checkpoints its initial state; every epoch then ends with an atomic checkpoint (weights,
optimizers, schedule, RNG states, history, the argmax architecture), the epoch's row of ``metrics.jsonl``,
``theta_history.json`` and the probability heatmap, all rewritten from the checkpoint's history; ``--resume``
continues bit-exactly on CPU. Every loss is checked as it is computed and every metric and state tensor before
a checkpoint is written (:mod:`fbnas.guards`): a search that diverges stops with one line and keeps its last
finite checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from fbnas import distributed
from fbnas.errors import DivergenceError
from fbnas.guards import NonFinite, check_loss, describe_names, nonfinite_metrics, nonfinite_tensors
from fbnas.runs import RunFolder, load_module_state, restoring
from fbnas.search.config import SearchConfig
from fbnas.search.history import save_probability_heatmap, theta_history
from fbnas.search.protocols import ArchitectureUpdate, CostModel, Supernet
from fbnas.search.updates import progress_bar
from fbnas.seeding import rng_state, set_rng_state
from fbnas.train.recipe import cosine_factor


def weight_schedule(opt: torch.optim.Optimizer, cfg: SearchConfig, steps_per_epoch: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine from ``weights_optimizer.lr`` to ``min_lr`` over every step of the search."""
    w = cfg.weights_optimizer
    total = cfg.schedule.epochs * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: cosine_factor(step, total, w.min_lr / w.lr))


class _Means:
    """Per-batch means summed with their batch sizes; ``means()`` divides by the images seen."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.seen = 0

    def add(self, values: dict[str, float], n: int) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.seen += n

    def means(self) -> dict[str, float]:
        return {k: v / max(1, self.seen) for k, v in self.sums.items()}


def arch_steps_after(i: int, n_weight: int, n_arch: int) -> int:
    """How many architecture steps follow weight step ``i`` so that ``n_arch`` of them spread evenly over an epoch of
    ``n_weight`` weight steps (one each when the splits are equal)."""
    return (i + 1) * n_arch // n_weight - i * n_arch // n_weight


def train_weights(net: Supernet, loader, opt, sched, update: ArchitectureUpdate, epoch: int,
                  arch_loader=None) -> dict:
    """One epoch of weight steps; with ``arch_loader`` the update's architecture steps are interleaved with them."""
    net.train()
    loader.set_epoch(epoch)
    n_batches = len(loader)
    total_ce, correct, seen = 0.0, 0, 0
    extra, arch = _Means(), _Means()
    arch_batches, n_arch, arch_step = None, 0, 0
    if arch_loader is not None:
        arch_loader.set_epoch(epoch)
        arch_batches, n_arch = iter(arch_loader), len(arch_loader)
    bar = progress_bar(n_batches, f"epoch {epoch} weights")
    weights = net.weight_parameters() if distributed.active() else []
    for i, (x, y) in enumerate(loader):
        opt.zero_grad(set_to_none=True)
        out = update.weight_step(net, x, y, epoch * n_batches + i)
        out, n = distributed.sync_step(weights, out, len(y))  # data-parallel: the global batch's gradients and values
        loss_value = out.pop("loss", None)
        if loss_value is not None:
            check_loss(loss_value, "the weight loss", i, n_batches)
        check_loss(out["ce"], "the weight cross-entropy", i, n_batches)
        opt.step()
        distributed.check_identical(weights, "weights")
        sched.step()
        total_ce += out["ce"] * n
        correct += out["correct"]
        seen += n
        extra.add({f"w_{k}": v for k, v in out.items() if k not in ("ce", "correct")}, n)
        if arch_batches is not None:
            for _ in range(arch_steps_after(i, n_batches, n_arch)):
                xt, yt = next(arch_batches)
                step_out = update.arch_step(net, xt, yt, epoch * n_arch + arch_step)
                for k, v in step_out.items():
                    check_loss(float(v), f"the architecture step's {k}", arch_step, n_arch, "theta")
                arch.add(step_out, distributed.global_rows(len(yt)))
                arch_step += 1
        bar.update(1)
    bar.close()
    return {"w_ce": total_ce / max(1, seen), "w_acc": correct / max(1, seen), **extra.means(), **arch.means()}


def epoch_line(rec: dict, unit: str) -> str:
    """The Gumbel searches' line of an epoch."""
    parts = [f"epoch {rec['epoch']:3d} [{rec['phase']}] tau {rec['tau']:.3f}",
             f"w_ce {rec['w_ce']:.4f} w_acc {rec['w_acc']:.4f}"]
    if "t_loss" in rec:
        parts.append(f"t_loss {rec['t_loss']:.4f} t_ce {rec['t_ce']:.4f} E[cost] {rec['t_cost']:.3f} "
                     f"cost pull {rec.get('t_cost_pull', 0.0):.3f}")
    parts.append(f"argmax {rec['argmax_cost']:.3f} {unit} ({rec['elapsed_s']:.0f}s)")
    return " | ".join(parts)


def write_history_files(folder: RunFolder, history: list[dict], theta_epochs: list[dict], dim_names: list[str],
                        labels: list[list[str]]) -> None:
    """metrics.jsonl, theta_history.json and the heatmap, all from the checkpoint's history."""
    folder.write_metrics(history)
    doc = theta_history(dim_names, labels, theta_epochs)
    from fbnas.io import atomic_write_json

    atomic_write_json(folder.file("theta_history.json"), doc)
    save_probability_heatmap(folder.plot("theta_heatmap.png"), doc)


def run_alternating(net: Supernet, w_loader, t_loader, cost_model: CostModel, update: ArchitectureUpdate,
                    cfg: SearchConfig, folder: RunFolder, resuming: bool, dim_names: list[str],
                    labels: list[list[str]], log: Callable[[str], Any] = print,
                    stop_after_epoch: int | None = None, line: Callable[[dict], str] | None = None,
                    after_epoch: Callable[[list[dict]], Any] | None = None) -> list[dict] | None:
    """Train ``net`` for ``schedule.epochs`` (resuming from ``folder`` when asked); returns the per-epoch history,
    or None when ``stop_after_epoch`` ended the work early (tests of resume). ``line`` formats an epoch's record
    for the log (default :func:`epoch_line`); ``after_epoch(history)`` runs after every checkpoint (and on resume),
    for a strategy's own files."""
    wo = cfg.weights_optimizer
    weight_params = net.weight_parameters()
    opt_w = torch.optim.SGD(weight_params, lr=wo.lr, momentum=wo.momentum, weight_decay=wo.weight_decay,
                            nesterov=wo.nesterov and wo.momentum > 0)
    sched_w = weight_schedule(opt_w, cfg, len(w_loader))

    history: list[dict] = []
    theta_epochs: list[dict] = []
    start_epoch, elapsed = 0, 0.0

    def theta_names() -> set[str]:  # by identity, now: FP-NAS swaps its architecture parameters at FD -> JD
        arch_ids = {id(p) for p in net.arch_parameters()}
        return {f"model.{n}" for n, p in net.named_parameters() if id(p) in arch_ids}

    writer = distributed.world().is_writer  # data-parallel: only rank 0 writes the run folder

    def checkpoint(epoch: int) -> None:
        if not writer:
            return
        folder.save_checkpoint({"epoch": epoch, "model": net.state_dict(), "opt_weights": opt_w.state_dict(),
                                "arch_update": update.state_dict(), "sched_weights": sched_w.state_dict(),
                                "rng": rng_state(), "history": history, "theta_epochs": theta_epochs,
                                "elapsed_s": elapsed, "config": cfg.to_dict(), "world_size": distributed.world().size,
                                "argmax_choices": [int(c) for c in net.argmax_choices()]}, initial=epoch < 0)
        write_history_files(folder, history, theta_epochs, dim_names, labels)

    if resuming:
        ck = distributed.from_writer(folder.load_checkpoint)  # read by rank 0, sent to the others
        source = folder.file(folder.CHECKPOINT)
        with restoring(source):
            load_module_state(net, ck["model"], source)
            opt_w.load_state_dict(ck["opt_weights"])
            update.load_state_dict(ck["arch_update"])
            sched_w.load_state_dict(ck["sched_weights"])
            set_rng_state(ck["rng"])
            history, theta_epochs = list(ck["history"]), list(ck["theta_epochs"])
            start_epoch, elapsed = int(ck["epoch"]) + 1, float(ck.get("elapsed_s", 0.0))
        if writer:
            write_history_files(folder, history, theta_epochs, dim_names, labels)
            if after_epoch is not None:
                after_epoch(history)
        log(f"resuming {folder.path} after epoch {start_epoch - 1}" if start_epoch else
            f"resuming {folder.path} from its initial state")
        saved_world = int(ck.get("world_size", 1))
        if saved_world != distributed.world().size:
            log(f"note: resuming with {distributed.world().size} rank(s), the search used {saved_world}; it continues "
                "(same global batch and schedule) but is not bit-exact with an uninterrupted run")
    else:
        checkpoint(-1)  # the initial state: a search that stops in its first epoch still has one to keep

    for epoch in range(start_epoch, cfg.schedule.epochs):
        t0 = time.perf_counter()
        search_epoch = epoch >= cfg.schedule.warmup_epochs
        phase = "search" if search_epoch else "warmup"
        rec: dict[str, Any] = {"epoch": epoch, **update.epoch_info(epoch), "phase": phase}
        interleave = search_epoch and update.per_step
        try:
            rec.update(train_weights(net, w_loader, opt_w, sched_w, update, epoch, t_loader if interleave else None))
            if search_epoch and not update.per_step:
                rec.update(update.train_epoch(net, t_loader, epoch))
        except NonFinite as e:
            raise search_diverged(cfg, epoch, e.where, str(e), e.phase, rec.get("tau")) from None
        distributed.average_buffers(net)  # per-rank BN running statistics: every rank then holds what rank 0 saves
        rec["argmax_cost"] = cost_model.of_choices(net.argmax_choices())
        rec["lr"] = opt_w.param_groups[0]["lr"]
        elapsed += time.perf_counter() - t0
        rec["elapsed_s"] = round(elapsed, 3)
        check_epoch(cfg, epoch, rec, {"model": net.state_dict(), "opt_weights": opt_w.state_dict()["state"],
                                      "arch_update": update.state_dict()}, theta_names())
        history.append(rec)
        theta_epochs.append({"epoch": epoch, "tau": rec.get("tau"),
                             "theta": [t.detach().tolist() for t in net.arch_parameters()],
                             "probs": [p.tolist() for p in net.probabilities()]})
        checkpoint(epoch)
        if after_epoch is not None and writer:
            after_epoch(history)
        log(line(rec) if line is not None else epoch_line(rec, cost_model.unit))
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return None
    return history


THETA_METRICS = ("t_loss", "t_ce", "t_acc", "t_cost", "t_cost_pull")


def check_epoch(cfg: SearchConfig, epoch: int, rec: dict[str, Any], state: dict[str, Any],
                theta_names: set[str] = frozenset()) -> None:
    """Before the epoch's checkpoint: every metric of ``rec`` and every tensor of ``state`` finite
    (``theta_names``: the architecture parameters' names in ``state``, to name the likely cause)."""
    bad = nonfinite_metrics(rec)
    if bad:
        phase = "theta" if all(k in THETA_METRICS for k in bad) else "weights"
        raise search_diverged(cfg, epoch, "", f"{describe_names(bad)} {'is' if len(bad) == 1 else 'are'} "
                              f"{rec[bad[0]]}", phase, rec.get("tau"))
    names = nonfinite_tensors(state)
    if names:
        theta = all(n in theta_names or n.startswith("arch_update") for n in names)
        raise search_diverged(cfg, epoch, "", f"the state is not finite ({describe_names(names)})",
                              "theta" if theta else "weights", rec.get("tau"))


def search_diverged(cfg: SearchConfig, epoch: int, where: str, what: str, phase: str,
                    tau: float | None) -> DivergenceError:
    """The stop message (epoch, value, likely cause); :func:`fbnas.search.strategy.run_search` adds the run
    folder and what it kept."""
    if phase == "weights":
        cause = f"weights_optimizer.lr {cfg.weights_optimizer.lr:g} is too high"
    else:
        t = f" or the Gumbel temperature {tau:.3g} too low" if tau is not None else ""
        cause = f"theta_optimizer.lr {cfg.theta_optimizer.lr:g} is too high{t} (or the cost term: loss.*)"
    at = f" ({where})" if where else ""
    return DivergenceError(f"search diverged in epoch {epoch}{at}: {what}; likely cause: {cause}")
