"""int8 export of a trained fbnas checkpoint: fp32 vs int8 Fashion-MNIST test accuracy, their onnxruntime
latency on this machine, and what the int8 (and fp32) latency tables predict for the network.

    PYTHONPATH=src python benchmarks/int8_found_network.py --checkpoint found.pt --db int8.lut --out res.json

Accuracy is exact (10000 test images, onnxruntime); latencies are the LUT protocol's (1 thread, cpu_median_cold,
interleaved rounds) and only as good as the machine is quiet: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--db", required=True, help="latency table (built for the space here if incomplete)")
    ap.add_argument("--space", default="fbnet_fmnist")
    ap.add_argument("--width-multiplier", type=float, default=2.0)
    ap.add_argument("--calibration-samples", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from fbnas.export import export_model, load_source
    from fbnas.export import quantize as q
    from fbnas.io import atomic_write_json
    from fbnas.lut import LatencyTable, build_table
    from fbnas.lut import target_script as ts
    from fbnas.lut.measure import Runner
    from fbnas.space import load_space

    load_before = os.getloadavg()
    src = load_source(args.checkpoint)
    spec = src.spec
    shape = (1, spec.in_channels, spec.input_size, spec.input_size)
    n = args.calibration_samples
    images, _ = q.dataset_images("fashion-mnist", True, n + 64, seed=0, size=spec.input_size)
    test_x, test_y = q.dataset_images("fashion-mnist", False, None, size=spec.input_size)
    res = export_model(src.model, None, "onnx", shape, quantize="int8",
                       calibration=[images[i:i + 32] for i in range(0, n, 32)], holdout=[images[n:]],
                       calibration_name="fashion-mnist")
    assert res.fp32_onnx is not None
    fp32_data = res.fp32_onnx
    # export_model(out=None) only checks; quantize the same fp32 file again (deterministic) to time and keep it
    int8_data = q.quantize_onnx(fp32_data, [images[i:i + 32] for i in range(0, n, 32)])
    acc32, acc8 = q.accuracy(fp32_data, test_x, test_y), q.accuracy(int8_data, test_x, test_y)

    # latency: the exported files, and the networks as the table's protocol builds them (validate's path)
    t0 = time.time()
    fns = {name: ts.session_callable(ts.make_session(data, 1), list(shape))
           for name, data in (("fp32_export", fp32_data), ("int8_export", int8_data))}
    measured = {k: v["value_ms"] for k, v in ts.measure_all(fns, rounds=args.rounds,
                                                            statistic="cpu_median_cold").items()}
    for dtype in ("float32", "int8"):
        stats = Runner("onnxruntime", 1, dtype=dtype).measure({"net": (src.model.eval(), list(shape))},
                                                              rounds=args.rounds)
        measured[f"{dtype}_lut_protocol"] = stats["net"]["value_ms"]

    space = load_space(args.space, input_size=spec.input_size, in_channels=spec.in_channels,
                       width_multiplier=args.width_multiplier)
    predicted = {}
    for dtype in ("float32", "int8"):
        built = build_table(args.db, space=space, specs=[spec], backend="onnxruntime", dtype=dtype,
                            num_classes=src.num_classes, in_channels=spec.in_channels, progress=False)
        lut = LatencyTable(args.db, backend="onnxruntime", dtype=dtype, num_classes=src.num_classes)
        p = lut.predict(spec)
        predicted[dtype] = {"plain_ms": p.total_ms, "corrected_ms": p.corrected_ms,
                            "correction_source": (lut.correction or {}).get("source"),
                            "measured_now_in_build": built["measured"]}
        lut.close()
    result = {
        "checkpoint": args.checkpoint, "arch": spec.name, "input": list(shape), "num_classes": src.num_classes,
        "calibration": {"dataset": "fashion-mnist (training split)", "samples": n, "holdout": 64},
        "int8_rel_error": res.int8_rel_error,
        "accuracy": {"fp32": acc32, "int8": acc8, "drop_points": 100 * (acc32 - acc8), "test_images": len(test_y)},
        "latency_ms": {"backend": "onnxruntime", "threads": 1, "statistic": "cpu_median_cold",
                       "rounds": args.rounds, "measured": measured, "predicted": predicted,
                       "seconds": round(time.time() - t0, 1)},
        "loadavg": {"before": load_before, "after": os.getloadavg()},
        "note": "latencies measured on a shared, loaded 2-core machine (see loadavg): indicative only",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(args.out, result, indent=1)
    print(f"accuracy fp32 {100 * acc32:.2f}%  int8 {100 * acc8:.2f}%  drop {100 * (acc32 - acc8):.2f} points")
    print("measured ms:", {k: round(v, 4) for k, v in measured.items()})
    print("predicted ms:", predicted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
