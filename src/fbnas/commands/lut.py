"""``fbnas lut {build,show,predict,fit-correction,validate,export-ops,import}``: latency lookup tables."""

from __future__ import annotations

import argparse

from fbnas.commands.common import add_format_arg, print_json, print_table


def _setting_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", help="torch or onnxruntime (default torch)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--channels-last", action="store_true", help="torch: channels_last memory format")
    p.add_argument("--dtype", default="float32", choices=["float32", "int8"],
                   help="float32 (default) or int8: each block (and network) quantized statically in onnxruntime's "
                        "QDQ format (needs --backend onnxruntime); int8 rows are keyed and stored apart")
    p.add_argument("--statistic", default="auto",
                   help="per-entry statistic: auto (default: cpu_median_cold for 1 thread, else median_cold), median "
                        "(wall clock), cpu_median (thread CPU clock, robust to other processes), p10; *_cold: "
                        "L2 evicted before every timed call")


def _shape_args(p: argparse.ArgumentParser, space_required: bool = False) -> None:
    p.add_argument("--space", required=space_required, help="search space name or YAML (e.g. fbnet_v1)")
    p.add_argument("--input-size", type=int, default=None, help="input resolution (default: the space's/spec's)")
    p.add_argument("--in-channels", type=int, default=None, help="input channels (default: the space's/spec's)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier classes (default 1000)")
    p.add_argument("--width-multiplier", type=float, default=None,
                   help="layer-wise spaces: multiply every stage's channels (a search config's space.width_multiplier)")


def _allow_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-fingerprint", default=None, metavar="FP",
                   help="use the rows of another device (its 8-digit fingerprint or full name, as `lut show` and "
                        "the error list them) instead of this machine's")


def add_parser(sub) -> None:
    p = sub.add_parser("lut", help="latency lookup tables: build, show, predict, validate, export-ops, import")
    lsub = p.add_subparsers(dest="lut_command", metavar="ACTION")

    b = lsub.add_parser("build", help="measure the blocks a space and/or architectures need (missing ones only)")
    _shape_args(b)
    b.add_argument("--arch", action="append", default=[], help="zoo name or spec file to cover (repeatable)")
    b.add_argument("--db", required=True, help="LUT file (SQLite; created if missing)")
    b.add_argument("--force", action="store_true", help="re-measure entries that already exist")
    b.add_argument("--ray-resource", default=None, metavar="NAME",
                   help="measure on the Ray node offering this custom resource (`ray start --resources "
                        "'{\"NAME\": 1}'`); its rows keep that node's fingerprint")
    b.add_argument("--ray-address", default="auto", help="with --ray-resource: auto | HOST:PORT | local")
    _setting_args(b)
    add_format_arg(b)
    b.set_defaults(func=_build)

    s = lsub.add_parser("show", help="summarise a LUT (entries per backend, device, threads)")
    s.add_argument("--db", required=True)
    s.add_argument("--entries", action="store_true", help="list every entry")
    add_format_arg(s)
    s.set_defaults(func=_show)

    pr = lsub.add_parser("predict", help="predicted latency of an architecture, with per-block breakdown")
    pr.add_argument("arch", help="zoo name or spec file")
    pr.add_argument("--db", required=True)
    pr.add_argument("--num-classes", type=int, default=None)
    _setting_args(pr)
    _allow_arg(pr)
    add_format_arg(pr)
    pr.set_defaults(func=_predict)

    fc = lsub.add_parser("fit-correction", help="fit overhead + per-op-type scales on measured networks")
    fc.add_argument("--db", required=True)
    _shape_args(fc, space_required=True)
    fc.add_argument("--samples", type=int, default=12, help="networks to measure (default 12)")
    fc.add_argument("--seed", type=int, default=0)
    fc.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per network (default 15)")
    fc.add_argument("--raw", action="store_true",
                    help="fit on the raw times instead of the drift-compensated ones (see validate --raw)")
    _setting_args(fc)
    _allow_arg(fc)
    add_format_arg(fc)
    fc.set_defaults(func=_fit)

    v = lsub.add_parser("validate", help="compare predictions with end-to-end measurements of sampled networks")
    v.add_argument("--db", required=True)
    _shape_args(v, space_required=True)
    v.add_argument("--samples", type=int, default=30)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--plot", default=None, help="write a predicted-vs-measured scatter plot (PNG)")
    v.add_argument("--out", default=None, help="also write the JSON result here")
    v.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds per network (default 15)")
    v.add_argument("--raw", action="store_true",
                   help="top-level metrics against the raw times; by default every timed network call is divided "
                        "by the machine's speed at that moment (anchor blocks timed just before it) and put on the "
                        "build's speed (reference networks), so a shared machine's speed drift does not count as "
                        "prediction error (the raw metrics are always reported under 'raw')")
    _setting_args(v)
    add_format_arg(v)
    v.set_defaults(func=_validate)

    e = lsub.add_parser("export-ops", help="write every needed block as ONNX + manifest for target_script.py")
    _shape_args(e)
    e.add_argument("--arch", action="append", default=[], help="zoo name or spec file to cover (repeatable)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--batch", type=int, default=1)
    e.add_argument("--statistic", default="auto", help="statistic the target script reports (auto, median, "
                   "cpu_median, p10, median_cold, cpu_median_cold)")
    e.set_defaults(func=_export)

    i = lsub.add_parser("import", help="load target_script.py results into a LUT")
    i.add_argument("results", help="results JSON written by target_script.py")
    i.add_argument("--db", required=True)
    i.set_defaults(func=_import)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _check_positive(**values: int | None) -> None:
    from fbnas.errors import FbnasError

    for name, v in values.items():
        if v is not None and v < 1:
            raise FbnasError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def _space(args):
    from fbnas.space import load_space

    _check_positive(input_size=args.input_size, in_channels=args.in_channels, num_classes=args.num_classes)
    wm = getattr(args, "width_multiplier", None)
    if wm is not None and not wm > 0:
        from fbnas.errors import FbnasError

        raise FbnasError(f"--width-multiplier must be > 0, got {wm}")
    return load_space(args.space, input_size=args.input_size, in_channels=args.in_channels, width_multiplier=wm)


