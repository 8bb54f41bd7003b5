"""FP-NAS's measurements on Fashion-MNIST (docs/experiments/2026-12-01-fpnas-*.md), one subcommand each:

    PYTHONPATH=src nice -n 5 .venv/bin/python benchmarks/fpnas_experiments.py params --out docs/results/X.json
    ... targets --targets 0.7 0.55 0.4          three MACs targets: found MACs / target, decreasing with it
    ... adaptive --seeds 0 1                    adaptive K vs fixed K = the adaptive run's first K, retrained
    ... c2f                                     coarse-to-fine (FD -> JD) vs JD from the start: time to JD's loss
    ... vs-dmasking --seeds 0 1                 FP-NAS vs DMaskingNAS on their shared dimensions, retrained

Every search is ``fbnas search fpnas|dmasking --config ... --preset quick --set threads=1 ...`` and every retraining
``fbnas train --arch DIR/result.json`` with one recipe (``--epochs``, ``--limit-train``, ``--batch-size``, ``--lr``),
each in its own subprocess, up to ``--jobs`` at a time (pairs compared side by side run together, so they share the
machine's load); each reports its wall time and its CPU time (``os.wait4``). A run folder holding a result is
reused. The JSON summary goes to ``--out`` (and stdout).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

FPNAS_CONFIG = "configs/fpnas_fashion_mnist.yaml"
VS_SPACE = "configs/fpnas_vs_dmasking_space.yaml"
DMASKING_CONFIG = "configs/dmasking_fashion_mnist.yaml"


# ---- subprocesses ------------------------------------------------------------------------------------
def run_jobs(jobs: list[tuple[str, list[str], Path]], parallel: int) -> dict[str, dict]:
    """Run ``(key, argv, log file)`` jobs, ``parallel`` at a time; per key: return code, wall and CPU seconds."""
    pending, running, done = list(jobs), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            key, argv, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            f = open(log, "w")  # noqa: SIM115 - closed when the job ends
            env = {**os.environ, "PYTHONHASHSEED": "0"}
            proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
            running[proc.pid] = (key, f, time.perf_counter())
            print(f"started {key}: {' '.join(argv)}", file=sys.stderr, flush=True)
        pid, status, usage = os.wait4(-1, 0)
        if pid not in running:
            continue
        key, f, t0 = running.pop(pid)
        f.close()
        rc = os.waitstatus_to_exitcode(status)
        done[key] = {"rc": rc, "wall_s": round(time.perf_counter() - t0, 1),
                     "cpu_s": round(usage.ru_utime + usage.ru_stime, 1)}
        print(f"finished {key}: {done[key]}", file=sys.stderr, flush=True)
        if rc != 0:
            raise SystemExit(f"{key} failed (rc {rc}); see its log")
    return done


def fbnas(*args: str) -> list[str]:
    return [sys.executable, "-m", "fbnas.cli", *args]


def search_job(key: str, runs: Path, strategy: str, config: str, sets: list[str],
               preset: str | None = "quick") -> tuple[str, list[str], Path]:
    """One search subprocess; ``preset`` None runs the config's full schedule."""
    out = runs / key
    argv = fbnas("search", strategy, "--config", config, *(["--preset", preset] if preset else []),
                 "--out", str(out), "--overwrite", "--set", "threads=1", *[x for s in sets for x in ("--set", s)])
    return key, argv, runs / "logs" / f"{key}.log"


def train_job(key: str, runs: Path, arch: Path, seed: int, args) -> tuple[str, list[str], Path]:
    argv = fbnas("train", "--arch", str(arch), "--data", "fashion-mnist", "--epochs", str(args.epochs),
                 "--limit-train", str(args.limit_train), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                 "--seed", str(seed), "--threads", "1", "--no-progress", "--out", str(runs / key), "--overwrite")
    return key, argv, runs / "logs" / f"{key}.log"


def todo(jobs: list[tuple[str, list[str], Path]], runs: Path) -> list[tuple[str, list[str], Path]]:
    """The jobs whose run folder holds no result yet."""
    return [j for j in jobs if not (runs / j[0] / "result.json").exists()]


def read(runs: Path, key: str) -> dict:
    return json.loads((runs / key / "result.json").read_text())


def metrics(runs: Path, key: str) -> list[dict]:
    return [json.loads(line) for line in (runs / key / "metrics.jsonl").read_text().splitlines() if line.strip()]


def timings(runs: Path, done: dict[str, dict]) -> dict[str, dict]:
    """This invocation's wall / CPU seconds per run, merged into (and kept in) ``runs/timings.json``."""
    path = runs / "timings.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved.update(done)
    path.write_text(json.dumps(saved, indent=2))
    return saved


def retrained(runs: Path, keys: list[str]) -> dict:
    accs = [100.0 * read(runs, k)["test_acc"] for k in keys]
    return {"test_acc": [round(a, 2) for a in accs], "mean": round(sum(accs) / len(accs), 3)}


