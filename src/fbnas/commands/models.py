"""``fbnas models``: the zoo models with analytic MACs/params next to the published numbers.

Each published number is compared under its own convention (:class:`fbnas.arch.zoo.Published`): mobile-vision's
MACs also count the inputs of every global pool and its params are conv/linear weights; ESPNetV2's MACs leave
out the final classifier; the seed 004 table counts all trainable parameters. A difference is shown as ``=``
when our count equals the published one to the published number's resolution.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_format_arg

    p = sub.add_parser("models", help="list the model zoo: MACs and params against the published numbers")
    add_format_arg(p)
    p.add_argument("--input-size", type=int, default=None,
                   help="count MACs at this input size (default: each model's own; published MACs then n/a)")
    p.add_argument("--family", default=None, help="only this family (fbnet, ghostnet, efficientnet, espnet)")
    p.set_defaults(func=run)


def _pct(ours: int, published: int | None) -> float | None:
    return None if not published else round((ours / published - 1) * 100, 4)


def _equal(ours: int, published: int | None, unit: int) -> bool | None:
    """Our count equals the published one to the published resolution (``unit``); None when nothing is published."""
    return None if published is None else round(ours / unit) == round(published / unit)


def zoo_rows(input_size: int | None = None, family: str | None = None) -> list[dict]:
    """One row per zoo model: our counts, the published ones (plain counts) and the differences."""
    from fbnas.arch.zoo import PUBLISHED, get_spec, zoo_families, zoo_names
    from fbnas.cost.counting import count
    from fbnas.errors import FbnasError

    if family is not None and family not in zoo_families():
        raise FbnasError(f"unknown model family {family!r}; valid: {', '.join(zoo_families())}")
    rows = []
    for name in zoo_names(family):
        spec = get_spec(name)
        pub = PUBLISHED[name]
        report = count(spec, input_size, pub.num_classes)
        same_size = report.input_size == spec.input_size
        pub_macs = pub.macs if same_size else None  # published MACs hold at the paper's size
        macs_as_pub = report.macs + (report.pooled if pub.macs_with_pool else 0) - (
            0 if pub.macs_with_fc else report.head_macs)
        params_as_pub = report.params_total if pub.params_all else report.params
        rows.append({
            "name": name, "family": pub.family, "input_size": report.input_size, "num_classes": pub.num_classes,
            "macs": report.macs, "params": report.params, "params_total": report.params_total,
            "pooled": report.pooled, "macs_as_published": macs_as_pub, "params_as_published": params_as_pub,
            "published_macs": pub_macs, "published_params": pub.params,
            "macs_diff_pct": _pct(macs_as_pub, pub_macs), "params_diff_pct": _pct(params_as_pub, pub.params),
            "macs_equal": _equal(macs_as_pub, pub_macs, pub.macs_unit),
            "params_equal": _equal(params_as_pub, pub.params, pub.params_unit),
            "macs_convention": ("conv+linear" + (" + pooled" if pub.macs_with_pool else "")
                                + ("" if pub.macs_with_fc else " - classifier")),
            "params_convention": "all" if pub.params_all else "weights",
            "published_top1": pub.top1, "source": pub.source, "native_input_size": spec.input_size,
        })
    return rows


def _diff(pct: float | None, equal: bool | None) -> str | None:
    if pct is None:
        return None
    return "=" if equal else f"{pct:+.2f}%"


def run(args) -> int:
    from fbnas.commands.common import print_json, print_table
    from fbnas.errors import FbnasError

    if args.input_size is not None and args.input_size < 1:
        raise FbnasError(f"--input-size must be a positive integer, got {args.input_size}")
    rows = zoo_rows(args.input_size, args.family)
    if args.format == "json":
        print_json(rows)
        return 0
    table = [{
        **r, "macs_m": r["macs"] / 1e6, "macs_pub_m": r["macs_as_published"] / 1e6,
        "params_m": r["params"] / 1e6, "params_total_m": r["params_total"] / 1e6,
        "params_pub_m": r["params_as_published"] / 1e6,
        "pub_macs_m": None if r["published_macs"] is None else r["published_macs"] / 1e6,
        "pub_params_m": None if r["published_params"] is None else r["published_params"] / 1e6,
        "macs_diff": _diff(r["macs_diff_pct"], r["macs_equal"]),
        "params_diff": _diff(r["params_diff_pct"], r["params_equal"]),
        "conv": ("pool" if "pooled" in r["macs_convention"] else "") + ("-fc" if "classifier" in
                                                                        r["macs_convention"] else ""),
    } for r in rows]
    print_table(table, [("name", "name"), ("input_size", "input"), ("macs_m", "MACs (M)"),
                        ("macs_pub_m", "as published"), ("conv", "+"), ("pub_macs_m", "published"),
                        ("macs_diff", "diff"), ("params_m", "weights (M)"), ("params_total_m", "all params (M)"),
                        ("params_convention", "published counts"), ("pub_params_m", "published"),
                        ("params_diff", "diff")])
    print("\nMACs: conv + linear multiply-adds. 'as published' applies the publication's convention (+: pool = "
          "plus the inputs of every global pool, as mobile-vision counts; -fc = without the classifier, as "
          "ESPNetV2 publishes). params: 'weights' = conv/linear weights (mobile-vision), 'all' = every trainable "
          "parameter. '=' means equal to the published number's resolution (docs/zoo_and_cost.md).")
    return 0
