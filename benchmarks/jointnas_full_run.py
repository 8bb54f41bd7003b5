"""The full JointNAS run: the search of ``configs/jointnas_fashion_mnist.yaml`` and the retraining of its winner
with its searched recipe on all 60k training images (``jointnas.retrain``: epochs, and Recipe fields such as
augmentation over the searched ones, read from ``--config`` / ``--preset`` / ``--set``), with the wall time of
every stage.

    .venv/bin/python benchmarks/jointnas_full_run.py --out runs/jn_full [--preset quick] [--threads 2]

Both stages resume after an interruption (run the same command again). ``OUT/summary.json``: the stages'
seconds, the winner's MACs / params / predicted proxy accuracy, its test accuracy after every epoch and at the end.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/jointnas_fashion_mnist.yaml")
    p.add_argument("--preset", default=None)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the retraining")
    p.add_argument("--epochs", type=int, default=None, help="retraining epochs (default: jointnas.retrain.epochs)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    times_file = out / "phase_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    search = out / "search"
    if not (search / "result.json").exists():
        cmd = [sys.executable, "-m", "fbnas.cli", "search", "jointnas", "--config", args.config, "--out", str(search)]
        cmd += (["--preset", args.preset] if args.preset else []) + [f"--set={s}" for s in args.set]
        if (search / "checkpoint.pt").exists():
            cmd.append("--resume")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times["search_s"] = times.get("search_s", 0.0) + time.perf_counter() - t0
        times_file.write_text(json.dumps(times, indent=2))
    result = json.loads((search / "result.json").read_text())
    cfg = json.loads((search / "config.json").read_text())
    # the retraining is this script's, not the search's: its section comes from the config given here
    from fbnas.config import load_config
    from fbnas.io import atomic_write_json
    from fbnas.search.jointnas.config import JointNasConfig

    retrain = load_config(args.config, JointNasConfig, args.preset, args.set).jointnas.retrain
    epochs = args.epochs or retrain.epochs
    recipe = {**result["recipe"], **retrain.recipe}  # the searched recipe + augmentation
    recipe_file = out / "retrain_recipe.json"
    run = out / "winner"
    if not (run / "result.json").exists():
        if (run / "checkpoint.pt").exists():
            cmd = [sys.executable, "-m", "fbnas.cli", "train", "--resume", str(run), "--epochs", str(epochs)]
        else:
            atomic_write_json(recipe_file, recipe)
            cmd = [sys.executable, "-m", "fbnas.cli", "train", "--arch", str(search / "result.json"), "--data",
                   cfg["data"]["name"], "--recipe", str(recipe_file), "--epochs", str(epochs), "--threads",
                   str(args.threads), "--out", str(run)]
            if retrain.limit_train:
                cmd += ["--limit-train", str(retrain.limit_train)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        times["retrain_s"] = times.get("retrain_s", 0.0) + time.perf_counter() - t0
        times_file.write_text(json.dumps(times, indent=2))
    trained = json.loads((run / "result.json").read_text())
    curve = [json.loads(line)["test_acc"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = {"config": args.config, "preset": args.preset, "stages_s": {**result.get("timing", {}), **times},
               "total_s": sum(times.values()), "macs": result["macs"], "params": result["params"],
               "predicted_proxy_acc": result["predicted_acc"], "recipe": result["recipe"],
               "retrain_recipe": recipe, "sample": result["sample"],
               "retrain_epochs": epochs, "test_acc": trained["test_acc"], "test_acc_by_epoch": curve}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("total_s", "macs", "params", "test_acc")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