def search_summary(r: dict, t: dict | None) -> dict:
    out = {"macs": r["macs"], "params": r["params"], "choice_names": r["choice_names"],
           "search_seconds_in_loop": r["timing"]["search_seconds"]}
    if t:
        out.update(wall_s=t["wall_s"], cpu_s=t["cpu_s"])
    if "sampling" in r:
        out["sampling"] = r["sampling"]
        out["distribution"] = r["distribution"]
    return out


# ---- experiments ----------------------------------------------------------------------------------------
def exp_params(args) -> dict:
    """FD vs JD parameter counts of every shipped FP-NAS space, F and F-Fine."""
    from fbnas.space.fpnas import parse_fpnas_space
    from fbnas.space.registry import read_space_file, space_names

    rows = []
    for name in space_names():
        data, source = read_space_file(name)
        if data.get("kind") != "fpnas":
            continue
        for fine in (False, True):
            space = parse_fpnas_space(data, source, fine=fine)
            sizes = space.group_sizes()
            fd, jd = sum(sum(s) for s in sizes.values()), sum(math.prod(s) for s in sizes.values())
            h0 = sum(math.log(math.prod(s)) for s in sizes.values())
            rows.append({"space": name, "fine": fine, "dimensions": len(space.dims), "layers": len(sizes),
                         "fd_parameters": fd, "jd_parameters": jd, "ratio": round(jd / fd, 2),
                         "initial_entropy_nats": round(h0, 3), "initial_k_lambda_0.25": math.ceil(h0 / 4 - 1e-9),
                         "architectures": float(math.prod(math.prod(s) for s in sizes.values()))})
    return {"rows": rows}


def exp_targets(args) -> dict:
    runs = Path(args.runs)
    jobs = [search_job(f"target_{t:g}", runs, "fpnas", FPNAS_CONFIG,
                       [*args.set, f"fpnas.target={t}", "fpnas.cost=macs"]) for t in args.targets]
    t = timings(runs, run_jobs(todo(jobs, runs), args.jobs))
    rows = []
    for target in args.targets:
        r = read(runs, f"target_{target:g}")
        found = r["macs"] / 1e6
        sel = r.get("selection", {})
        free = sel.get("most_probable", {}).get("cost", found)  # the unconstrained most probable architecture
        rows.append({"target": target, "found_macs": round(found, 4), "ratio": round(found / target, 4),
                     "within_85_105": 0.85 <= found / target <= 1.05, "found_probability": r["probability"],
                     "rule": sel.get("rule", "most_probable"), "is_most_probable": sel.get("is_most_probable", True),
                     "most_probable_macs": round(free, 4), "most_probable_ratio": round(free / target, 4),
                     "most_probable_probability": sel.get("most_probable", {}).get("probability", r["probability"]),
                     **search_summary(r, t.get(f"target_{target:g}"))})
    order = sorted(rows, key=lambda r: -r["target"])
    pairs = list(zip(order, order[1:], strict=False))
    return {"rows": rows, "all_within_85_105": all(r["within_85_105"] for r in rows),
            "decreasing": all(a["found_macs"] > b["found_macs"] for a, b in pairs),
            "most_probable_all_within_85_105": all(0.85 <= r["most_probable_ratio"] <= 1.05 for r in rows),
            "most_probable_decreasing": all(a["most_probable_macs"] > b["most_probable_macs"] for a, b in pairs)}


def exp_adaptive(args) -> dict:
    runs = Path(args.runs)
    t = timings(runs, run_jobs(todo([search_job("adaptive", runs, "fpnas", FPNAS_CONFIG, args.set)], runs), 1))
    k0 = read(runs, "adaptive")["sampling"]["k_first"]
    jobs = [search_job("fixed", runs, "fpnas", FPNAS_CONFIG, [*args.set, f"fpnas.fixed_k={k0}"])]
    t = timings(runs, run_jobs(todo(jobs, runs), 1))
    trains = [train_job(f"{k}_train_s{s}", runs, runs / k / "result.json", s, args)
              for k in ("adaptive", "fixed") for s in args.seeds]
    t = timings(runs, run_jobs(todo(trains, runs), args.jobs))
    out = {}
    for k in ("adaptive", "fixed"):
        out[k] = {**search_summary(read(runs, k), t.get(k)),
                  "retrained": retrained(runs, [f"{k}_train_s{s}" for s in args.seeds])}
    a, f = out["adaptive"]["sampling"]["drawn"], out["fixed"]["sampling"]["drawn"]
    out["drawn_reduction"] = round(1.0 - a / f, 4)
    out["accuracy_gap_points"] = round(out["adaptive"]["retrained"]["mean"] - out["fixed"]["retrained"]["mean"], 3)
    out["recipe"] = {"epochs": args.epochs, "limit_train": args.limit_train, "batch_size": args.batch_size,
                     "lr": args.lr, "seeds": args.seeds}
    return out


def _time_to_loss(rows: list[dict], loss: float, key: str) -> float | None:
    """Wall seconds (the loop's elapsed_s) at the first epoch whose ``key`` is <= ``loss``."""
    for r in rows:
        if r.get(key) is not None and r[key] <= loss:
            return r["elapsed_s"]
    return None


