"""Run-folder utilities shared by search strategies (DNAS, DMasking, ...).

A run folder holds:

* ``config.json``        the resolved config (defaults + file + preset + overrides), written once
* ``checkpoint.pt``      everything needed to continue (written atomically after every epoch)
* ``theta_history.json`` per-epoch architecture distributions (see :func:`theta_history`)
* ``theta_heatmap.png``  per-layer candidate probabilities over epochs
* ``result.json``        top-level ``arch`` (the argmax spec, what ``fbnas train --arch`` reads) and
  ``samples`` (architectures sampled from the learned distribution)

Config helpers: :func:`load_config` (YAML + ``presets`` + dotted ``--set`` overrides) and
:class:`ConfigView` (typed field access whose errors name the config field in one line).
"""

from __future__ import annotations

import copy
import json
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fbnas.errors import FbnasError
from fbnas.io import atomic_torch_save, atomic_write, atomic_write_json

# ---- config ---------------------------------------------------------------------------------------


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in recursively (mappings merge, other values replace)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(text: str) -> dict:
    """``a.b.c=VALUE`` (VALUE parsed as YAML) -> ``{"a": {"b": {"c": VALUE}}}``."""
    import yaml

    if "=" not in text:
        raise FbnasError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. loss.form=none")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path, defaults: dict, preset: str | None = None,
                overrides: Sequence[str] = ()) -> dict:
    """defaults <- YAML file <- ``presets[preset]`` <- ``--set`` overrides; unknown top-level keys are errors."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise FbnasError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise FbnasError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FbnasError(f"{path}: a config must be a mapping")
    presets = data.pop("presets", {}) or {}
    cfg = deep_merge(defaults, data)
    if preset is not None:
        if preset not in presets:
            raise FbnasError(f"{path}: presets.{preset}: no such preset; valid: {sorted(presets) or 'none'}")
        cfg = deep_merge(cfg, presets[preset])
    for text in overrides:
        cfg = deep_merge(cfg, parse_override(text))
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise FbnasError(f"{path}: unknown config field {unknown[0]!r}; valid: {', '.join(sorted(defaults))}")
    for section, value in cfg.items():
        if isinstance(defaults.get(section), dict):
            if not isinstance(value, dict):
                raise FbnasError(f"{path}: {section}: must be a mapping")
            extra = sorted(set(value) - set(defaults[section]))
            if extra:
                raise FbnasError(f"{path}: unknown config field '{section}.{extra[0]}'; valid: "
                                 f"{', '.join(sorted(defaults[section]))}")
    return cfg


class ConfigView:
    """Typed access to a resolved config; every error names the dotted field (``schedule.epochs``)."""

    def __init__(self, cfg: dict, source: str = "config") -> None:
        self.cfg = cfg
        self.source = source

    def raw(self, key: str) -> Any:
        node: Any = self.cfg
        for p in key.split("."):
            if not isinstance(node, dict) or p not in node:
                raise FbnasError(f"{self.source}: missing config field {key!r}")
            node = node[p]
        return node

    def fail(self, key: str, msg: str) -> FbnasError:
        return FbnasError(f"{self.source}: {key}: {msg}")

    def int(self, key: str, min_value: int | None = None, optional: bool = False) -> int | None:
        v = self.raw(key)
        if v is None and optional:
            return None
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.fail(key, f"must be an integer, got {v!r}")
        if min_value is not None and v < min_value:
            raise self.fail(key, f"must be >= {min_value}, got {v}")
        return v

    def float(self, key: str, min_value: float | None = None, max_value: float | None = None,
              optional: bool = False, strict_min: bool = False) -> float | None:
        v = self.raw(key)
        if v is None and optional:
            return None
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise self.fail(key, f"must be a number, got {v!r}")
        v = float(v)
        if min_value is not None and (v < min_value or (strict_min and v == min_value)):
            raise self.fail(key, f"must be {'>' if strict_min else '>='} {min_value}, got {v}")
        if max_value is not None and v > max_value:
            raise self.fail(key, f"must be <= {max_value}, got {v}")
        return v

    def str(self, key: str, choices: Sequence[str] | None = None, optional: bool = False) -> str | None:
        v = self.raw(key)
        if v is None and optional:
            return None
        if not isinstance(v, str):
            raise self.fail(key, f"must be a string, got {v!r}")
        if choices is not None and v not in choices:
            raise self.fail(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def bool(self, key: str) -> bool:
        v = self.raw(key)
        if not isinstance(v, bool):
            raise self.fail(key, f"must be true or false, got {v!r}")
        return v

    def int_list(self, key: str, optional: bool = False) -> list[int] | None:
        v = self.raw(key)
        if v is None and optional:
            return None
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            raise self.fail(key, f"must be a list of integers, got {v!r}")
        return list(v)


# ---- RNG state ------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Global RNG states (torch CPU, numpy, python) for a checkpoint."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


# ---- run folder -----------------------------------------------------------------------------------


class RunFolder:
    """File layout and atomic writes of one search run."""

    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.pt"
    THETA_HISTORY = "theta_history.json"
    HEATMAP = "theta_heatmap.png"
    RESULT = "result.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def prepare(self, resume: bool) -> bool:
        """Create the folder; returns whether a checkpoint will be resumed.

        Refuses to start over a folder that already has a checkpoint unless ``resume`` (no silent overwrite).
        """
        has_ckpt = self.file(self.CHECKPOINT).exists()
        if has_ckpt and not resume:
            raise FbnasError(f"{self.path}: run folder already has {self.CHECKPOINT}; pass --resume to continue "
                             "it or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        return has_ckpt and resume

    def write_config(self, cfg: dict) -> Path:
        return atomic_write_json(self.file(self.CONFIG), cfg)

    def read_config(self) -> dict | None:
        p = self.file(self.CONFIG)
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    def save_checkpoint(self, state: dict) -> Path:
        return atomic_torch_save(self.file(self.CHECKPOINT), state)

    def load_checkpoint(self) -> dict:
        p = self.file(self.CHECKPOINT)
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint is a user-facing problem
            raise FbnasError(f"{p}: cannot read checkpoint ({type(e).__name__}: {e})") from None

    def write_theta_history(self, history: dict) -> Path:
        return atomic_write_json(self.file(self.THETA_HISTORY), history)

    def write_heatmap(self, history: dict) -> Path | None:
        return save_probability_heatmap(self.file(self.HEATMAP), history)

    def write_result(self, result: dict) -> Path:
        return atomic_write_json(self.file(self.RESULT), result)


def theta_history(layer_names: list[str], candidate_names: list[list[str]], epochs: list[dict]) -> dict:
    """The ``theta_history.json`` document.

    ``epochs`` entries: ``{"epoch": e, "tau": t, "theta": [[..K_l..] per layer], "probs": [[..]]}``.
    """
    return {"layers": layer_names, "candidates": candidate_names, "epochs": epochs}


def save_probability_heatmap(path: str | Path, history: dict) -> Path | None:
    """One image: rows are (layer, candidate) pairs grouped by layer, columns are epochs, color is P.

    A single axis keeps this fast enough to rewrite after every epoch. Returns None if no epochs yet.
    """
    epochs = history.get("epochs") or []
    if not epochs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers, cands = history["layers"], history["candidates"]
    grid = np.array([[p for layer_probs in e["probs"] for p in layer_probs] for e in epochs]).T  # [sum K, E]
    sizes = [len(c) for c in cands]
    starts = np.cumsum([0] + sizes)
    xs = [e["epoch"] for e in epochs]
    fig, ax = plt.subplots(figsize=(min(16.0, 8.0 + 0.12 * len(xs)), max(4.0, 0.045 * grid.shape[0] + 1.5)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=float(grid.max()),
                      interpolation="nearest", extent=(xs[0] - 0.5, xs[-1] + 0.5, grid.shape[0], 0))
    for y in starts[1:-1]:
        ax.axhline(y, color="white", linewidth=0.6)
    ax.set_yticks([(starts[i] + starts[i + 1]) / 2 for i in range(len(layers))])
    ax.set_yticklabels(layers, fontsize=6)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    same = all(c == cands[0] for c in cands)
    order = ", ".join(cands[0]) if same and cands else "see theta_history.json"
    ax.set_title(f"P(candidate) per layer over epochs\ncandidates top to bottom in each layer: {order}", fontsize=8)
    fig.colorbar(image, ax=ax, label="P(candidate)")
    fig.tight_layout()

    def write(f) -> None:
        fig.savefig(f, format="png", dpi=100)

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


# ---- architectures --------------------------------------------------------------------------------


def sample_choices(probs: list[torch.Tensor], k: int, generator: torch.Generator) -> list[list[int]]:
    """``k`` choice vectors drawn independently per layer from ``probs`` (FBNet eq. 6)."""
    out = []
    for _ in range(k):
        out.append([int(torch.multinomial(p.double(), 1, generator=generator)) for p in probs])
    return out


def choices_probability(probs: list[torch.Tensor], choices: list[int]) -> float:
    """P_theta(a) = prod_l P_l(choice_l) (eq. 6)."""
    logp = sum(float(torch.log(p[int(c)].double())) for p, c in zip(probs, choices, strict=True))
    return float(np.exp(logp))


# Mean normalized entropy above which P_theta counts as "still near uniform" (the argmax is then close to a
# random pick among architectures of the same cost; e.g. max probability 0.18 of 9 candidates gives 0.98).
NEAR_UNIFORM_ENTROPY = 0.97


def distribution_summary(probs: list[torch.Tensor]) -> dict:
    """How decided P_theta is: per layer the argmax probability and entropy / log(K) (1: uniform, 0: one-hot),
    their mean, and ``near_uniform`` when the mean stays above :data:`NEAR_UNIFORM_ENTROPY`."""
    max_prob, norm_entropy = [], []
    for p in probs:
        p = p.detach().double().clamp_min(1e-12)
        k = p.numel()
        max_prob.append(float(p.max()))
        norm_entropy.append(float(-(p * p.log()).sum() / np.log(k)) if k > 1 else 0.0)
    mean = float(np.mean(norm_entropy)) if norm_entropy else 0.0
    return {"max_prob": max_prob, "normalized_entropy": norm_entropy, "mean_normalized_entropy": mean,
            "near_uniform": mean > NEAR_UNIFORM_ENTROPY}


def describe_arch(space, choices: list[int], num_classes: int, name: str,
                  latency_fn: Callable[[Any], float] | None = None) -> dict:
    """An arch entry for result.json: spec dict, choices, choice names, MACs, params, LUT latency (or None)."""
    from fbnas.cost.counting import count

    spec = space.to_spec(choices, name=name)
    report = count(spec, num_classes=num_classes)
    return {"arch": spec.to_dict(), "choices": [int(c) for c in choices],
            "choice_names": space.choice_names(choices),
            "latency_ms": None if latency_fn is None else float(latency_fn(spec)),
            "macs": int(report.macs), "params": int(report.params)}


def env_threads(default: int | None = None) -> int | None:
    """Thread count from ``FBNAS_THREADS`` if set (tests pin 1 for bit-exact comparisons)."""
    v = os.environ.get("FBNAS_THREADS")
    return int(v) if v else default
