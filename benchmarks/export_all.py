"""Export every zoo model to ONNX (BN folded) and check it in onnxruntime against PyTorch.

Prints a JSON list with one object per model (max abs difference of the exported file vs. the unfolded PyTorch
model on a random batch of 2, the folding error, output magnitude, file size, seconds), then a summary object
with the max over all models. Untrained models get random BN values calibrated on random input first (as
``fbnas export`` does) so the comparison exercises every layer. Exit status 1 if any model fails or exceeds
``--tolerance``.

    .venv/bin/python benchmarks/export_all.py                    # each model at its own input size
    .venv/bin/python benchmarks/export_all.py --family ghostnet  # one family (fbnet, ghostnet, efficientnet, espnet)
    .venv/bin/python benchmarks/export_all.py --input-size 64 --out-dir /tmp/onnx
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-size", type=int, default=None, help="default: each model's own input size")
    p.add_argument("--out-dir", default=None, help="keep the .onnx files here (default: a temp folder, removed)")
    p.add_argument("--models", nargs="*", default=None, help="zoo names (default: all)")
    p.add_argument("--family", default=None, help="only the zoo models of this family")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from fbnas.arch.zoo import PUBLISHED, zoo_names
    from fbnas.errors import FbnasError
    from fbnas.export import calibrate_untrained, export_model, load_source
    from fbnas.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    names = args.models or [n for n in zoo_names() if args.family is None or PUBLISHED[n].family == args.family]
    tmp = None if args.out_dir else tempfile.TemporaryDirectory(prefix="fbnas_export_all_")
    out_dir = Path(args.out_dir or tmp.name)
    rows = []
    try:
        for name in names:
            t0 = time.perf_counter()
            src = load_source(name, num_classes=PUBLISHED[name].num_classes if name in PUBLISHED else None)
            size = args.input_size or src.spec.input_size
            shape = (1, src.spec.in_channels, size, size)
            calibrate_untrained(src.model, shape)
            row: dict = {"name": name, "input_size": size}
            try:
                r = export_model(src.model, out_dir / f"{name}.onnx", "onnx", shape, opset=args.opset,
                                 tolerance=args.tolerance, threads=args.threads)
                row.update(max_abs_diff=r.max_abs_diff, fold_max_abs_diff=r.fold_max_abs_diff,
                           max_abs_output=r.max_abs_output, rel_diff=r.max_abs_diff / max(r.max_abs_output, 1e-12),
                           folded_pairs=r.folded_pairs,
                           size_mb=round(r.size_bytes / 1e6, 2), ok=True)
            except FbnasError as e:
                row.update(ok=False, error=str(e))
            row["seconds"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            print(f"{name}: {row.get('max_abs_diff', row.get('error'))}", file=sys.stderr, flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    diffs = [r["max_abs_diff"] for r in rows if r["ok"]]
    summary = {"summary": True, "models": len(rows), "ok": len(diffs), "max_abs_diff": max(diffs, default=None),
               "tolerance": args.tolerance, "all_below_tolerance": len(diffs) == len(rows)
               and max(diffs) < args.tolerance}
    json.dump(rows + [summary], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if summary["all_below_tolerance"] else 1


if __name__ == "__main__":
    sys.exit(main())
