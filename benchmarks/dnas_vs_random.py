"""Does DNAS find something? The searched architecture vs. uniformly sampled ones of the same latency.

1. Runs ``fbnas search dnas`` (or reuses ``--search-dir`` when its result.json exists).
2. Samples architectures uniformly from the same space and keeps the first ``--num-random`` whose LUT latency
   (or the search's cost when no LUT was configured) lies within ``--tolerance`` of the DNAS architecture's.
3. Retrains all of them with one recipe (same epochs, seed, data) and compares test accuracy:
   the check passes when the DNAS architecture is at least as accurate as the median of the random ones.

Every run folder is resumable: run the script again with the same ``--out`` after an interruption.

    .venv/bin/python benchmarks/dnas_vs_random.py --config configs/dnas_fashion_mnist.yaml --preset quick \\
        --out runs/dnas_vs_random --epochs 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/dnas_fashion_mnist.yaml")
    p.add_argument("--preset", default="quick")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="search config override")
    p.add_argument("--out", default="runs/dnas_vs_random")
    p.add_argument("--search-dir", default=None, help="existing/ target search folder (default OUT/search)")
    p.add_argument("--num-random", type=int, default=5)
    p.add_argument("--tolerance", type=float, default=0.10, help="relative latency window around the DNAS arch")
    p.add_argument("--epochs", type=int, default=5, help="retraining epochs (same for every architecture)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--limit-train", type=int, default=None, help="retrain on the first N training images")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the random sampling (and of retraining, unless "
                                                           "--train-seeds)")
    p.add_argument("--train-seeds", default=None, metavar="S1,S2,...",
                   help="retrain every architecture once per seed and compare mean accuracies (default: --seed)")
    p.add_argument("--jobs", type=int, default=1, help="retrain this many architectures at once")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: --jobs subprocesses here; ray: --jobs Ray tasks of --threads CPUs (a retraining whose "
                        "worker dies is retried; docs/scale_out.md)")
    p.add_argument("--ray-address", default="local", help="with --executor ray: local | auto | HOST:PORT")
    p.add_argument("--reuse", action="append", default=[], metavar="DIR",
                   help="earlier --out folder: a finished run there of the same architecture, seed and flags is "
                        "copied instead of retrained (repeatable)")
    return p.parse_args(argv)


def run_or_load_search(args: argparse.Namespace, search_dir: Path) -> tuple[dict, dict]:
    from fbnas.config import load_config
    from fbnas.runs import RunFolder
    from fbnas.search.strategy import get_strategy, run_search, saved_config

    dnas = get_strategy("dnas")
    folder = RunFolder(search_dir)
    if folder.file(RunFolder.RESULT).exists():
        print(f"reusing search result {folder.file(RunFolder.RESULT)}", file=sys.stderr)
    else:
        cfg = load_config(args.config, dnas.config_model, args.preset, args.set)
        resume = folder.has_checkpoint
        if resume:
            cfg = saved_config(dnas, search_dir) or cfg
        run_search(dnas, cfg, search_dir, resume=resume, log=lambda m: print(m, file=sys.stderr, flush=True),
                   source=str(args.config))
    result = json.loads(folder.file(RunFolder.RESULT).read_text())
    cfg = folder.read_config()
    assert cfg is not None
    return result, cfg


def matched_random_archs(result: dict, cfg: dict, num: int, tolerance: float, seed: int) -> tuple[list, dict]:
    """Uniform samples from the space whose cost is within ``tolerance`` of the DNAS arch (closest if too few)."""
    from fbnas.search.common import cost_model_for, load_latency_table
    from fbnas.search.dnas import Dnas, DnasConfig

    s = DnasConfig.parse(cfg, "config.json")
    space = Dnas().space(s)
    num_classes = int(result.get("num_classes", 10))
    lut = None
    if s.lut.path:
        s = s.replace(lut={**s.lut.to_dict(), "build": False})
        lut = load_latency_table(s, space, num_classes)
    if lut is not None:
        s = s.replace(loss={**s.loss.to_dict(), "cost": "latency"})
    cost_model = cost_model_for(s, space, num_classes, lut)
    target = cost_model.of_choices(result["choices"])
    rng = np.random.default_rng(seed)
    sizes = space.num_choices()
    k_max = max(sizes)
    matrix = np.full((len(sizes), k_max), np.inf)
    for (li,), row in cost_model.terms:  # a layer-wise space: one single-layer table per searchable layer
        matrix[li, : len(row)] = row.numpy()
    picked: list[list[int]] = []
    best: list[tuple[float, list[int]]] = []
    for _ in range(200):  # 200 x 20000 uniform samples at most
        ch = np.stack([rng.integers(0, k, 20000) for k in sizes], axis=1)
        costs = cost_model.fixed + matrix[np.arange(len(sizes)), ch].sum(axis=1)
        rel = np.abs(costs / target - 1.0)
        for i in np.nonzero(rel <= tolerance)[0]:
            if len(picked) < num:
                picked.append([int(c) for c in ch[i]])
        order = np.argsort(rel)[:num]
        best.extend((float(rel[i]), [int(c) for c in ch[i]]) for i in order)
        if len(picked) >= num:
            break
    within = len(picked) >= num
    if not within:
        best.sort(key=lambda t: t[0])
        picked = (picked + [c for _, c in best])[:num]
    entries = []
    for k, ch in enumerate(picked):
        spec = space.to_spec(ch, name=f"random{k}")
        lat = lut.predict(spec).total_ms if lut is not None else None
        entries.append({"name": f"random{k}", "choices": ch, "choice_names": space.choice_names(ch),
                        "arch": spec.to_dict(), "cost": cost_model.of_choices(ch), "latency_ms": lat})
    info = {"cost_kind": cost_model.kind, "unit": cost_model.unit, "dnas_cost": target,
            "all_within_tolerance": within, "tolerance": tolerance}
    return entries, info


def train_seeds(args: argparse.Namespace) -> list[int]:
    """``--train-seeds`` as a list of ints (one-line error when malformed); ``[--seed]`` when not given."""
    if args.train_seeds is None:
        return [args.seed]
    try:
        seeds = [int(t) for t in args.train_seeds.split(",") if t.strip()]
    except ValueError:
        raise SystemExit(f"--train-seeds: expected comma-separated integers, got {args.train_seeds!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"--train-seeds: expected distinct integers, got {args.train_seeds!r}")
    return seeds


def run_name(name: str, seed: int, first_seed: int) -> str:
    """Run folder of one (arch, seed): the first seed keeps the bare name, so older folders are reused."""
    return name if seed == first_seed else f"{name}.seed{seed}"


def compare(rows: list[dict]) -> dict:
    """DNAS (``rows[0]``) vs. the random ones on mean test accuracy over the retraining seeds."""
    mean = [statistics.fmean(r["test_acc_by_seed"]) for r in rows]
    median = statistics.median(mean[1:])
    return {"dnas_test_acc": mean[0], "random_test_acc": mean[1:], "random_median_test_acc": median,
            "dnas_at_least_median": mean[0] >= median,
            "dnas_rank": 1 + sum(m > mean[0] for m in mean[1:])}


def retrain_all(named_archs: list[tuple[str, dict]], seeds: list[int], args: argparse.Namespace, cfg: dict,
                out: Path) -> dict:
    """Retrain every arch once per training seed with ``fbnas train`` (``--jobs`` at a time); returns
    {(name, seed): last metrics row}."""
    import subprocess
    import time

    from fbnas.io import atomic_write_json, read_jsonl

    data = cfg.get("data", {})
    arch_files = {name: out / f"{name}.arch.json" for name, _ in named_archs}
    arch_by_name = dict(named_archs)
    for seed in seeds:  # a folder trained for another architecture (another search's window) is never reused
        for name, arch in named_archs:
            check_same_arch(out / run_name(name, seed, seeds[0]), arch)
    for name, arch in named_archs:
        atomic_write_json(arch_files[name], arch)
    cmds = []
    for seed in seeds:
        for name, _ in named_archs:
            run_dir = out / run_name(name, seed, seeds[0])
            cmds.append(((name, seed), train_command(arch_files[name], run_dir, seed, args, data), run_dir))
    if args.executor == "ray":
        _retrain_on_ray(cmds, args, arch_by_name)
        return {key: (read_jsonl(run_dir / "metrics.jsonl") or [{}])[-1] for key, _, run_dir in cmds}
    running: list[tuple[tuple[str, int], subprocess.Popen]] = []
    pending = list(cmds)
    while pending or running:
        while pending and len(running) < max(1, args.jobs):
            key, cmd, run_dir = pending.pop(0)
            if not finished(run_dir, args.epochs):
                copy_equal_run(arch_by_name[key[0]], key[1], args, run_dir)
            if finished(run_dir, args.epochs):
                print(f"reusing {run_dir} ({args.epochs} epochs done)", file=sys.stderr, flush=True)
                continue
            print(f"retraining {key[0]} (seed {key[1]}) -> {run_dir}", file=sys.stderr, flush=True)
            running.append((key, subprocess.Popen(cmd)))
        time.sleep(1.0)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                if item[1].returncode != 0:
                    raise SystemExit(f"retraining {item[0][0]} (seed {item[0][1]}) failed "
                                     f"(exit {item[1].returncode})")
    return {key: (read_jsonl(run_dir / "metrics.jsonl") or [{}])[-1] for key, _, run_dir in cmds}


def _retrain_on_ray(cmds: list, args: argparse.Namespace, arch_by_name: dict) -> None:
    """The retrainings as Ray tasks (``fbnas train`` in the worker, resumed there when a checkpoint exists)."""
    from fbnas.search.executors import RayExecutor, run_command

    todo = []
    for key, cmd, run_dir in cmds:
        if not finished(run_dir, args.epochs):
            copy_equal_run(arch_by_name[key[0]], key[1], args, run_dir)
        if finished(run_dir, args.epochs):
            print(f"reusing {run_dir} ({args.epochs} epochs done)", file=sys.stderr, flush=True)
            continue
        todo.append((key, cmd[3:] + (["--resume"] if (run_dir / "checkpoint.pt").exists() and "--resume" not in cmd
                                      else [])))
    with RayExecutor(max(1, args.jobs), args.threads or 1, args.ray_address) as ex:
        codes = ex.map(run_command, [argv for _, argv in todo],
                       lambda i, rc: print(f"retrained {todo[i][0][0]} (seed {todo[i][0][1]}): exit {rc}",
                                           file=sys.stderr, flush=True))
    for (key, _), rc in zip(todo, codes, strict=True):
        if rc != 0:
            raise SystemExit(f"retraining {key[0]} (seed {key[1]}) failed (exit {rc})")


def check_same_arch(run_dir: Path, arch: dict) -> None:
    """Refuse (one line) to reuse or resume ``run_dir`` when its ``config.json`` holds another architecture."""
    config = run_dir / "config.json"
    if not config.exists():
        return
    if not same_blocks(json.loads(config.read_text()).get("arch", {}), arch):
        raise SystemExit(f"{run_dir}: trained for a different architecture than {run_dir.name.split('.')[0]} of "
                         "this search; use another --out")


def same_blocks(a: dict, b: dict) -> bool:
    """Whether two arch specs are the same network (their names aside)."""
    return {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def equal_run(config: dict, arch: dict, seed: int, args: argparse.Namespace) -> bool:
    """Whether a run's ``config.json`` is the retraining this script would start for (arch, seed, flags)."""
    recipe, data = config.get("recipe", {}), config.get("data", {})
    wanted = {"epochs": args.epochs, "seed": seed, "batch_size": args.batch_size, "lr": args.lr,
              "threads": args.threads}
    return (same_blocks(config.get("arch", {}), arch) and data.get("limit_train") == args.limit_train
            and all(v is None or recipe.get(k) == v for k, v in wanted.items()))


