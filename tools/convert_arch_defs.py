"""Convert shared/reference/fbnet_arch_defs.txt into the zoo's JSON arch specs (run once by developers).

usage: python tools/convert_arch_defs.py ../shared/reference/fbnet_arch_defs.txt src/fbnas/arch/zoo_defs
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ZOO = {  # fbnas name -> mobile-vision name
    "fbnet_a": "fbnet_a", "fbnet_b": "fbnet_b", "fbnet_c": "fbnet_c",
    "fbnet_v2_f1": "FBNetV2_F1", "fbnet_v2_f2": "FBNetV2_F2", "fbnet_v2_f3": "FBNetV2_F3",
    "fbnet_v2_f4": "FBNetV2_F4", "fbnet_v2_l1": "FBNetV2_L1", "fbnet_v2_l2": "FBNetV2_L2",
    "fbnet_v3_a": "FBNetV3_A", "fbnet_v3_b": "FBNetV3_B", "fbnet_v3_c": "FBNetV3_C",
    "fbnet_v3_d": "FBNetV3_D", "fbnet_v3_e": "FBNetV3_E", "fbnet_v3_f": "FBNetV3_F",
    "fbnet_v3_g": "FBNetV3_G",
}
KEEP = {"bias", "pwl_groups", "less_se_channels", "zero_last_bn_gamma"}


def parse(text: str) -> dict[str, dict]:
    archs: dict[str, dict] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("ARCH "):
            cur = {"stages": {}, "basic_args": {}}
            archs[line.split()[1]] = cur
        elif cur is not None and line.startswith("input_size:"):
            cur["input_size"] = int(line.split(":")[1])
        elif cur is not None and line.startswith("basic_args:"):
            cur["basic_args"] = json.loads(line.split(":", 1)[1])
        elif cur is not None and line.startswith("  stage"):
            cols = [c.strip() for c in line.split("|")]
            stage = int(cols[0].split()[1])
            op, c, s, n, e = cols[1], cols[2][2:], cols[3][2:], cols[4][2:], cols[5][2:]
            extra = json.loads(cols[9]) if len(cols) > 9 and cols[9] else {}
            kw: dict = {k: v for k, v in extra.items() if k in KEEP}
            if "dw_args" in extra and "padding" in extra["dw_args"]:
                kw["dw_padding"] = extra["dw_args"]["padding"][0]
            if e != "-" and op != "skip":
                ev = float(e)
                kw = {"e": int(ev) if ev == int(ev) else ev, **kw}
            if op == "skip":
                kw = {}
            if op.startswith("conv_"):  # mobile-vision's ConvBNRelu leaves nn.Conv2d's default bias on
                kw = {"bias": True}
            row: list = [op, int(c), int(s), int(n)]
            if kw:
                row.append(kw)
            cur["stages"].setdefault(stage, []).append(row)
    return archs


def main() -> None:
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    archs = parse(src.read_text())
    dst.mkdir(parents=True, exist_ok=True)
    for name, mv in ZOO.items():
        a = archs[mv]
        spec = {
            "name": name,
            "input_size": a["input_size"],
            "in_channels": 3,
            "basic_args": {"width_divisor": a["basic_args"].get("width_divisor", 8), "act": "relu"},
            "stages": [a["stages"][k] for k in sorted(a["stages"])],
            "head": {"dropout": 0.2},
        }
        text = json.dumps(spec, indent=1)
        text = re.sub(r"\[\n\s+(\"[^\[\]]*?)\n\s+\]", lambda m: "[" + re.sub(r"\n\s+", " ", m.group(1)) + "]", text)
        (dst / f"{name}.json").write_text(text + "\n")
        print(name)


if __name__ == "__main__":
    main()
