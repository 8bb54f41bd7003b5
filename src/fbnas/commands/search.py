"""``fbnas search STRATEGY --config FILE --out DIR [--preset quick] [--resume] [--set KEY=VALUE ...]``: one
subcommand per registered strategy (:mod:`fbnas.search.strategy`)."""

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
        sp.set_defaults(func=lambda args, s=strategy: run(s, args))
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def run(strategy, args) -> int:
    from fbnas.config import load_config
    from fbnas.runs import RunFolder
    from fbnas.search.strategy import run_search, saved_config

    cfg = load_config(args.config, strategy.config_model, args.preset, args.set)
    if args.resume:
        cfg = saved_config(strategy, args.out) or cfg  # the run's own resolved config wins
    result = run_search(strategy, cfg, args.out, resume=args.resume, log=lambda m: print(m, flush=True),
                        source=str(args.config), overwrite=args.overwrite)
    print(strategy.format_result(result))
    print(f"result: {RunFolder(args.out).file(RunFolder.RESULT)}")
    return 0
