"""``fbnas search STRATEGY --config FILE --out DIR [--preset quick] [--resume] [--set KEY=VALUE ...]``: one
subcommand per registered strategy (:mod:`fbnas.search.strategy`); a strategy may add options of its own
(``cli_options``), each a shorthand for one ``--set``."""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_run_args
    from fbnas.search.strategy import strategies

    found = strategies()
    p = sub.add_parser("search", help=f"run an architecture search ({', '.join(found)})")
    ssub = p.add_subparsers(dest="strategy", metavar="STRATEGY")
    for name, strategy in found.items():
        sp = ssub.add_parser(name, help=strategy.help)
        add_run_args(sp, "run folder (checkpoints, history, plots, result.json)", "loss.form=none")
        for flag, key, metavar, text in getattr(strategy, "cli_options", ()):
            sp.add_argument(flag, dest=_dest(flag), default=None, metavar=metavar, help=f"{text} (= --set {key}=...)")
        sp.set_defaults(func=lambda args, s=strategy: run(s, args))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _dest(flag: str) -> str:
    return "opt_" + flag.lstrip("-").replace("-", "_")


def run(strategy, args) -> int:
    """A strategy's own options (``cli_options``: flag, config key, metavar, help) are ``--set KEY=VALUE``s."""
    import json

    from fbnas.config import load_config
    from fbnas.runs import RunFolder
    from fbnas.search.strategy import run_search, saved_config

    options = getattr(strategy, "cli_options", ())
    extra = [f"{key}={json.dumps(getattr(args, _dest(flag)))}" for flag, key, _, _ in options
             if getattr(args, _dest(flag), None) is not None]
    cfg = load_config(args.config, strategy.config_model, args.preset, [*args.set, *extra])
    if args.resume:
        saved = saved_config(strategy, args.out)
        if saved is not None:
            refuse_changes(saved.to_dict(), cfg.to_dict(), args.out)
            cfg = saved
    result = run_search(strategy, cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                        source=str(args.config), overwrite=args.overwrite)
    print(strategy.format_result(result))
    print(f"result: {RunFolder(args.out).file(RunFolder.RESULT)}")
    return 0


def changed_fields(saved: dict, given: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted field, saved value, given value) of every leaf that differs."""
    out = []
    for k in list(saved) + [k for k in given if k not in saved]:
        a, b = saved.get(k), given.get(k)
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_fields(a, b, name + ".")
        elif a != b:
            out.append((name, a, b))
    return out


def refuse_changes(saved: dict, given: dict, out: str) -> None:
    """A resumed search keeps its config: a --config / --preset / --set that changes a field is one line naming
    the fields (a changed run is a new run: --overwrite or another --out)."""
    from fbnas.errors import FbnasError

    changed = changed_fields(saved, given)
    if changed:
        shown = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changed[:4])
        more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
        raise FbnasError(f"{out}: --resume keeps the run's config.json, and this command line changes it ({shown}"
                         f"{more}); resume with the run's own settings, or start a new run (--overwrite or "
                         "another --out)")
