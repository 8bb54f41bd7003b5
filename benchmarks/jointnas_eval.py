"""JointNAS measurements on top of a finished search (``fbnas search jointnas ... --out SEARCH``).

    random     train N random (architecture, recipe) pairs of the search's space under its constraints on its
               proxy, stopped at its early-stopping epoch (uniform samples; the random search of equal cost and
               the held-out set of the predictor): OUT/trials/r0000 ...
    predictor  the search's predictor on the random trials (never used to fit it): Spearman / Kendall; the
               pretraining ablation: K random splits of all trials (the search's and the random ones) into
               TRAIN fitting / the rest held out, the encoder pretrained on MACs / params vs randomly
               initialised (same seeds)
    retrain    retrain, with the same epochs and seeds: JointNAS's top-1 with its searched recipe, the same
               architecture with the default recipe (and, --with-base, with the proxy's base recipe: batch
               size and warm-up of the search, the searched fields at their defaults), and the random search's
               proxy-best (among the first M random trials, M = the search's number of trials) with its
               recipe; test accuracy
    refit      the search's predictor refitted on its coarse trials under its config with --set overrides,
               scored on the random trials (a predictor change measured without training anything)
    retest     the proxy's test-retest reliability: the first N random trials trained again with another
               training seed; Spearman between the two measurements (the ceiling of any predictor's)

    python benchmarks/jointnas_eval.py random --search runs/jn --n 60 --out runs/jn_random
    python benchmarks/jointnas_eval.py predictor --search runs/jn --random runs/jn_random --json out.json
    python benchmarks/jointnas_eval.py retrain --search runs/jn --random runs/jn_random --epochs 4 \\
        --limit-train 20000 --seeds 0,1 --jobs 2 --out runs/jn_retrain --json out.json
    python benchmarks/jointnas_eval.py retest --search runs/jn --random runs/jn_random --n 30 --out runs/jn_retest

Every step is resumable: trials and retrainings already finished are read back, not redone.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load_search(path: str, overrides: list[str] | None = None):
    """The search's folder, config (with ``--set`` overrides laid over it), joint space and result."""
    from fbnas.config import deep_merge, parse_override
    from fbnas.runs import RunFolder
    from fbnas.search.jointnas.config import JointNasConfig
    from fbnas.search.jointnas.spaces import joint_space

    folder = RunFolder(path, "search")
    result = folder.read_result()
    if result is None or result.get("strategy") != "jointnas":
        raise SystemExit(f"{path}: not a finished JointNAS search")
    raw = folder.read_config()
    for text in overrides or []:
        raw = deep_merge(raw, parse_override(text))
    where = str(folder.file(folder.CONFIG)) + (" + --set" if overrides else "")
    cfg = JointNasConfig.parse(raw, where)
    return folder, cfg, joint_space(cfg.jointnas.space), result


def search_trials(folder) -> dict[str, dict]:
    from fbnas.search.jointnas.trials import read_finished

    return read_finished(folder.path / "trials")


def proxy_context(cfg, space, result: dict, out_dir: str, workers: int | None):
    """The search's proxy (its data split, caps, base recipe) with an executor, training into ``out_dir``."""
    from fbnas.runs import RunFolder
    from fbnas.search.executors import make_executor
    from fbnas.search.jointnas.coarse import Context
    from fbnas.search.jointnas.spaces import Constraints
    from fbnas.search.jointnas.trials import ProxyData, proxy_tensors

    jn = cfg.jointnas
    data = ProxyData(cfg.data.name, cfg.data.dir, jn.proxy.train_images, jn.proxy.val_images, cfg.seed,
                     cfg.data.channels_last, jn.proxy.bn_images)
    tensors, _, _ = proxy_tensors(data, 28)
    out = RunFolder(out_dir, "search")
    out.path.mkdir(parents=True, exist_ok=True)
    ex = jn.executor
    executor = make_executor(ex.kind, workers or ex.workers, ex.threads)
    cons = Constraints(space, cfg.constraints.active(), int(result["num_classes"]))
    return Context(space, cfg, out, cons, data, int(tensors.num_classes), dict(jn.proxy.recipe), executor,
                   lambda m: print(m, flush=True))


