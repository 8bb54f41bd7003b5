"""Split attention (seed 002, F++): radix 1 is an SE gate of the same weights, the r-softmax normalises over the
splits, and ``ir_sa`` with radix 1 is ``ir`` with SE. Shapes, MACs, params and ONNX export are the op contract's
(``tests/test_op_contract.py`` covers every registered op)."""

from __future__ import annotations

import pytest
import torch

from fbnas.nn.attention import SplitAttention
from fbnas.nn.layers import SqueezeExcite
from fbnas.nn.ops import resolve_op

BASIC = {"width_divisor": 4, "act": "relu"}


@pytest.mark.parametrize("gate", ["sigmoid", "hsigmoid"])
def test_radix_one_is_an_se_gate_of_the_same_weights(gate):
    torch.manual_seed(0)
    se = SqueezeExcite(12, 4, act="hswish", gate=gate)
    for p in se.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    sa = SplitAttention(12, 1, 4, act="hswish", gate=gate)
    sa.load_state_dict(se.state_dict())  # the same tensor names
    x = torch.randn(3, 12, 5, 5)
    assert torch.equal(sa(x), se(x))
    other = SplitAttention(12, 1, 4, act="hswish", gate=gate)  # negative control: other weights differ
    assert not torch.allclose(other(x), se(x))


def test_r_softmax_normalises_over_the_splits():
    """With the attention's last layer at zero every split gets 1/radix: the output is the splits' mean."""
    torch.manual_seed(1)
    sa = SplitAttention(6, 4, 4)
    torch.nn.init.zeros_(sa.expand.weight)
    torch.nn.init.zeros_(sa.expand.bias)
    x = torch.randn(2, 6 * 4, 3, 3)
    mean = x.reshape(2, 6, 4, 3, 3).mean(2)  # channel-major splits: channel c, split r at c * 4 + r
    assert torch.allclose(sa(x), mean, atol=1e-6)
    torch.nn.init.normal_(sa.expand.bias)  # then the weights are a softmax: a convex combination per channel
    y = sa(x)
    lo, hi = x.reshape(2, 6, 4, 3, 3).amin(2), x.reshape(2, 6, 4, 3, 3).amax(2)
    assert bool(((y >= lo - 1e-6) & (y <= hi + 1e-6)).all()) and not torch.allclose(y, mean, atol=1e-3)


def test_ir_sa_with_radix_one_is_ir_with_se():
    fam_sa, p_sa = resolve_op("ir_sa", {"k": 5, "e": 3, "radix": 1, "gate": "hsigmoid", "act": "hswish"}, BASIC)
    fam_ir, p_ir = resolve_op("ir", {"k": 5, "e": 3, "se": "hsigmoid", "act": "hswish"}, BASIC)
    torch.manual_seed(2)
    ir = fam_ir.build(8, 8, 1, p_ir)
    for p in ir.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    ir.eval()
    sa = fam_sa.build(8, 8, 1, p_sa).eval()
    renamed = {k.replace("dw.", "sa.conv.").replace("se.", "sa.attn."): v for k, v in ir.state_dict().items()}
    sa.load_state_dict(renamed)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(sa(x), ir(x), atol=1e-6)
    assert fam_sa.shapes(8, 8, 1, 6, 6, p_sa)[0][1].macs == fam_ir.shapes(8, 8, 1, 6, 6, p_ir)[0][1].macs


def test_split_options_cost_more_with_more_splits():
    macs = []
    for r in (1, 2, 4):
        fam, p = resolve_op("ir_sa", {"k": 3, "e": 4, "radix": r}, BASIC)
        from fbnas.cost.formulas import total

        macs.append(total(fam.shapes(16, 16, 1, 7, 7, p)[0])[0])
    assert macs[0] < macs[1] < macs[2]