def copy_equal_run(arch: dict, seed: int, args: argparse.Namespace, run_dir: Path) -> None:
    """Copy a finished equal run from a ``--reuse`` folder into ``run_dir`` (via a temporary folder and rename)."""
    import shutil

    if run_dir.exists():
        return
    for folder in map(Path, args.reuse):
        for config in sorted(folder.glob("*/config.json")):
            if equal_run(json.loads(config.read_text()), arch, seed, args) and finished(config.parent, args.epochs):
                tmp = run_dir.with_name(run_dir.name + ".copying")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(config.parent, tmp)
                tmp.rename(run_dir)
                print(f"copied {config.parent} -> {run_dir}", file=sys.stderr, flush=True)
                return


def finished(run_dir: Path, epochs: int) -> bool:
    """Whether ``run_dir`` already holds a training run's last epoch (then it is not started again)."""
    from fbnas.io import read_jsonl

    rows = read_jsonl(run_dir / "metrics.jsonl")
    return bool(rows) and int(rows[-1].get("epoch", 0)) >= epochs


def train_command(arch_file: Path, run_dir: Path, seed: int, args: argparse.Namespace, data: dict) -> list[str]:
    """The ``fbnas train`` command line of one (arch, seed); ``--resume`` when its checkpoint exists."""
    cmd = [sys.executable, "-m", "fbnas.cli", "train", "--arch", str(arch_file), "--out", str(run_dir),
           "--data", data.get("name", "fashion-mnist"), "--epochs", str(args.epochs), "--seed", str(seed),
           "--no-progress"]
    if data.get("dir"):
        cmd += ["--data-dir", str(data["dir"])]
    for flag, value in (("--batch-size", args.batch_size), ("--lr", args.lr), ("--threads", args.threads),
                        ("--limit-train", args.limit_train)):
        if value is not None:
            cmd += [flag, str(value)]
    if (run_dir / "checkpoint.pt").exists():
        cmd += ["--resume"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    from fbnas.io import atomic_write_json
    from fbnas.runtime import tune_allocator

    tune_allocator()
    args = parse_args(argv)
    seeds = train_seeds(args)  # a malformed list fails before any work
    out = Path(args.out)
    search_dir = Path(args.search_dir) if args.search_dir else out / "search"
    result, cfg = run_or_load_search(args, search_dir)
    randoms, info = matched_random_archs(result, cfg, args.num_random, args.tolerance, args.seed)
    metrics = retrain_all([("dnas", result["arch"])] + [(r["name"], r["arch"]) for r in randoms], seeds, args, cfg,
                          out)
    entries = [{"name": "dnas", "choice_names": result["choice_names"], "cost": info["dnas_cost"],
                "latency_ms": result.get("latency_ms")}]
    entries += [{"name": r["name"], "choice_names": r["choice_names"], "cost": r["cost"],
                 "latency_ms": r["latency_ms"]} for r in randoms]
    rows = [{**e, "test_acc_by_seed": [metrics[(e["name"], sd)]["test_acc"] for sd in seeds],
             "last_metrics": {sd: metrics[(e["name"], sd)] for sd in seeds}} for e in entries]
    summary = {**compare(rows), "epochs": args.epochs, "train_seeds": seeds, "matching": info, "runs": rows}
    atomic_write_json(out / "summary.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
