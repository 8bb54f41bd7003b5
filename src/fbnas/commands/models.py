"""``fbnas models``: the 16 zoo models with analytic MACs/params next to the published numbers."""

from __future__ import annotations


def add_parser(sub) -> None:
    from fbnas.commands.common import add_format_arg

    p = sub.add_parser("models", help="list the model zoo: MACs and params against the published numbers")
    add_format_arg(p)
    p.add_argument("--input-size", type=int, default=None,
                   help="count MACs at this input size (default: each model's own; published MACs then n/a)")
    p.set_defaults(func=run)


def _pct(ours: int, published: int | None) -> float | None:
    return None if not published else round((ours / published - 1) * 100, 4)


def zoo_rows(input_size: int | None = None) -> list[dict]:
    """One row per zoo model: our counts, the published ones (plain counts) and the % differences."""
    from fbnas.arch.zoo import PUBLISHED, get_spec, zoo_names
    from fbnas.cost.counting import count

    rows = []
    for name in zoo_names():
        spec = get_spec(name)
        report = count(spec, input_size)
        pub_macs_m, pub_params_m = PUBLISHED[name]
        same_size = report.input_size == spec.input_size
        pub_macs = round(pub_macs_m * 1e6) if same_size else None  # published MACs hold at the paper's size
        pub_params = round(pub_params_m * 1e6)
        rows.append({
            "name": name, "input_size": report.input_size, "macs": report.macs, "params": report.params,
            "published_macs": pub_macs, "published_params": pub_params, "params_total": report.params_total,
            "macs_diff_pct": _pct(report.macs, pub_macs), "params_diff_pct": _pct(report.params, pub_params),
            "native_input_size": spec.input_size,
        })
    return rows


def run(args) -> int:
    from fbnas.commands.common import print_json, print_table
    from fbnas.errors import FbnasError

    if args.input_size is not None and args.input_size < 1:
        raise FbnasError(f"--input-size must be a positive integer, got {args.input_size}")
    rows = zoo_rows(args.input_size)
    if args.format == "json":
        print_json(rows)
        return 0
    table = [{
        **r, "macs_m": r["macs"] / 1e6, "params_m": r["params"] / 1e6, "params_total_m": r["params_total"] / 1e6,
        "pub_macs_m": None if r["published_macs"] is None else r["published_macs"] / 1e6,
        "pub_params_m": r["published_params"] / 1e6,
        "macs_diff": None if r["macs_diff_pct"] is None else f"{r['macs_diff_pct']:+.2f}%",
        "params_diff": f"{r['params_diff_pct']:+.2f}%",
    } for r in rows]
    print_table(table, [("name", "name"), ("input_size", "input"), ("macs_m", "MACs (M)"),
                        ("pub_macs_m", "published"), ("macs_diff", "diff"), ("params_m", "params (M)"),
                        ("pub_params_m", "published"), ("params_diff", "diff"),
                        ("params_total_m", "all params (M)")])
    print("\nparams: conv/linear weights as the papers count them; all params: BN and biases too. "
          "Published MACs also count global average pooling (see docs/zoo_and_cost.md).")
    return 0
