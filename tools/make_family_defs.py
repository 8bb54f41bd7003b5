"""Write the zoo's JSON arch specs of seed 004's families (run once by developers).

usage: PYTHONPATH=src python tools/make_family_defs.py src/fbnas/arch/zoo_defs

The structures are facts of the official definitions (GhostNet / GhostNetV2: huawei-noah's repositories and
timm's ghostnet.py; EfficientNet / EfficientNetV2: the paper tables, torchvision and timm; ESPNet / ESPNetV2:
sacmehta/ESPNet and sacmehta/EdgeNets), written here as block rows. EfficientNet-B1..B7 are B0 scaled by the
released (width, depth, resolution, dropout) table through :func:`fbnas.arch.scaling.scale_spec`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from fbnas.arch.scaling import scale_spec
from fbnas.arch.spec import ArchSpec
from fbnas.channels import make_divisible

# GhostNet (arXiv 1911.11907, Table 1): kernel, mid ("exp size"), out channels, SE ratio, stride per bottleneck
GHOST_CFG = [
    (3, 16, 16, 0, 1),
    (3, 48, 24, 0, 2), (3, 72, 24, 0, 1),
    (5, 72, 40, 0.25, 2), (5, 120, 40, 0.25, 1),
    (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
    (3, 672, 112, 0.25, 1),
    (5, 672, 160, 0.25, 2), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1),
    (5, 960, 160, 0.25, 1),
]
GHOST_STAGE_ENDS = [1, 3, 5, 11, 16]  # rows of GHOST_CFG closing each resolution stage

# EfficientNet-B0 (arXiv 1905.11946, Table 1): op, kernel, stride, out channels, repeats
EFFNET_B0 = [("mbconv1", 3, 1, 16, 1), ("mbconv6", 3, 2, 24, 2), ("mbconv6", 5, 2, 40, 2), ("mbconv6", 3, 2, 80, 3),
             ("mbconv6", 5, 1, 112, 3), ("mbconv6", 5, 2, 192, 4), ("mbconv6", 3, 1, 320, 1)]
# the released B0..B7: (width, depth, resolution, dropout)
EFFNET_TABLE = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
                "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
                "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}
# EfficientNetV2-S (arXiv 2104.00298, Table 4): op, kernel, stride, out channels, repeats
EFFNETV2_S = [("fused_mbconv1", 3, 1, 24, 2), ("fused_mbconv4", 3, 2, 48, 4), ("fused_mbconv4", 3, 2, 64, 4),
              ("mbconv4", 3, 2, 128, 6), ("mbconv6", 3, 1, 160, 9), ("mbconv6", 3, 2, 256, 15)]

# ESPNetV2 (EdgeNets espnetv2_config.py): channels per level at scale s; repeats, receptive-field limits, K = 4
ESPV2_CHANNELS = {"s050": [16, 32, 64, 128, 256, 1024], "s100": [32, 64, 128, 256, 512, 1024],
                  "s125": [32, 80, 160, 320, 640, 1024], "s150": [32, 96, 192, 384, 768, 1024],
                  "s200": [32, 128, 256, 512, 1024, 1280]}
ESPV2_REPEATS = [0, 3, 7, 3]
ESPV2_RLIM = [13, 11, 9, 7, 5]


def ghostnet(width: float, v2: bool) -> dict:
    def ch(c: float) -> int:
        return make_divisible(c * width, 4, round_limit=0.9)

    stages: list[list] = [[["conv_k3", ch(16), 2, 1]]]
    rows: list = []
    for i, (k, mid, c, se, s) in enumerate(GHOST_CFG):
        kw: dict = {"k": k, "mid": ch(mid)}
        if se:
            kw["se"] = se
        if v2 and i > 1:  # GhostNetV2: DFC attention in every bottleneck after the first two
            kw["dfc"] = True
        rows.append(["ghost_bneck", ch(c), s, 1, kw])
        if i + 1 in GHOST_STAGE_ENDS:
            stages.append(rows)
            rows = []
    stages.append([["conv_k1", ch(960), 1, 1], ["pool_conv", 1280, 1, 1]])
    name = f"ghostnet{'v2' if v2 else ''}_{round(width * 100):03d}"
    return {"name": name, "input_size": 224, "in_channels": 3, "basic_args": {"width_divisor": 4, "act": "relu"},
            "stages": stages, "head": {"dropout": 0.2}}


def efficientnet_b0() -> dict:
    stages = [[["conv_k3", 32, 2, 1]]]
    stages += [[[f"{op}_k{k}", c, s, n]] for op, k, s, c, n in EFFNET_B0]
    stages.append([["conv_k1", 1280, 1, 1]])
    return {"name": "efficientnet_b0", "input_size": 224, "in_channels": 3,
            "basic_args": {"width_divisor": 8, "act": "swish"}, "stages": stages,
            "head": {"dropout": 0.2, "drop_path": 0.2}}


def efficientnetv2_s() -> dict:
    stages = [[["conv_k3", 24, 2, 1]]]
    stages += [[[f"{op}_k{k}", c, s, n]] for op, k, s, c, n in EFFNETV2_S]
    stages.append([["conv_k1", 1280, 1, 1]])
    return {"name": "efficientnetv2_s", "input_size": 384, "in_channels": 3,
            "basic_args": {"width_divisor": 8, "act": "swish"}, "stages": stages,
            "head": {"dropout": 0.2, "drop_path": 0.2}}


def espnetv2(scale: str) -> dict:
    c = ESPV2_CHANNELS[scale]
    r = ESPV2_RLIM
    # the official DownSampler always holds an unused PReLU, and the last one an unused reinforcement branch
    down = {"unused_act": True}
    stages = [
        [["conv_k3", c[0], 2, 1, {"act": "prelu"}]],
        [["eesp_down", c[1], 2, 1, {"r_lim": r[0], "reinf": 3, **down}]],
        [["eesp_down", c[2], 2, 1, {"r_lim": r[1], "reinf": 3, **down}],
         ["eesp", c[2], 1, ESPV2_REPEATS[1], {"r_lim": r[2]}]],
        [["eesp_down", c[3], 2, 1, {"r_lim": r[2], "reinf": 3, **down}],
         ["eesp", c[3], 1, ESPV2_REPEATS[2], {"r_lim": r[3]}]],
        [["eesp_down", c[4], 2, 1, {"r_lim": r[3], "unused_reinf": 3, **down}],
         ["eesp", c[4], 1, ESPV2_REPEATS[3], {"r_lim": r[4]}],
         ["conv_k3", c[4], 1, 1, {"groups": c[4], "act": "prelu"}],  # depthwise CBR
         ["conv_k1", c[5], 1, 1, {"groups": 4, "act": "prelu"}]],  # group point-wise CBR (K groups)
    ]
    return {"name": f"espnetv2_{scale}", "input_size": 224, "in_channels": 3,
            "basic_args": {"width_divisor": 8, "act": "prelu"}, "stages": stages, "head": {"dropout": 0.2}}


def espnet_c(p: int = 2, q: int = 8) -> dict:
    """ESPNet-C (the encoder of ESPNet V1, trained for classification first; p, q: ESP modules per level)."""
    stages = [[["conv_k3", 16, 2, 1, {"act": "prelu"}], ["image_concat", 19, 1, 1, {"reinf": 3}]],
              [["esp_level", 131, 2, 1, {"n": p, "reinf": 3}]],
              [["esp_level", 256, 2, 1, {"n": q, "order": "first_last"}]]]
    return {"name": "espnet_c", "input_size": 224, "in_channels": 3,
            "basic_args": {"width_divisor": 8, "act": "prelu"}, "stages": stages,
            "head": {"dropout": 0.0, "bias": False}}


def all_defs() -> list[dict]:
    defs = [ghostnet(w, False) for w in (0.5, 1.0, 1.3)] + [ghostnet(w, True) for w in (1.0, 1.3, 1.6)]
    b0 = ArchSpec.from_dict(efficientnet_b0())
    for key, (w, d, r, drop) in EFFNET_TABLE.items():
        defs.append(scale_spec(b0, depth=d, width=w, input_size=r, dropout=drop, name=f"efficientnet_{key}").to_dict())
    defs.append(efficientnetv2_s())
    defs += [espnetv2(s) for s in ESPV2_CHANNELS]
    defs.append(espnet_c())
    return [ArchSpec.from_dict(d).to_dict() for d in defs]  # validated, canonical


def main() -> None:
    dst = Path(sys.argv[1])
    dst.mkdir(parents=True, exist_ok=True)
    for spec in all_defs():
        text = json.dumps(spec, indent=1)
        text = re.sub(r"\[\n\s+(\"[^\[\]]*?)\n\s+\]", lambda m: "[" + re.sub(r"\n\s+", " ", m.group(1)) + "]", text)
        (dst / f"{spec['name']}.json").write_text(text + "\n")
        print(spec["name"])


if __name__ == "__main__":
    main()