def exp_c2f(args) -> dict:
    """Coarse-to-fine (the shipped switch epoch) and JD from epoch 0, run side by side, both adaptive."""
    runs = Path(args.runs)
    jobs = [search_job("c2f", runs, "fpnas", FPNAS_CONFIG, args.set),
            search_job("jd", runs, "fpnas", FPNAS_CONFIG, [*args.set, "fpnas.switch_epoch=0"])]
    t = timings(runs, run_jobs(todo(jobs, runs), args.jobs))
    out: dict = {}
    rows = {k: metrics(runs, k) for k in ("c2f", "jd")}
    for k in ("c2f", "jd"):
        out[k] = {**search_summary(read(runs, k), t.get(k)),
                  "epochs": [{"epoch": r["epoch"], "dist": r["dist"], "w_ce": round(r["w_ce"], 4),
                              "t_nll": round(r["t_nll"], 4) if "t_nll" in r else None, "k": r["k"],
                              "entropy": r["entropy"], "elapsed_s": r["elapsed_s"]} for r in rows[k]]}
    for key in ("w_ce", "t_nll"):
        final = rows["jd"][-1][key]
        c2f_s = _time_to_loss(rows["c2f"], final, key)
        out[f"jd_final_{key}"] = final
        out[f"c2f_seconds_to_jd_final_{key}"] = c2f_s
        out[f"jd_seconds_{key}"] = rows["jd"][-1]["elapsed_s"]
        cpu = {k: t[k]["cpu_s"] * (s / rows[k][-1]["elapsed_s"]) if s is not None and k in t else None
               for k, s in (("c2f", c2f_s), ("jd", rows["jd"][-1]["elapsed_s"]))}
        out[f"cpu_seconds_to_jd_final_{key}"] = {k: round(v, 1) if v is not None else None for k, v in cpu.items()}
    return out


def exp_vs_dmasking(args) -> dict:
    runs = Path(args.runs)
    target = args.target
    preset = None if args.preset == "none" else args.preset
    jobs = [search_job("vs_fpnas", runs, "fpnas", FPNAS_CONFIG,
                       [f"space.name={VS_SPACE}", f"fpnas.target={target}", *args.set], preset),  # --set: FP-NAS's
            search_job("vs_dmasking", runs, "dmasking", DMASKING_CONFIG,
                       ["space.resolutions=[28]", "loss.cost=macs", "loss.form=target", f"loss.target={target}",
                        *args.dmasking_set], preset)]
    t = timings(runs, run_jobs(todo(jobs, runs), args.jobs))
    trains = [train_job(f"{k}_train_s{s}", runs, runs / k / "result.json", s, args)
              for k in ("vs_fpnas", "vs_dmasking") for s in args.seeds]
    t = timings(runs, run_jobs(todo(trains, runs), args.jobs))
    out = {}
    for k in ("vs_fpnas", "vs_dmasking"):
        out[k.removeprefix("vs_")] = {**search_summary(read(runs, k), t.get(k)),
                                      "retrained": retrained(runs, [f"{k}_train_s{s}" for s in args.seeds])}
    f, d = out["fpnas"], out["dmasking"]
    out["target_mmacs"] = target
    out["fpnas_overrides"] = args.set
    out["dmasking_overrides"] = args.dmasking_set
    out["preset"] = args.preset
    out["accuracy_gap_points"] = round(f["retrained"]["mean"] - d["retrained"]["mean"], 3)
    if "wall_s" in f and "wall_s" in d:
        out["search_wall_ratio_fpnas_over_dmasking"] = round(f["wall_s"] / d["wall_s"], 3)
        out["search_cpu_ratio_fpnas_over_dmasking"] = round(f["cpu_s"] / d["cpu_s"], 3)
    out["recipe"] = {"epochs": args.epochs, "limit_train": args.limit_train, "batch_size": args.batch_size,
                     "lr": args.lr, "seeds": args.seeds}
    return out


EXPERIMENTS = {"params": exp_params, "targets": exp_targets, "adaptive": exp_adaptive, "c2f": exp_c2f,
               "vs-dmasking": exp_vs_dmasking}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=sorted(EXPERIMENTS))
    p.add_argument("--runs", default="runs/fpnas_experiments", help="run folders (reused when finished)")
    p.add_argument("--out", default=None, help="also write the JSON summary here")
    p.add_argument("--jobs", type=int, default=2, help="subprocesses at a time")
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.55, 0.4], help="MMACs (targets)")
    p.add_argument("--target", type=float, default=0.8, help="MMACs (vs-dmasking)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="retraining seeds")
    p.add_argument("--epochs", type=int, default=8, help="retraining epochs")
    p.add_argument("--limit-train", type=int, default=20000, help="retraining images")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra search overrides")
    p.add_argument("--dmasking-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra overrides of DMaskingNAS's search (vs-dmasking)")
    p.add_argument("--preset", default="quick", help="the searches' preset (vs-dmasking); none: the full configs")
    args = p.parse_args(argv)
    report = {"experiment": args.experiment, "date": time.strftime("%Y-%m-%d"), **EXPERIMENTS[args.experiment](args)}
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