def cmd_random(args: argparse.Namespace) -> None:
    from fbnas.search.jointnas.coarse import make_task, train_tasks
    from fbnas.search.jointnas.spaces import sample_key

    folder, cfg, space, result = load_search(args.search)
    early = int(result["coarse"]["early_stop_epoch"])
    ctx = proxy_context(cfg, space, result, args.out, None)
    cons = ctx.constraints
    samples, seen, step = [], set(), 0
    while len(samples) < args.n:  # uniform samples under the constraints, keyed by (seed, step, stream)
        s = space.sample(cfg.seed, step, stream=97)
        step += 1
        if sample_key(s) not in seen and cons.ok(s):
            seen.add(sample_key(s))
            samples.append(s)
    tasks = [make_task(ctx, f"r{i:04d}", "random", s, early) for i, s in enumerate(samples)]
    t0 = time.perf_counter()
    try:
        train_tasks(ctx, tasks, "random")
    finally:
        ctx.executor.close()
    print(f"{len(tasks)} random trials in {time.perf_counter() - t0:.0f} s -> {ctx.folder.path / 'trials'}")


def cmd_retest(args: argparse.Namespace) -> dict[str, Any]:
    """The proxy's test-retest reliability: the first N random trials trained again with another training seed
    (same sample, recipe, data split and validation images). Spearman between the two measurements bounds what
    any predictor can reach against one of them (about sqrt of it, when the noise is independent)."""
    import dataclasses

    from fbnas.runs import RunFolder
    from fbnas.search.jointnas.coarse import make_task, train_tasks
    from fbnas.search.jointnas.predictor import rank_metrics

    folder, cfg, space, result = load_search(args.search)
    early = int(result["coarse"]["early_stop_epoch"])
    rnd = search_trials(RunFolder(args.random, "search"))
    ids = args.ids.split(",") if args.ids else sorted(rnd)[: args.n]
    missing = [t for t in ids if t not in rnd]
    if missing:
        raise SystemExit(f"{args.random}: no finished trial {', '.join(missing)}")
    ctx = proxy_context(cfg, space, result, args.out, args.workers)
    tasks = []
    for t in ids:
        task = make_task(ctx, t, "retest", rnd[t]["sample"], early)
        if task.recipe != rnd[t]["recipe"]:
            raise SystemExit(f"{args.random}/trials/{t}: made with another recipe than this search's config")
        tasks.append(dataclasses.replace(task, recipe={**task.recipe, "seed": args.seed}))
    try:
        again = train_tasks(ctx, tasks, "retest")
    finally:
        ctx.executor.close()
    first = _accs({t: rnd[t] for t in ids}, early)
    second = _accs(again, early)
    both = rank_metrics([first[t] for t in ids], [second[t] for t in ids])
    diffs = [100 * (second[t] - first[t]) for t in ids]
    out_json = {"search": args.search, "random": args.random, "n": len(ids), "seed": args.seed,
                "early_stop_epoch": early, "test_retest": both,
                "spearman_ceiling_sqrt": math.sqrt(max(0.0, both["spearman"])),
                "abs_diff_points": {"mean": statistics.fmean(abs(d) for d in diffs), "max": max(abs(d) for d in diffs)},
                "pairs": {t: [first[t], second[t]] for t in ids}}
    print(f"test-retest on {len(ids)} random trials: {both}; mean |diff| "
          f"{out_json['abs_diff_points']['mean']:.2f} points", flush=True)
    return out_json


