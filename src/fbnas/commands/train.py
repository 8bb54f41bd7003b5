"""``fbnas train --arch NAME_OR_SPEC --data fashion-mnist --epochs N --out DIR``: train on a real dataset."""

from __future__ import annotations

import argparse
import sys

# CLI option -> Recipe field (None means: keep the recipe file's / default value)
RECIPE_OPTIONS = [
    ("--epochs", "epochs", int), ("--batch-size", "batch_size", int), ("--lr", "lr", float),
    ("--optimizer", "optimizer", str), ("--momentum", "momentum", float), ("--weight-decay", "weight_decay", float),
    ("--lr-schedule", "lr_schedule", str), ("--warmup-epochs", "warmup_epochs", float),
    ("--step-size", "step_size", int), ("--gamma", "gamma", float), ("--label-smoothing", "label_smoothing", float),
    ("--mixup-alpha", "mixup_alpha", float), ("--dropout", "dropout", float), ("--drop-path", "drop_path", float),
    ("--ema-decay", "ema_decay", float), ("--seed", "seed", int), ("--threads", "threads", int),
    ("--crop-padding", "crop_padding", int),
]


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train an architecture on a dataset (checkpoint, metrics, resume)")
    p.add_argument("--arch", help="zoo name, spec file (YAML/JSON) or a search's DIR/result.json")
    p.add_argument("--data", default=None, help="fashion-mnist (default) | cifar10 | imagefolder")
    p.add_argument("--data-dir", default=None, help="dataset folder (default: $FBNAS_DATA or the system copy)")
    p.add_argument("--image-size", type=int, default=None, help="imagefolder: resize images to this size")
    p.add_argument("--out", help="run folder: config.json, metrics.jsonl, checkpoint.pt")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="DIR",
                   help="continue the run in DIR (or --out) from its checkpoint, bit-exactly")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (kept until the new run has written its first checkpoint)")
    p.add_argument("--recipe", default=None, help="recipe file (YAML); command-line options override it (default: "
                   "the searched recipe of a JointNAS result.json given as --arch, else the default recipe)")
    p.add_argument("--val-ratio", type=float, default=None, help="hold out this part of the training set (default 0)")
    for flag, field, typ in RECIPE_OPTIONS:
        p.add_argument(flag, dest=f"r_{field}", type=typ, default=None, metavar=field.upper(),
                       help=f"recipe field {field}")
    p.add_argument("--channels-last", dest="r_channels_last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default on: faster depthwise convs on CPU)")
    p.add_argument("--hflip", dest="r_hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips")
    p.add_argument("--no-progress", action="store_true", help="no progress bar or per-epoch lines")
    # hidden options for quick runs and tests
    p.add_argument("--limit-train", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--limit-test", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--step-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from fbnas.commands.common import print_json
    from fbnas.errors import FbnasError
    from fbnas.train import Recipe, TrainingInterrupted, train

    overrides = {field: getattr(args, f"r_{field}") for _, field, _ in RECIPE_OPTIONS}
    overrides["channels_last"] = args.r_channels_last
    overrides["hflip"] = args.r_hflip
    if args.resume:
        out = args.out if args.resume is True else args.resume
        if not out:
            raise FbnasError("--resume needs the run folder: --resume DIR (or --out DIR --resume)")
        recipe = None
        if any(v is not None for v in overrides.values()) or args.recipe or args.arch or args.data \
                or args.val_ratio is not None or args.image_size is not None:
            recipe = resume_recipe(args, out, overrides)
        spec = None
    else:
        if not args.arch or not args.out:
            raise FbnasError("train needs --arch NAME_OR_SPEC and --out DIR (or --resume DIR)")
        from fbnas.train.recipe import searched_recipe

        out = args.out
        from fbnas.io import check_output

        check_output(out, "--out", "folder")  # before any work
        found = None if args.recipe else searched_recipe(args.arch)
        if found is not None:
            print(f"fbnas: note: training with the recipe searched with {args.arch} (--recipe FILE replaces it; "
                  "options override its fields)", file=sys.stderr)
        base = Recipe.load(args.recipe) if args.recipe else (found or Recipe())
        epochs = overrides.get("epochs")
        # an inherited warm-up that the shorter run given by --epochs cannot hold: dropped, said aloud
        drop_warmup = epochs is not None and overrides.get("warmup_epochs") is None and 0 < base.warmup_epochs >= epochs
        if drop_warmup:
            overrides["warmup_epochs"] = 0.0
        try:
            recipe = base.replace(**overrides)
        except FbnasError as e:
            raise FbnasError(f"recipe: {e}") from None
        if drop_warmup:  # after validation: a refused recipe stays one line
            print(f"fbnas: note: no lr warm-up ({base.warmup_epochs:g} epochs do not fit in --epochs {epochs:g}; "
                  "--warmup-epochs sets one)", file=sys.stderr)
        spec = args.arch
    if args.limit_train is not None and args.limit_train < 1:
        raise FbnasError(f"--limit-train must be >= 1, got {args.limit_train}")
    try:
        result = train(spec, recipe, args.data or "fashion-mnist", out, data_dir=args.data_dir,
                       resume=bool(args.resume),
                       val_ratio=args.val_ratio or 0.0, progress=not args.no_progress, limit_train=args.limit_train,
                       limit_test=args.limit_test, image_size=args.image_size, step_delay=args.step_delay,
                       overwrite=args.overwrite)
    except TrainingInterrupted as e:
        print(f"fbnas: {e}", file=sys.stderr)
        return 130
    print_json(result)
    return 0


def resume_recipe(args, out: str, overrides: dict):
    """The recipe a resumed run continues with: its own, with ``--epochs`` applied (safe: the schedule follows).
    Any other option that differs from the run's own setting is refused in one line naming it."""
    from fbnas.arch.zoo import resolve_arch
    from fbnas.errors import FbnasError
    from fbnas.train import Recipe
    from fbnas.train.checkpoint import load_checkpoint

    state = load_checkpoint(f"{out}/checkpoint.pt")
    saved = Recipe.from_dict(state["recipe"], source=f"{out}/checkpoint.pt recipe")
    given = (Recipe.load(args.recipe) if args.recipe else saved).replace(**overrides)
    mine, theirs = saved.to_dict(), given.to_dict()
    changed = [f"{k} ({mine[k]!r} -> {theirs[k]!r})" for k in mine if k != "epochs" and mine[k] != theirs[k]]
    data = dict(state.get("data") or {})
    for flag, key, value in (("--data", "name", args.data), ("--val-ratio", "val_ratio", args.val_ratio),
                             ("--image-size", "image_size", args.image_size)):
        if value is not None and value != data.get(key, 0.0 if key == "val_ratio" else None):
            changed.append(f"{flag} ({data.get(key)!r} -> {value!r})")
    if args.arch:
        a, b = resolve_arch(args.arch).to_dict(), dict(state["arch"])
        if any(a.get(k) != b.get(k) for k in ("stages", "basic_args", "head")):
            changed.append(f"--arch ({args.arch} is not the run's architecture)")
    if changed:
        raise FbnasError(f"{out}: --resume continues the run with its own settings; only --epochs can change, and "
                         f"this command line changes {', '.join(changed)}; drop those options, or start a new run "
                         "(--overwrite or another --out)")
    return saved.replace(epochs=given.epochs) if args.r_epochs is not None else None
