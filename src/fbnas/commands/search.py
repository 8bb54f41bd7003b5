"""``fbnas search STRATEGY --config FILE --out DIR [--preset quick] [--resume] [--set KEY=VALUE ...]``: one
subcommand per registered strategy (:mod:`fbnas.search.strategy`); a strategy may add options of its own
(``cli_options``), each a shorthand for one ``--set``."""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.search.strategy import strategies

    found = strategies()
    p = sub.add_parser("search", help=f"run an architecture search ({', '.join(found)})")
    ssub = p.add_subparsers(dest="strategy", metavar="STRATEGY")
    for name, strategy in found.items():
        sp = ssub.add_parser(name, help=strategy.help)
        sp.add_argument("--config", required=True, help="search config (YAML)")
        sp.add_argument("--out", required=True, help="run folder (checkpoints, history, plots, result.json)")
        sp.add_argument("--preset", default=None, help="named preset inside the config, e.g. quick")
        sp.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        sp.add_argument("--overwrite", action="store_true",
                        help="replace the run in --out (kept until the new run has written its first checkpoint)")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config field, e.g. --set loss.form=none (repeatable)")
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
        cfg = saved_config(strategy, args.out) or cfg  # the run's own resolved config wins
    result = run_search(strategy, cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                        source=str(args.config), overwrite=args.overwrite)
    print(strategy.format_result(result))
    print(f"result: {RunFolder(args.out).file(RunFolder.RESULT)}")
    return 0
