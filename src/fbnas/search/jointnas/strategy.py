"""FBNetV3 JointNAS (seed 000, "FBNet V3"; seed 004): ``fbnas search jointnas --config FILE --out DIR [--preset
quick] [--resume] [--reuse-predictor DIR]``.

max acc(A, h) subject to g_i(A) <= C_i over architectures A and training recipes h, in two stages around a
small neural predictor: the coarse stage (:mod:`.coarse`) trains the predictor iteratively on candidates
picked from a quasi-Monte-Carlo pool, after calibrating the early-stopping epoch; the fine stage
(:mod:`.fine`) is an adaptive genetic algorithm that queries only the predictor. With
``--reuse-predictor DIR`` only the fine stage runs, with DIR's predictor and trials, under this config's
constraints ("in CPU minutes" in the paper; seconds here).

The run folder holds ``trials/<id>/`` (one per trained candidate), ``predictor.pt`` (the fitted predictor,
``weights_only``), ``metrics.jsonl`` (one row per coarse iteration), ``checkpoint.pt`` (the state after each
iteration), ``plots/`` and ``result.json``: the top-1 pair as ``sample`` + ``arch`` + ``recipe``, the top-K
under ``samples``, the coarse and fine stages' records, ``timing``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fbnas.errors import FbnasError
from fbnas.runs import RunFolder
from fbnas.search.jointnas import plots
from fbnas.search.jointnas.coarse import Context, arch_costs, measured_acc, ranked_by_measured, run_coarse
from fbnas.search.jointnas.config import JointNasConfig
from fbnas.search.jointnas.fine import FineResult, run_fine
from fbnas.search.jointnas.predictor import AccuracyPredictor, pretrain, rank_metrics
from fbnas.search.jointnas.spaces import Constraints, joint_space
from fbnas.search.jointnas.trials import ProxyData, proxy_split, read_finished
from fbnas.search.jointnas.verify import VerifyResult, run_verify
from fbnas.search.strategy import register_strategy
from fbnas.space import JointSpace

PREDICTOR = "predictor.pt"

_SMOKE_SPACE = {
    "kind": "stagewise", "name": "jointnas_smoke", "input_size": 28, "in_channels": 1, "resolutions": [12, 16],
    "width_divisor": 8, "act": "hswish", "stem": {"c": [8], "s": 2, "k": 3},
    "stages": [{"c": [8, 16], "s": 2, "n": [1, 2], "e": [1, 2], "k": [3, 5], "se": [False, True]},
               {"c": [16, 24], "s": 2, "n": 1, "e": [2, 3], "k": 3, "se": False}],
    "last": {"c": 32}, "head": {"dropout": 0.0},
}


class JointNas:
    name = "jointnas"
    help = "FBNetV3 JointNAS: predictor-guided joint search of architecture and training recipe"
    config_model = JointNasConfig
    smoke_config: dict[str, Any] = {
        "seed": 3, "threads": 1,
        "data": {"name": "synthetic"},
        "constraints": {"macs": 0.5},
        "jointnas": {
            "space": {"arch": _SMOKE_SPACE},
            "proxy": {"train_images": 192, "val_images": 96, "epochs": 3, "recipe": {"batch_size": 48}},
            "calibration": {"candidates": 4},
            "predictor": {"encoder": [16, 8], "head": [8], "pretrain_samples": 64, "pretrain_epochs": 3,
                          "freeze_epochs": 4, "finetune_epochs": 4, "ensemble": 2},
            "coarse": {"pool": 48, "batch": 3, "iterations": 2},
            "evolution": {"population": 6, "children": 8, "generations": 6, "stall": 3, "top_k": 3},
            "verify": {"candidates": 2},
            "executor": {"kind": "sequential", "threads": 1},
        },
    }
    plots = [plots.PREDICTED_VS_MEASURED, plots.EARLY_STOP, plots.ACCURACY_VS_COST]
    cli_options = [("--reuse-predictor", "jointnas.reuse_predictor", "DIR",
                    "reuse DIR's predictor and trials: rerun only the fine stage under this config's constraints")]

    def expected_epochs(self, cfg: JointNasConfig) -> int:
        """Rows of metrics.jsonl: one per coarse iteration (none when the predictor is reused)."""
        return 0 if cfg.jointnas.reuse_predictor else cfg.jointnas.coarse.iterations

    def space(self, cfg: JointNasConfig) -> JointSpace:
        return joint_space(cfg.jointnas.space)

    def run(self, cfg: JointNasConfig, folder: RunFolder, *, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None = None, source: str = "config") -> dict[str, Any] | None:
        t0 = time.perf_counter()
        space = joint_space(cfg.jointnas.space, source)
        if cfg.jointnas.reuse_predictor:
            return self._reuse(cfg, space, folder, log, source, t0)
        from fbnas.search.executors import make_executor
        from fbnas.search.jointnas.trials import proxy_tensors

        jn = cfg.jointnas
        data = ProxyData(cfg.data.name, cfg.data.dir, jn.proxy.train_images, jn.proxy.val_images, cfg.seed,
                         cfg.data.channels_last, jn.proxy.bn_images)
        arch_part = space.parts["arch"]
        full = arch_part.build(arch_part.default_sample()).arch
        tensors, _, _ = proxy_tensors(data, full.input_size)
        try:
            proxy_split(len(tensors), data)
        except FbnasError as e:
            raise FbnasError(f"{source}: {e}") from None
        if tensors.channels != full.in_channels:
            raise FbnasError(f"{source}: jointnas.space.arch: the space takes {full.in_channels}-channel images, "
                             f"{cfg.data.name!r} has {tensors.channels}")
        num_classes = int(tensors.num_classes)
        lut = self._lut(cfg, space, num_classes, log)
        constraints = Constraints(space, cfg.constraints.active(), num_classes, lut)
        folder.save_checkpoint({"stage": "start", "iteration": -1})  # the folder holds a run from here on
        t_pre = time.perf_counter()
        pc = jn.predictor
        what = (f"pretraining the encoder on MACs / params of {pc.pretrain_samples} free samples" if pc.pretrain
                else "random encoders (no pretraining)")
        log(f"predictor: {what}, {pc.ensemble} member(s)")
        pre = pretrain(space, jn.predictor, cfg.seed, arch_costs(space, num_classes))
        pretrain_s = time.perf_counter() - t_pre
        ex = jn.executor
        executor = make_executor(ex.kind, ex.workers, ex.threads, ex.address, ex.max_retries)
        where = f" at {ex.address}" if ex.kind == "ray" else ""
        log(f"executor: {ex.kind}{where}, " + (f"{ex.workers} workers x {ex.threads} threads"
                                                if ex.kind != "sequential" else f"{ex.threads} thread(s)"))
        base = dict(jn.proxy.recipe)
        ctx = Context(space, cfg, folder, constraints, data, num_classes, base, executor, log)

        def checkpoint(state: dict[str, Any]) -> None:
            folder.save_checkpoint({"stage": "coarse", **state})

        verified = None
        try:
            coarse = run_coarse(ctx, pre, checkpoint)
            coarse.predictor.save(folder.file(PREDICTOR), {"early_stop_epoch": coarse.early_stop,
                                                           "trials": sorted(coarse.trials)})
            ranked = [coarse.trials[t]["sample"] for t in coarse.ranked()]
            fine = run_fine(space, cfg, coarse.predictor, constraints, ranked, base, num_classes, folder.path, log)
            if jn.verify.candidates:
                folder.save_checkpoint({"stage": "verify", "iteration": len(coarse.iterations) - 1,
                                        "early_stop_epoch": coarse.early_stop})
                verified = run_verify(ctx, coarse, fine, coarse.predictor, jn.verify.candidates,
                                      jn.evolution.top_k)
        finally:
            executor.close()
        folder.save_checkpoint({"stage": "done", "iteration": len(coarse.iterations) - 1,
                                "early_stop_epoch": coarse.early_stop, "predictor": coarse.predictor.state()})
        coarse_block = self._coarse_block(coarse)
        result = self._result(cfg, space, fine, coarse_block, constraints, num_classes, None, verified)
        self._plots(folder, coarse, fine, constraints, jn.calibration.threshold, verified)
        result["timing"] = {"pretrain_s": pretrain_s, "calibration_s": coarse.seconds.get("calibration"),
                            "coarse_s": coarse.seconds.get("coarse"), "fine_s": fine.seconds,
                            "verify_s": None if verified is None else verified.seconds,
                            "total_s": time.perf_counter() - t0}
        verify_s = "" if verified is None else f", verification {verified.seconds:.0f} s"
        log(f"timing: pretraining {pretrain_s:.0f} s, coarse stage {coarse.seconds.get('coarse', 0):.0f} s "
            f"(calibration {coarse.seconds.get('calibration', 0):.0f} s), fine stage {fine.seconds:.1f} s{verify_s}")
        return result

    # ---- pieces ------------------------------------------------------------------------------------
    def _lut(self, cfg: JointNasConfig, space: JointSpace, num_classes: int, log: Callable[[str], Any]):
        if cfg.constraints.latency_ms is None:
            return None
        from fbnas.search.common import load_latency_table

        return load_latency_table(cfg, space.parts["arch"], num_classes, log)

    def _coarse_block(self, coarse) -> dict[str, Any]:
        trials = {}
        for tid in sorted(coarse.trials):
            t = coarse.trials[tid]
            trials[tid] = {"role": t["role"], "acc": measured_acc(t, coarse.early_stop), "curve": t["curve"],
                           "diverged": t.get("diverged") is not None, "macs": t["costs"].get("macs"),
                           "params": t["costs"].get("params"), "latency_ms": t["costs"].get("latency_ms")}
        ahead_p = [p for b in coarse.ahead for p in b["predicted"]]
        ahead_m = [m for b in coarse.ahead for m in b["measured"]]
        best = coarse.ranked()[0]
        return {"trials": len(coarse.trials), "early_stop_epoch": coarse.early_stop,
                "rank_correlation_by_epoch": coarse.correlation, "iterations": coarse.iterations,
                "held_out_next_batch": {**rank_metrics(ahead_p, ahead_m), "batches": coarse.ahead},
                "best_trial": {"id": best, "acc": measured_acc(coarse.trials[best], coarse.early_stop),
                               "sample": coarse.trials[best]["sample"]},
                "by_trial": trials}

    def _result(self, cfg: JointNasConfig, space: JointSpace, fine: FineResult, coarse_block: dict[str, Any],
                constraints: Constraints, num_classes: int, reused: str | None,
                verified: VerifyResult | None = None) -> dict[str, Any]:
        top = fine.top if verified is None else verified.top
        ga = fine.ga
        fine_block = {"seeds": fine.seeds, "generations": len(ga.history), "stopped": ga.stopped,
                      "scored": len(ga.archive), "history": ga.history}
        if verified is not None:
            fine_block["top"] = fine.top  # the GA's top-K by prediction (before verification)
        return {
            "strategy": "jointnas", **top[0], "samples": top, "objective": cfg.jointnas.evolution.objective,
            "selected_by": "predicted" if verified is None else "measured",
            "caps": constraints.caps, "num_classes": num_classes,
            "space": {"arch": space.parts["arch"].name, "recipe": list(cfg.jointnas.space.recipe)},
            "reused_predictor": reused, "coarse": coarse_block, "fine": fine_block,
            "verify": None if verified is None else verified.check,
            "predictor": {"path": PREDICTOR},
        }

    def _plots(self, folder: RunFolder, coarse, fine: FineResult, constraints: Constraints, threshold: float,
               verified: VerifyResult | None = None) -> None:
        trials = {**coarse.trials, **({} if verified is None else verified.trials)}
        jn_trials = [{"acc": measured_acc(t, coarse.early_stop), **t["costs"]} for t in trials.values()]
        ids = sorted(coarse.trials)
        fitted = (coarse.predictor.predict([coarse.trials[t]["sample"] for t in ids]).tolist(),
                  [measured_acc(coarse.trials[t], coarse.early_stop) for t in ids])
        ahead = list(coarse.ahead)
        if verified is not None and verified.check["trials"]:
            ahead.append({**verified.check, "iteration": "verification"})
        plots.predicted_vs_measured(folder.plot(plots.PREDICTED_VS_MEASURED), ahead, fitted)
        calib = [t["curve"] for t in coarse.trials.values() if t["role"] == "calibration"]
        plots.early_stop(folder.plot(plots.EARLY_STOP), coarse.correlation, coarse.early_stop, threshold, calib)
        top = [{"predicted_acc": t["predicted_acc"], "measured_acc": t.get("measured_acc"), "macs": t["macs"] / 1e6,
                "latency_ms": t["latency_ms"]} for t in (fine.top if verified is None else verified.top)]
        plots.accuracy_vs_cost(folder.plot(plots.ACCURACY_VS_COST), jn_trials, fine.archive, top, constraints.caps)

    def _reuse(self, cfg: JointNasConfig, space: JointSpace, folder: RunFolder, log: Callable[[str], Any],
               source: str, t0: float) -> dict[str, Any]:
        """Only the fine stage, with the predictor and trials of a finished run, under this config's constraints."""
        src = RunFolder(cfg.jointnas.reuse_predictor, "search")
        where = f"{source}: jointnas.reuse_predictor"
        if not src.file(PREDICTOR).exists() or not src.is_finished:
            raise FbnasError(f"{where}: {src.path} is not a finished JointNAS run (needs {PREDICTOR} and result.json)")
        if src.path.resolve() == folder.path.resolve():
            raise FbnasError(f"{where}: write the new result to another --out than the reused run")
        prev = src.read_result() or {}
        if prev.get("strategy") != "jointnas":
            raise FbnasError(f"{where}: {src.path} holds a {prev.get('strategy')!r} result, not a JointNAS run")
        predictor = AccuracyPredictor.load(src.file(PREDICTOR), space, cfg.jointnas.predictor)
        num_classes = int(prev["num_classes"])
        early = int(prev["coarse"]["early_stop_epoch"])
        trials = read_finished(src.path / RunFolder.TRIALS)
        log(f"reusing the predictor of {src.path} ({len(trials)} trials, early-stopping epoch {early}); only the "
            "fine stage runs")
        lut = self._lut(cfg, space, num_classes, log)
        constraints = Constraints(space, cfg.constraints.active(), num_classes, lut)
        folder.save_checkpoint({"stage": "fine", "reused_predictor": str(src.path)})
        folder.write_metrics([])
        ranked = [trials[t]["sample"] for t in ranked_by_measured(trials, early)]
        base = dict(cfg.jointnas.proxy.recipe)
        fine = run_fine(space, cfg, predictor, constraints, ranked, base, num_classes, folder.path, log)
        coarse_block = {k: v for k, v in prev["coarse"].items() if k != "by_trial"}
        coarse_block["reused_from"] = str(src.path)
        result = self._result(cfg, space, fine, coarse_block, constraints, num_classes, str(src.path))
        jn_trials = [{"acc": measured_acc(t, early), **t["costs"]} for t in trials.values()]
        top = [{"predicted_acc": t["predicted_acc"], "macs": t["macs"] / 1e6, "latency_ms": t["latency_ms"]}
               for t in fine.top]
        plots.accuracy_vs_cost(folder.plot(plots.ACCURACY_VS_COST), jn_trials, fine.archive, top, constraints.caps)
        result["timing"] = {"fine_s": fine.seconds, "total_s": time.perf_counter() - t0}
        log(f"timing: fine stage {fine.seconds:.1f} s (predictor reused)")
        return result

    def format_result(self, result: dict[str, Any]) -> str:
        return format_result(result)