def _table(args):
    from fbnas.lut import LatencyTable

    _check_positive(threads=args.threads, batch=args.batch)
    return LatencyTable(args.db, backend=args.backend, threads=args.threads, batch=args.batch,
                        channels_last=args.channels_last, num_classes=getattr(args, "num_classes", None),
                        statistic=args.statistic, allow_fingerprint=getattr(args, "allow_fingerprint", None),
                        dtype=args.dtype)


def _build(args) -> int:
    import time

    from fbnas.io import check_output
    from fbnas.lut import build_table
    from fbnas.lut.measure import check_backend

    check_backend(args.backend, args.channels_last, args.statistic, args.dtype)  # before any work
    _check_positive(threads=args.threads, batch=args.batch)
    check_output(args.db, "--db")
    space = _space(args) if args.space else None
    t0 = time.perf_counter()
    opts = {"space": space, "specs": args.arch, "input_size": args.input_size, "backend": args.backend,
            "threads": args.threads, "force": args.force, "in_channels": args.in_channels,
            "num_classes": args.num_classes or 1000, "batch": args.batch, "channels_last": args.channels_last,
            "statistic": args.statistic, "dtype": args.dtype}
    if args.ray_resource:
        from fbnas.lut.remote import build_on_node

        res = build_on_node(args.db, args.ray_resource, args.ray_address, **opts)
    else:
        res = build_table(args.db, **opts)
    res["seconds"] = round(time.perf_counter() - t0, 2)
    if res.get("correction"):
        res["correction"] = {k: v for k, v in res["correction"].items() if k != "fit_samples"}
    res["db"] = args.db
    if args.format == "json":
        print_json(res)
    else:
        print(f"{args.db}: measured {res['measured']} {args.dtype} entries, already present {res['skipped']} "
              f"({res['total']} needed) in {res['seconds']} s")
        c = res.get("correction")
        if c:
            scales = ", ".join(f"{t}={v:.3f}" for t, v in sorted(c["scales"].items()))
            print(f"correction ({c.get('source', 'fit-correction')}, {c['n_samples']} networks): overhead "
                  f"{c['overhead_ms']:.3f} ms, scales {scales}; MAPE on them plain {c['plain_mape']:.3f} -> "
                  f"corrected {c['fit_mape']:.3f}")
    return 0


