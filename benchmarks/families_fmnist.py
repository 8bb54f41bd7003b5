"""Seed 004's families on Fashion-MNIST: accuracy against MACs and against measured latency.

Trains, with one recipe, an EfficientNet-style base (configs/fmnist_effnet.yaml) compound-scaled at phi = 0, 1, 2,
a GhostNet-style net (configs/fmnist_ghost.yaml, also at width 1.5 and 1.75), the FBNet-style
configs/fmnist_small.yaml (also at width 1.4) and, if given, a DNAS result (``--dnas DIR``, e.g. the
fbnet_fmnist_ext quick search); then times every trained model (eval, batch 1, torch and onnxruntime, 1 thread,
interleaved rounds) and writes a JSON summary and a two-panel plot.
Finished runs in ``--runs`` are reused (the trainer resumes a finished run by reporting it).

    PYTHONPATH=src nice -n 10 .venv/bin/python benchmarks/families_fmnist.py --runs runs/families_fmnist \\
        --dnas runs/dnas_ext --out docs/results/families_fmnist_2026-12-01.json \\
        --plot docs/results/families_fmnist_2026-12-01.png

Resolution is not scaled (``--gamma 1``): the trainer trains at the dataset's 28 px, and upsampled 28x28
images hold no new detail; depth (alpha 1.2) and width (beta 1.1) are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def model_specs(dnas: str | None, alpha: float, beta: float) -> list[tuple[str, str, object]]:
    """(name, family, spec) of every model to train."""
    from fbnas.arch.scaling import compound, scale_spec
    from fbnas.arch.spec import load_spec
    from fbnas.arch.zoo import resolve_arch

    base = load_spec("configs/fmnist_effnet.yaml")
    out: list[tuple[str, str, object]] = []
    for phi in (0, 1, 2):
        c = compound(phi, alpha, beta, 1.0)
        out.append((f"effnet_phi{phi}", "efficientnet", scale_spec(base, c.depth, c.width, 1.0,
                                                                    name=f"fmnist_effnet_phi{phi}")))
    ghost, small = load_spec("configs/fmnist_ghost.yaml"), load_spec("configs/fmnist_small.yaml")
    out.append(("ghost", "ghostnet", ghost))
    # width multipliers (GhostNet's own way of sizing) to put GhostNet and FBNet points at phi = 1 and 2's MACs
    for w in (1.5, 1.75):
        out.append((f"ghost_w{round(w * 100)}", "ghostnet", scale_spec(ghost, width=w, name=f"fmnist_ghost_w{w}")))
    out.append(("fbnet_small", "fbnet", small))
    out.append(("fbnet_small_w140", "fbnet", scale_spec(small, width=1.4, name="fmnist_small_w1.4")))
    if dnas:
        out.append(("dnas_ext", "fbnet (DNAS, ext space)", resolve_arch(dnas).copy(name="dnas_ext")))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default="runs/families_fmnist", help="training run folders (reused when finished)")
    p.add_argument("--dnas", default=None, help="a DNAS run folder or result.json to train beside the families")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--limit-train", type=int, default=30000, help="training images (first N of the 60k)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=1.2)
    p.add_argument("--beta", type=float, default=1.1)
    p.add_argument("--rounds", type=int, default=15, help="latency: interleaved timing rounds")
    p.add_argument("--only", nargs="*", default=None, help="train/time only these model names")
    p.add_argument("--out", default=None, help="JSON summary")
    p.add_argument("--plot", default=None, help="PNG: accuracy vs MACs and vs latency")
    args = p.parse_args(argv)

    from fbnas.cost.counting import count
    from fbnas.lut.measure import Runner
    from fbnas.train import Recipe, model_from_checkpoint, train

    recipe = Recipe(epochs=args.epochs, threads=args.threads, seed=args.seed)
    rows, models = [], {}
    for name, family, spec in model_specs(args.dnas, args.alpha, args.beta):
        if args.only and name not in args.only:
            continue
        run = Path(args.runs) / name
        t0 = time.perf_counter()
        finished = (run / "checkpoint.pt").exists()
        res = train(spec, recipe, "fashion-mnist", run, resume=finished, progress=False,
                    limit_train=args.limit_train)
        report = count(spec, num_classes=10)
        model, _ = model_from_checkpoint(run / "checkpoint.pt")
        models[name] = model.eval()
        rows.append({"name": name, "family": family, "arch": spec.name, "macs": report.macs,
                     "params_total": report.params_total, "test_acc": res["test_acc"],
                     "train_acc": res.get("train_acc"), "train_images_per_s": res.get("images_per_s"),
                     "train_wall_s": res.get("wall_s"), "run": str(run), "reused": finished,
                     "spec": spec.to_dict()})
        print(f"{name}: {report.macs / 1e6:.2f} M MACs, test acc {100 * res['test_acc']:.2f}% "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    shape = [1, 1, 28, 28]
    for backend in ("torch", "onnxruntime"):
        runner = Runner(backend, threads=args.threads)
        times = runner.measure({n: (m, shape) for n, m in models.items()}, rounds=args.rounds)
        for r in rows:
            r[f"latency_ms_{backend}"] = float(times[r["name"]]["value_ms"])
            r[f"latency_statistic_{backend}"] = runner.statistic
    result = {"recipe": recipe.to_dict(), "limit_train": args.limit_train, "data": "fashion-mnist",
              "alpha": args.alpha, "beta": args.beta, "gamma": 1.0, "models": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    json.dump([{k: v for k, v in r.items() if k != "spec"} for r in rows], sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"efficientnet": "tab:green", "ghostnet": "tab:purple", "fbnet": "tab:blue"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in ((axes[0], "macs", "MACs (M)"), (axes[1], "latency_ms_torch",
                                                          "latency (ms, torch, batch 1, 1 thread)")):
        eff = [r for r in rows if r["family"] == "efficientnet"]
        xs = [r[key] / (1e6 if key == "macs" else 1) for r in eff]
        ax.plot(xs, [100 * r["test_acc"] for r in eff], "-", color=colors["efficientnet"], alpha=0.5)
        for r in rows:
            x = r[key] / (1e6 if key == "macs" else 1)
            c = colors.get(r["family"].split()[0], "tab:red") if "DNAS" not in r["family"] else "tab:red"
            ax.scatter([x], [100 * r["test_acc"]], color=c, s=40)
            ax.annotate(r["name"], (x, 100 * r["test_acc"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Fashion-MNIST test accuracy (%)")
    fig.suptitle("Same recipe, same data: accuracy vs MACs and vs measured latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