def describe_sample(result: dict[str, Any]) -> list[str]:
    """The found pair, readable: resolution, stem, one line per stage, the recipe."""
    s = result["sample"]
    lines = [f"  resolution {s.get('arch.res')} px, stem {s.get('arch.stem.c')} channels"]
    i = 0
    while f"arch.s{i}.k" in s:
        c = s.get(f"arch.s{i}.c", "same")
        lines.append(f"  stage {i}: k{s[f'arch.s{i}.k']} e{s[f'arch.s{i}.e']} c{c} n{s[f'arch.s{i}.n']} "
                     f"se {'on' if s[f'arch.s{i}.se'] else 'off'}")
        i += 1
    rec = ", ".join(f"{k.removeprefix('recipe.')} {v:.4g}" if isinstance(v, float) else
                    f"{k.removeprefix('recipe.')} {v}" for k, v in s.items() if k.startswith("recipe."))
    lines.append(f"  recipe: {rec}")
    return lines


def format_result(result: dict[str, Any]) -> str:
    measured = result.get("selected_by") == "measured"
    head = ("found (architecture, recipe), the best measured trained pair:" if measured
            else "found (architecture, recipe), top-1 of the fine stage:")
    lines = [head, *describe_sample(result)]
    lat = result.get("latency_ms")
    lat_s = f"   latency {lat:.3f} ms (LUT)" if lat is not None else ""
    acc_s = (f"measured proxy accuracy {100 * result['measured_acc']:.2f}% ({result['trial']}, {result['role']}), "
             f"predicted {100 * result['predicted_acc']:.2f}%" if measured
             else f"predicted proxy accuracy {100 * result['predicted_acc']:.2f}%")
    lines.append(f"{acc_s}   MACs {result['macs'] / 1e6:.3f} M   params {result['params'] / 1e6:.3f} M{lat_s}")
    for name, c in (result.get("constraints") or {}).items():
        lines.append(f"cap {name}: {c['value']:.4g} <= {c['limit']:g} {c['unit']}")
    lines.append("top-K (" + ("measured" if measured else "predicted") + " proxy accuracy, MMACs):")
    for e in result.get("samples", []):
        acc = e["measured_acc"] if measured else e["predicted_acc"]
        lines.append(f"  #{e['rank']}: {100 * acc:.2f}%  {e['macs'] / 1e6:.2f} MMACs  {e['params'] / 1e6:.3f} M params"
                     + (f"  ({e['trial']}, {e['role']})" if measured else ""))
    ver = result.get("verify")
    if ver and ver.get("trials"):
        rho = "" if ver.get("spearman") is None else f", predicted vs measured Spearman {ver['spearman']:.2f}"
        lines.append(f"verification: {len(ver['trials'])} GA proposals trained{rho}")
    co = result.get("coarse", {})
    if co:
        best = co.get("best_trial", {})
        lines.append(f"coarse stage: {co.get('trials')} trials, early-stopping epoch {co.get('early_stop_epoch')}, "
                     f"best measured {100 * best.get('acc', 0):.2f}% ({best.get('id')})"
                     + (f"; reused from {co['reused_from']}" if co.get("reused_from") else ""))
    fi = result.get("fine", {})
    lines.append(f"fine stage: {fi.get('generations')} generations ({fi.get('stopped')}), {fi.get('scored')} pairs "
                 "scored by the predictor")
    return "\n".join(lines)


register_strategy(JointNas())