def _show(args) -> int:
    from fbnas.lut.signature import describe
    from fbnas.lut.store import LutStore

    with LutStore(args.db) as store:
        summary = store.summary()
        all_rows = store.rows()
        rows = all_rows if args.entries else []
        corrections = {f"{b}/{t}/{st}/{fp}": store.get_correction(b, t, "contiguous", st, dev) for b, t, st, dev, fp in
                       {(s["backend"], s["threads"], s["statistic"], s["device"], s["fingerprint"]) for s in summary}}
    slower, compared = int8_slower(all_rows)
    if args.format == "json":
        print_json({"db": args.db, "groups": summary, "entries": rows,
                    "corrections": {k: {n: x for n, x in v.items() if n != "fit_samples"}
                                    for k, v in corrections.items() if v},
                    "int8_slower_than_fp32": slower, "int8_compared": compared})
        return 0
    print(f"{args.db}: fbnas latency table")
    print_table(summary, [("backend", "backend"), ("dtype", "dtype"), ("threads", "threads"),
                          ("statistic", "statistic"), ("entries", "entries"), ("fingerprint", "fingerprint"),
                          ("cpu", "cpu"),
                          ("versions", "versions"), ("last", "last measured")])
    for k, v in corrections.items():
        if v:
            print(f"correction {k}: overhead {v['overhead_ms']:.3f} ms, scales "
                  + ", ".join(f"{t}={s:.3f}" for t, s in sorted(v["scales"].items()))
                  + f" (n={v['n_samples']}, {v.get('source', 'fit-correction')})")
    if compared:
        print(f"int8 vs fp32: {len(slower)} of {compared} blocks measured in both are slower in int8 on their device"
              + (":" if slower else ""))
        if slower:
            print_table(slower, [("block", "block"), ("backend", "backend"), ("threads", "thr"),
                                 ("int8_ms", "int8 ms"), ("fp32_ms", "fp32 ms"), ("ratio", "int8/fp32")])
    if rows:
        print()
        print_table([{**r, "label": describe(r["block"])} for r in rows],
                    [("label", "block"), ("backend", "backend"), ("threads", "thr"), ("value_ms", "median ms"),
                     ("spread_ms", "IQR ms"), ("samples", "n")])
    return 0


def _predict(args) -> int:
    from fbnas.arch.zoo import resolve_arch

    spec = resolve_arch(args.arch)
    lut = _table(args)
    try:
        pred = lut.predict(spec, source=args.arch)
    finally:
        lut.close()
    if args.format == "json":
        print_json({"arch": spec.name, "backend": args.backend, "threads": args.threads, **pred.to_dict()})
        return 0
    print_table([{"name": n, "key": k, "ms": ms} for n, k, ms in pred.blocks],
                [("name", "block"), ("key", "key"), ("ms", "ms")])
    line = f"{spec.name}: {pred.total_ms:.3f} ms (plain sum, {args.backend}, {args.threads} thread(s))"
    if pred.corrected_ms is not None:
        line += f"; corrected {pred.corrected_ms:.3f} ms"
    print(line)
    return 0


def _fit(args) -> int:
    from fbnas.lut.validate import fit_correction

    _check_positive(samples=args.samples, rounds=args.rounds)
    space = _space(args)
    lut = _table(args)
    try:
        res = fit_correction(lut, space, args.samples, args.seed, args.num_classes,
                             compensate_drift=not args.raw, rounds=args.rounds)
    finally:
        lut.close()
    if args.format == "json":
        print_json(res)
    else:
        print(f"correction on {res['n_samples']} networks: overhead {res['overhead_ms']:.3f} ms, scales "
              + ", ".join(f"{t}={s:.3f}" for t, s in sorted(res["scales"].items()))
              + f"; MAPE plain {res['plain_mape']:.3f} -> corrected {res['fit_mape']:.3f} (on the fit samples)")
    return 0


