"""The strategy seam: a strategy is an object with a typed config that runs over a space in a run folder and
returns a result. Strategies register as objects; ``fbnas search NAME`` is generated from the registry.

:func:`run_search` is what every strategy shares around its own work: the run folder (refusing to overwrite
a run, or to resume it with another config), threads and seeds, the manifest, and ``result.json``. A result
holds the found architecture twice: as a named sample of the strategy's space (``sample``) and as the arch
spec it builds (``arch``, what ``fbnas train --arch DIR/result.json`` reads).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from fbnas.errors import DivergenceError, FbnasError
from fbnas.runs import RunFolder, restoring
from fbnas.search.config import SearchConfig
from fbnas.space.base import DimSpace

STRATEGY_MODULES = ["fbnas.search.dnas", "fbnas.search.dmasking", "fbnas.search.fpnas",
                     "fbnas.search.jointnas.strategy"]


@runtime_checkable
class Strategy(Protocol):
    name: ClassVar[str]
    help: ClassVar[str]
    config_model: ClassVar[type[SearchConfig]]
    smoke_config: ClassVar[dict[str, Any]]  # a seconds-long synthetic-data config (contract tests, examples)

    def space(self, cfg: Any) -> DimSpace:
        """The space the strategy searches with this config."""
        ...

    def run(self, cfg: Any, folder: RunFolder, *, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None = None, source: str = "config") -> dict[str, Any] | None:
        """Search (or continue) in ``folder``; the result document, or None when stopped early. Errors name
        ``source`` (the user's config file)."""
        ...

    def format_result(self, result: dict[str, Any]) -> str: ...


_REGISTRY: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    if not isinstance(strategy, Strategy):
        raise TypeError(f"{strategy!r} does not implement the Strategy protocol")
    _REGISTRY[strategy.name] = strategy
    return strategy


def strategies() -> dict[str, Strategy]:
    """Every registered strategy (importing the built-in strategy modules first)."""
    for module in STRATEGY_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    found = strategies()
    if name not in found:
        raise FbnasError(f"unknown search strategy {name!r}; valid: {', '.join(sorted(found))}")
    return found[name]


def run_search(strategy: Strategy, cfg: SearchConfig, out: str | Path, resume: bool = False,
               log: Callable[[str], Any] = print, stop_after_epoch: int | None = None,
               source: str = "config", overwrite: bool = False) -> dict[str, Any]:
    """Run (or resume) ``strategy`` with the validated ``cfg`` in the run folder ``out``; returns result.json's
    document (empty when ``stop_after_epoch`` ended the work early). ``overwrite`` replaces a run already there
    (kept until the new run's first checkpoint)."""
    from fbnas import distributed

    w = distributed.world()
    if w.size > 1 and not getattr(strategy, "data_parallel", False):
        raise FbnasError(f"search {strategy.name}: does not run data-parallel under torchrun (its trials scale out "
                         "through its executor: jointnas.executor.kind ray or process); run it as one process")
    folder = RunFolder(out, "search")
    resuming = distributed.from_writer(lambda: folder.prepare(resume, overwrite))
    if not w.is_writer:  # the other ranks compute the same steps; rank 0 writes the run folder
        return _search(strategy, cfg, folder, resuming, log, stop_after_epoch, source)
    try:
        return _search(strategy, cfg, folder, resuming, log, stop_after_epoch, source)
    except DivergenceError as e:
        raise folder.diverged(e, lambda state: _kept(folder, state)) from None
    except BaseException:
        folder.restore_replaced()
        raise


def _kept(folder: RunFolder, state: dict[str, Any]) -> str:
    epoch = int(state.get("epoch", -1))
    when = "its initial state" if epoch < 0 else f"after epoch {epoch}"
    return (f"{when}; it resumes, repeating these steps, and `fbnas export {folder.path}` exports its "
            "architecture; search again with a lower lr: --overwrite")


def _search(strategy: Strategy, cfg: SearchConfig, folder: RunFolder, resuming: bool, log: Callable[[str], Any],
            stop_after_epoch: int | None, source: str) -> dict[str, Any]:
    from fbnas import distributed
    from fbnas.runtime import set_threads
    from fbnas.seeding import seed_everything

    resolved = cfg.to_dict()

    def start() -> None:  # rank 0 (every rank raises its refusal)
        if resuming:
            saved = folder.read_config()
            if saved is not None:  # read through the model: fields added since the run started take their defaults
                saved = type(cfg).parse(saved, str(folder.file(folder.CONFIG))).to_dict()
            if saved is not None and saved != resolved:
                changed = sorted(k for k in set(saved) | set(resolved) if saved.get(k) != resolved.get(k))
                raise FbnasError(f"{folder.path}: --resume with a different config than the run's config.json "
                                 f"(differs in: {', '.join(changed)})")
        folder.start(resolved, seed=cfg.seed, resumed=resuming)

    distributed.from_writer(start)
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    result = strategy.run(cfg, folder, resuming=resuming, log=log, stop_after_epoch=stop_after_epoch, source=source)
    if result is None:
        return {}
    if distributed.world().is_writer:
        folder.finish(result)
    return result


def saved_config(strategy: Strategy, out: str | Path) -> SearchConfig | None:
    """The config a run folder was started with (what ``--resume`` continues), validated."""
    folder = RunFolder(out, "search")
    if not folder.has_checkpoint:
        return None
    saved = folder.read_config()
    return None if saved is None else strategy.config_model.parse(saved, str(folder.file(folder.CONFIG)))


def checkpoint_arch(path: str | Path) -> Any | None:
    """The architecture a search run folder without a result (stopped, or still running) holds now: the argmax
    of its last checkpoint, built from its config.json; None when ``path`` is not such a folder (or its
    ``checkpoint.pt``). Lets ``fbnas export DIR`` export what a stopped search found so far."""
    p = Path(path)
    if p.name == RunFolder.CHECKPOINT and p.is_file():
        p = p.parent
    folder = RunFolder(p, "search")
    if not p.is_dir() or folder.is_finished or not folder.has_checkpoint:
        return None
    manifest = folder.read_json(folder.MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("kind") != "search":
        return None
    ckpt = folder.file(folder.CHECKPOINT)
    state = folder.load_checkpoint()
    saved = folder.read_config()
    if not isinstance(saved, dict) or not isinstance(saved.get("strategy"), str):
        raise FbnasError(f"{folder.file(folder.CONFIG)}: damaged run file (no strategy)")
    strategy = get_strategy(saved["strategy"])
    cfg = strategy.config_model.parse(saved, str(folder.file(folder.CONFIG)))
    choices = state.get("argmax_choices")
    if not isinstance(choices, list):
        raise FbnasError(f"{ckpt}: the checkpoint names no architecture (written before fbnas recorded one)")
    space = strategy.space(cfg)
    with restoring(ckpt):
        sample = space.from_indices(choices)
        return space.build(sample, name=f"{strategy.name}_checkpoint").arch