def cmd_refit(args: argparse.Namespace) -> dict[str, Any]:
    """The search's predictor refitted on the same trials (the coarse ones, as after the coarse stage) under its
    config with ``--set`` overrides (e.g. the recipe encoding), scored on the random trials: what a predictor
    change would have given, without retraining anything."""
    from fbnas.runs import RunFolder
    from fbnas.search.jointnas.coarse import arch_costs
    from fbnas.search.jointnas.predictor import fit_predictor, pretrain, rank_metrics

    folder, cfg, space, result = load_search(args.search, args.set)
    early = int(result["coarse"]["early_stop_epoch"])
    trials = search_trials(folder)
    fit_ids = [t for t in sorted(trials) if trials[t]["role"] != "verify"]
    fit_acc = _accs({t: trials[t] for t in fit_ids}, early)
    rnd = search_trials(RunFolder(args.random, "search"))
    ids = sorted(rnd)
    acc = _accs(rnd, early)
    pc = cfg.jointnas.predictor
    pre = pretrain(space, pc, cfg.seed, arch_costs(space, int(result["num_classes"])))
    rows = []
    for k in range(args.repeats):  # the fit's initialisations and bootstrap draws keyed by k: its own spread
        p = fit_predictor(space, [trials[t]["sample"] for t in fit_ids], [fit_acc[t] for t in fit_ids], pc,
                          cfg.seed, pre, f"refit{k}")
        rows.append(rank_metrics(p.predict([rnd[t]["sample"] for t in ids]).tolist(), [acc[t] for t in ids]))
        print(f"refit {k}: {rows[-1]}", flush=True)
    mean = {m: statistics.fmean(r[m] for r in rows) for m in ("spearman", "kendall")}
    spread = {m: [min(r[m] for r in rows), max(r[m] for r in rows)] for m in ("spearman", "kendall")}
    print(f"refitted on {len(fit_ids)} trials with {args.set or 'no overrides'}, on {len(ids)} random trials, "
          f"{args.repeats} fits: mean {mean}, range {spread}")
    return {"search": args.search, "random": args.random, "set": args.set, "fit_trials": len(fit_ids),
            "random_trials": len(ids), "recipe_encoding_size": space.parts["recipe"].encoding_size,
            "fits": rows, "mean": mean, "range": spread}


def _accs(trials: dict[str, dict], early: int) -> dict[str, float]:
    from fbnas.search.jointnas.coarse import measured_acc

    return {t: measured_acc(r, early) for t, r in trials.items()}