def _validate(args) -> int:
    from fbnas.io import atomic_write_json, check_output
    from fbnas.lut.validate import validate

    _check_positive(samples=args.samples, rounds=args.rounds)
    for flag, path in (("--out", args.out), ("--plot", args.plot)):
        if path:
            check_output(path, flag)  # before minutes of measuring
    space = _space(args)
    lut = _table(args)
    try:
        res = validate(lut, space, args.samples, args.seed, args.num_classes, plot=args.plot,
                       compensate_drift=not args.raw, rounds=args.rounds)
    finally:
        lut.close()
    if args.out:
        atomic_write_json(args.out, res, nonfinite="null")  # an undefined statistic (one network) is null
    if args.format == "json":
        print_json(res)
        return 0
    keys = ["spearman", "pearson", "mape", "within_10pct"]
    print("plain sum:  " + "  ".join(f"{k} {res[k]:.3f}" for k in keys) + f"  (n={res['n']})")
    if "corrected" in res:
        print("corrected:  " + "  ".join(f"{k} {res['corrected'][k]:.3f}" for k in keys))
    kind = "drift-compensated" if res["drift_compensated"] else "raw"
    if "correction" in res:
        c = res["correction"]
        print(f"(correction: {c['source']}, fitted on {c['n_samples']} networks)")
    else:
        print("corrected:  n/a (the table has no correction: `fbnas lut build --space ...` fits one)")
    print(f"(against {kind} times; raw plain sum: "
          + "  ".join(f"{k} {res['raw']['plain'][k]:.3f}" for k in keys)
          + f"; load factor {res['load_factor']:.3f}: anchor blocks now / when stored)")
    if res.get("level_factor") is None:
        print("note: this table has no reference networks (built before they existed), so the times are not "
              "put on the build's speed; `fbnas lut build` for this space adds them")
    else:
        print(f"level factor {res['level_factor']:.3f} (reference networks now / during the build)")
    return 0


def _export(args) -> int:
    from fbnas.lut import needed_entries
    from fbnas.lut.export import export_ops

    if not args.space and not args.arch:
        from fbnas.errors import FbnasError

        raise FbnasError("lut export-ops: give a search space (--space) and/or architectures (--arch)")
    from fbnas.io import check_output

    check_output(args.out, "--out", "folder")
    space = _space(args) if args.space else None
    entries = needed_entries(space, args.arch, args.input_size, args.in_channels, args.num_classes or 1000,
                             args.batch)
    from fbnas.lut.measure import check_backend

    check_backend("onnxruntime", statistic=args.statistic)
    res = export_ops(entries, args.out, statistic=args.statistic)
    print(f"wrote {res['ops']} ONNX blocks, manifest.json and target_script.py to {res['dir']}; on the target run: "
          f"python target_script.py {res['dir']} --threads 1 --out results.json")
    return 0


def _import(args) -> int:
    from fbnas.io import check_output
    from fbnas.lut.export import import_results

    check_output(args.db, "--db")
    res = import_results(args.db, args.results)
    print(f"{args.db}: imported {res['imported']} {res['backend']} entries ({res['threads']} thread(s), "
          f"device {res['device']}, fingerprint {res['fingerprint']})")
    return 0


def int8_slower(rows: list[dict]) -> tuple[list[dict], int]:
    """int8 rows slower than the same block's fp32 row (same backend, threads, statistic and CPU), and how many
    int8 rows had an fp32 twin to compare with."""
    from fbnas.lut.signature import describe, with_dtype
    from fbnas.lut.store import hardware_of

    index = {(r["key"], r["backend"], r["threads"], r["statistic"], r["device"]): r for r in rows}
    slower, compared = [], 0
    for r in rows:
        if r["block"].get("dtype") != "int8" or r["block"].get("kind") == "network":
            continue
        twin = index.get((with_dtype(r["block"], "float32").key, r["backend"], r["threads"], r["statistic"],
                          hardware_of(r["device"])))
        if twin is None:
            continue
        compared += 1
        if r["value_ms"] > twin["value_ms"]:
            slower.append({"block": describe(r["block"]), "key": r["key"], "backend": r["backend"],
                           "threads": r["threads"], "int8_ms": r["value_ms"], "fp32_ms": twin["value_ms"],
                           "ratio": round(r["value_ms"] / twin["value_ms"], 3), "device": hardware_of(r["device"])})
    return slower, compared
