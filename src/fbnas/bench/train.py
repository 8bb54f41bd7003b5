"""``fbnas bench train``: training throughput of the fbnas trainer path against a plain PyTorch loop.

fbnas path: in-memory uint8 tensors, whole-batch crop/flip/normalize (BatchLoader), channels_last, tuned
allocator. Baseline, written the obvious way: a Dataset over the float tensors that crops and flips one sample
at a time, torch.utils.data.DataLoader, NCHW, run in a subprocess without the allocator tuning. Same spec,
optimizer, batch size, threads and number of steps.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fbnas.bench import register_bench

DEFAULT_SPEC = "configs/fmnist_small.yaml"


def _default_spec() -> str:
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (base / DEFAULT_SPEC).exists():
            return str(base / DEFAULT_SPEC)
    return DEFAULT_SPEC


def add_args(p) -> None:
    p.add_argument("--arch", default=None, help=f"spec to train (default {DEFAULT_SPEC})")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder")
    p.add_argument("--steps", type=int, default=30, help="timed training steps of each loop")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random crop (padding 2) and flip in both loops (default on)")


def _setup(cfg: dict) -> tuple[Any, Any, Any]:
    """(spec adapted to the data, train ImageTensors, Recipe) for both loops."""
    import torch

    from fbnas.arch.zoo import resolve_arch
    from fbnas.data import load_dataset
    from fbnas.train import Recipe

    torch.set_num_threads(cfg["threads"])
    data = load_dataset("fashion-mnist", cfg["data_dir"], train=True)
    spec = resolve_arch(cfg["arch"]).copy(in_channels=data.channels, input_size=data.image_size)
    recipe = Recipe(batch_size=cfg["batch_size"], threads=cfg["threads"])
    if cfg["augment"]:
        recipe = recipe.replace(crop_padding=2, hflip=True)
    return spec, data, recipe


def _timed(step, warmup: int, steps: int, batch_size: int) -> float:
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - t0)


def _fbnas_loop(cfg: dict) -> dict:
    import torch

    from fbnas.data import BatchLoader
    from fbnas.nn.model import build_model
    from fbnas.runtime import tune_allocator
    from fbnas.train import augment_config, build_optimizer, build_scheduler, prepare_model, train_epoch

    allocator = tune_allocator()
    spec, data, recipe = _setup(cfg)
    torch.manual_seed(0)
    model = prepare_model(build_model(spec, data.num_classes), recipe)
    loader = BatchLoader(data, batch_size=recipe.batch_size, augment=augment_config(recipe), seed=0,
                         channels_last=recipe.channels_last, drop_last=True)
    opt = build_optimizer(model, recipe)
    sched = build_scheduler(opt, recipe, len(loader))
    state = {"batch": 0}

    def step() -> None:  # one batch through the real train_epoch
        train_epoch(model, loader, opt, sched, recipe, epoch=0, start_batch=state["batch"], max_steps=1)
        state["batch"] = (state["batch"] + 1) % len(loader)

    ips = _timed(step, cfg["warmup"], cfg["steps"], recipe.batch_size)
    return {"images_per_s": ips, "channels_last": recipe.channels_last, "allocator_tuned": allocator,
            "threads": torch.get_num_threads()}


def _baseline_loop(cfg: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    from fbnas.nn.model import build_model

    spec, data, recipe = _setup(cfg)
    mean, std = data.mean[0], data.std[0]
    images = (data.images.float() / 255 - mean) / std
    pad, flip = recipe.crop_padding, recipe.hflip

    class Augmented(Dataset):
        def __init__(self, base: TensorDataset) -> None:
            self.base = base

        def __len__(self) -> int:
            return len(self.base)

        def __getitem__(self, i: int):
            x, y = self.base[i]
            if pad:
                x = F.pad(x, (pad, pad, pad, pad))
                top, left = torch.randint(0, 2 * pad + 1, (2,)).tolist()
                x = x[:, top:top + data.image_size, left:left + data.image_size]
            if flip and torch.rand(1).item() < 0.5:
                x = torch.flip(x, dims=[2])
            return x, y

    torch.manual_seed(0)
    loader = DataLoader(Augmented(TensorDataset(images, data.labels)), batch_size=recipe.batch_size, shuffle=True,
                        drop_last=True)
    model = build_model(spec, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                          weight_decay=recipe.weight_decay)
    it = iter(loader)

    def step() -> None:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            x, y = next(it)
        loss = F.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()

    ips = _timed(step, cfg["warmup"], cfg["steps"], recipe.batch_size)
    return {"images_per_s": ips, "channels_last": False, "allocator_tuned": False,
            "threads": torch.get_num_threads()}


def _baseline_in_subprocess(cfg: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = ("import json, sys; from fbnas.bench.train import _baseline_loop; "
            "print(json.dumps(_baseline_loop(json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(cfg)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        from fbnas.errors import FbnasError

        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise FbnasError(f"baseline loop failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    from fbnas.arch.zoo import resolve_arch
    from fbnas.cost.counting import count
    from fbnas.errors import FbnasError
    from fbnas.train import Recipe

    if args.steps < 1 or args.warmup < 0:
        raise FbnasError("--steps must be >= 1 and --warmup >= 0")
    arch = args.arch or _default_spec()
    resolve_arch(arch)  # fail early, one line
    cfg = {"arch": arch, "data_dir": args.data_dir, "steps": args.steps, "warmup": args.warmup,
           "batch_size": args.batch_size or Recipe().batch_size, "threads": args.threads, "augment": args.augment}
    baseline = _baseline_in_subprocess(cfg)
    fbnas_path = _fbnas_loop(cfg)
    spec = resolve_arch(arch).copy(in_channels=1, input_size=28)
    report = count(spec, 28, 10)
    return {
        "bench": "train", "arch": str(arch), "data": "fashion-mnist", "macs": report.macs, "params": report.params,
        "batch_size": cfg["batch_size"], "augment": args.augment, "steps": args.steps, "warmup": args.warmup,
        "threads": args.threads,
        "fbnas_images_per_s": round(fbnas_path["images_per_s"], 1),
        "baseline_images_per_s": round(baseline["images_per_s"], 1),
        "speedup": round(fbnas_path["images_per_s"] / baseline["images_per_s"], 3),
        "fbnas": fbnas_path, "baseline": baseline,
    }


register_bench("train", "training throughput: fbnas trainer vs a plain PyTorch DataLoader loop", add_args, run)