def cmd_predictor(args: argparse.Namespace) -> dict[str, Any]:
    from fbnas.search.jointnas.predictor import AccuracyPredictor, fit_predictor, rank_metrics

    folder, cfg, space, result = load_search(args.search, args.set)
    early = int(result["coarse"]["early_stop_epoch"])
    if args.random is None and not args.ablation_only:
        raise SystemExit("predictor: --random is required (the held-out trials) unless --ablation-only")
    rnd = search_trials(type(folder)(args.random, "search")) if args.random else {}
    ids = sorted(rnd)
    acc = _accs(rnd, early)
    pc = cfg.jointnas.predictor
    s_trials = search_trials(folder)
    s_acc = _accs(s_trials, early)
    out: dict[str, Any] = {"search": args.search, "random": args.random, "early_stop_epoch": early,
                           "set": args.set, "search_trials": len(s_trials), "random_trials": len(ids),
                           # predictor.pt is fitted after the coarse stage: on every trial but the verified ones
                           "predictor_fit_trials": sum(1 for t in s_trials.values() if t["role"] != "verify")}
    pre = _pretrained_pair(cfg, space, result)
    pooled = {**{f"s:{t}": s_trials[t] for t in s_trials}, **{f"r:{t}": rnd[t] for t in rnd}}
    pooled_acc = {**{f"s:{t}": s_acc[t] for t in s_trials}, **{f"r:{t}": acc[t] for t in rnd}}
    if args.ablation_only:
        return _ablation(args, out, space, pc, cfg.seed, pre, pooled, pooled_acc)
    predictor = AccuracyPredictor.load(folder.file("predictor.pt"), space, pc)
    pred = predictor.predict([rnd[t]["sample"] for t in ids])
    out["search_predictor_on_random"] = rank_metrics(pred.tolist(), [acc[t] for t in ids])
    print(f"search's predictor ({out['predictor_fit_trials']} trials) on {len(ids)} held-out random trials: "
          f"{out['search_predictor_on_random']}", flush=True)
    # search trials + part of the random ones, evaluated on the rest of the random ones
    half = ids[: len(ids) // 2]
    held = ids[len(ids) // 2:]
    fit_samples = [s_trials[t]["sample"] for t in sorted(s_trials)] + [rnd[t]["sample"] for t in half]
    fit_acc = [s_acc[t] for t in sorted(s_trials)] + [acc[t] for t in half]
    p2 = fit_predictor(space, fit_samples, fit_acc, pc, cfg.seed, pre[True], "eval")
    out["search_plus_half_random_on_other_half"] = {
        "fit": len(fit_samples), **rank_metrics(p2.predict([rnd[t]["sample"] for t in held]).tolist(),
                                                [acc[t] for t in held])}
    print(f"predictor on {len(fit_samples)} trials (search + half the random ones), on the other {len(held)}: "
          f"{out['search_plus_half_random_on_other_half']}", flush=True)
    return _ablation(args, out, space, pc, cfg.seed, pre, pooled, pooled_acc)


def _pretrained_pair(cfg, space, result) -> dict[bool, Any]:
    """The ensemble's encoders pretrained on MACs / params, and at their random initialisation (same seeds)."""
    from fbnas.search.jointnas.coarse import arch_costs
    from fbnas.search.jointnas.predictor import pretrain

    pc = cfg.jointnas.predictor
    costs = arch_costs(space, int(result["num_classes"]))
    return {True: pretrain(space, pc, cfg.seed, costs), False: pretrain(space, pc.replace(pretrain=False), cfg.seed,
                                                                        costs)}


def _ablation(args, out, space, pc, seed: int, pre, pooled, pooled_acc) -> dict[str, Any]:
    """The pretraining ablation: K random splits of the pooled trials (the search's and the random ones), TRAIN
    of them fitted and the rest held out, with the pretrained and the randomly initialised encoders."""
    from fbnas.search.jointnas.predictor import fit_predictor, rank_metrics

    rows = []
    keys = sorted(pooled)
    for k in range(args.splits):  # the search's and the random trials pooled; TRAIN fit, the rest held out
        perm = np.random.default_rng(1000 + k).permutation(len(keys))
        train = [keys[i] for i in perm[:args.train]]
        test = [keys[i] for i in perm[args.train:]]
        row: dict[str, Any] = {"split": k, "train": len(train), "test": len(test)}
        for pretrained in (True, False):
            p = fit_predictor(space, [pooled[t]["sample"] for t in train], [pooled_acc[t] for t in train], pc,
                              seed, pre[pretrained], f"split{k}")
            row["pretrained" if pretrained else "random_init"] = rank_metrics(
                p.predict([pooled[t]["sample"] for t in test]).tolist(), [pooled_acc[t] for t in test])
        rows.append(row)
        print(f"split {k}: pretrained {row['pretrained']}, random init {row['random_init']}", flush=True)
    mean = {m: {k: statistics.fmean(r[m][k] for r in rows) for k in ("spearman", "kendall")}
            for m in ("pretrained", "random_init")}
    out["ablation"] = {"splits": rows, "mean": mean,
                       "pretrained_at_least_random": mean["pretrained"]["spearman"] >= mean["random_init"]["spearman"]}
    print(f"ablation, mean over {args.splits} splits: {mean}")
    return out


def _train(run_dir: Path, arch_file: Path, seed: int, args: argparse.Namespace, recipe_args: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "fbnas.cli", "train", "--arch", str(arch_file), "--data", "fashion-mnist",
           "--epochs", str(args.epochs), "--seed", str(seed), "--threads", str(args.threads), "--no-progress",
           "--out", str(run_dir), *recipe_args]
    if args.limit_train:
        cmd += ["--limit-train", str(args.limit_train)]
    return cmd


def _finished(run_dir: Path) -> dict | None:
    p = run_dir / "result.json"
    return json.loads(p.read_text()) if p.exists() else None


def cmd_retrain(args: argparse.Namespace) -> dict[str, Any]:
    from fbnas.io import atomic_write_json

    folder, cfg, space, result = load_search(args.search)
    early = int(result["coarse"]["early_stop_epoch"])
    s_trials = search_trials(folder)
    rnd = search_trials(type(folder)(args.random, "search"))
    m = args.random_trials or len(s_trials)
    first = sorted(rnd)[:m]
    if len(first) < m:
        raise SystemExit(f"{args.random}: {len(first)} random trials, the search trained {m}; train more first")
    acc = _accs(rnd, early)
    best = max(first, key=lambda t: (acc[t], t))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    arch_only = out_dir / "jointnas_top1.arch.json"
    atomic_write_json(arch_only, result["arch"])
    from fbnas.search.jointnas.fine import retrain_recipe

    random_best = out_dir / "random_best.result.json"
    atomic_write_json(random_best, {"arch": rnd[best]["arch"], "recipe": retrain_recipe(
        space, dict(cfg.jointnas.proxy.recipe), rnd[best]["sample"]), "sample": rnd[best]["sample"]})
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {"jointnas_searched_recipe": (Path(args.search) / "result.json", []),
            "jointnas_default_recipe": (arch_only, []),
            "random_best_its_recipe": (random_best, [])}
    if args.with_base:  # the proxy's base recipe (batch size, warm-up) with the searched fields at their defaults
        from fbnas.train.recipe import Recipe

        base = Recipe.from_dict(dict(cfg.jointnas.proxy.recipe)).to_dict()
        base_file = out_dir / "jointnas_base.result.json"
        atomic_write_json(base_file, {"arch": result["arch"], "recipe": {
            k: v for k, v in base.items() if k not in ("epochs", "seed", "threads")}})
        runs["jointnas_base_recipe"] = (base_file, [])
    if args.only:
        only = set(args.only.split(","))
        if only - set(runs):
            raise SystemExit(f"--only: unknown run(s) {', '.join(sorted(only - set(runs)))}; runs: {', '.join(runs)}")
        runs = {k: v for k, v in runs.items() if k in only}
    jobs = [(name, seed, out_dir / f"{name}.seed{seed}", arch, extra) for seed in seeds
            for name, (arch, extra) in runs.items()]
    pending, running = [j for j in jobs if _finished(j[2]) is None], []
    t0 = time.perf_counter()
    while pending or running:
        while pending and len(running) < args.jobs:
            name, seed, run_dir, arch, extra = pending.pop(0)
            resume = (run_dir / "checkpoint.pt").exists()
            cmd = ([sys.executable, "-m", "fbnas.cli", "train", "--resume", str(run_dir), "--no-progress"] if resume
                   else _train(run_dir, arch, seed, args, extra))
            print(f"retraining {name} seed {seed} -> {run_dir}", flush=True)
            log = open(run_dir.with_suffix(".log"), "a")  # noqa: SIM115 (closed when the run ends)
            running.append((name, seed, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        time.sleep(2.0)
        for item in list(running):
            if item[2].poll() is not None:
                running.remove(item)
                item[3].close()
                if item[2].returncode != 0:
                    raise SystemExit(f"retraining {item[0]} seed {item[1]} failed (exit {item[2].returncode})")
                print(f"finished {item[0]} seed {item[1]} [{time.perf_counter() - t0:.0f} s]", flush=True)
    table: dict[str, Any] = {}
    for name, seed, run_dir, _, _ in jobs:
        r = _finished(run_dir)
        table.setdefault(name, {"test_acc": {}, "wall_s": {}})
        table[name]["test_acc"][seed] = r["test_acc"]
        table[name]["wall_s"][seed] = r.get("wall_s")
    for name in table:
        table[name]["mean_test_acc"] = statistics.fmean(table[name]["test_acc"].values())
    cfgs = {name: json.loads((out_dir / f"{name}.seed{seeds[0]}" / "config.json").read_text())["recipe"]
            for name in runs}
    out = {"search": args.search, "random": args.random, "epochs": args.epochs, "limit_train": args.limit_train,
           "seeds": seeds, "random_search_trials": m, "random_best_trial": best, "random_best_proxy_acc": acc[best],
           "jointnas_search_trials": len(s_trials), "constraints": result.get("caps"),
           "jointnas_top1": {"macs": result["macs"], "params": result["params"],
                             "predicted_acc": result["predicted_acc"], "sample": result["sample"]},
           "random_best": {"sample": rnd[best]["sample"], "macs": rnd[best]["costs"]["macs"]},
           "runs": table, "recipes": cfgs}
    mean = {name: row["mean_test_acc"] for name, row in table.items()}
    if {"jointnas_searched_recipe", "random_best_its_recipe"} <= set(mean):
        out["search_beats_random"] = mean["jointnas_searched_recipe"] >= mean["random_best_its_recipe"]
    if {"jointnas_searched_recipe", "jointnas_default_recipe"} <= set(mean):
        out["recipe_matters"] = mean["jointnas_searched_recipe"] > mean["jointnas_default_recipe"]
    for name, row in table.items():
        print(f"{name}: test acc {row['test_acc']} mean {100 * row['mean_test_acc']:.2f}%")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("random")
    r.add_argument("--search", required=True)
    r.add_argument("--n", type=int, default=60)
    r.add_argument("--out", required=True)
    q = sub.add_parser("predictor")
    q.add_argument("--search", required=True)
    q.add_argument("--random", default=None, help="the random trials (optional with --ablation-only: the "
                   "ablation then splits the search's trials alone)")
    q.add_argument("--splits", type=int, default=5)
    q.add_argument("--train", type=int, default=40)
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="over the search's config (with --ablation-only: predictor settings to compare)")
    q.add_argument("--ablation-only", action="store_true", help="only the pretraining ablation")
    q.add_argument("--json", default=None)
    t = sub.add_parser("retrain")
    t.add_argument("--search", required=True)
    t.add_argument("--random", required=True)
    t.add_argument("--random-trials", type=int, default=None, help="random search size (default: the search's)")
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--limit-train", type=int, default=None)
    t.add_argument("--seeds", default="0,1")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--jobs", type=int, default=2)
    t.add_argument("--with-base", action="store_true",
                   help="also the top-1 with the proxy's base recipe (searched fields at the Recipe defaults)")
    t.add_argument("--only", default=None, help="comma-separated runs to do (default: all), e.g. "
                   "jointnas_searched_recipe,random_best_its_recipe")
    t.add_argument("--out", required=True)
    t.add_argument("--json", default=None)
    e = sub.add_parser("retest")
    e.add_argument("--search", required=True)
    e.add_argument("--random", required=True)
    e.add_argument("--n", type=int, default=30)
    e.add_argument("--ids", default=None, help="comma-separated trials of --random to retest instead of the first N "
                   "(--random may be a search's folder)")
    e.add_argument("--seed", type=int, default=1, help="the second measurement's training seed")
    e.add_argument("--workers", type=int, default=None, help="default: the config's executor.workers")
    e.add_argument("--out", required=True)
    e.add_argument("--json", default=None)
    f = sub.add_parser("refit")
    f.add_argument("--search", required=True)
    f.add_argument("--random", required=True)
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="over the search's config")
    f.add_argument("--repeats", type=int, default=5, help="fits with different initialisations (keys)")
    f.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.cmd == "random":
        cmd_random(args)
        return 0
    out = {"predictor": cmd_predictor, "retrain": cmd_retrain, "retest": cmd_retest,
           "refit": cmd_refit}[args.cmd](args)
    if args.json:
        from fbnas.io import atomic_write_json

        atomic_write_json(args.json, out)
        print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
