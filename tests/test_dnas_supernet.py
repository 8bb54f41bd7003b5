"""Supernet forward equals the child network when theta is one-hot; hard-mode theta gradients are right."""

from __future__ import annotations

import torch

from fbnas.search.gumbel import gumbel_noise, gumbel_softmax
from fbnas.search.supernet import MixedOp, Supernet
from fbnas.seeding import step_generator
from fbnas.space import load_space


def _space():
    return load_space("fbnet_v1", input_size=16, in_channels=1, width_multiplier=0.25)


def _one_hot_theta(net: Supernet, choices: list[int]) -> None:
    with torch.no_grad():
        for theta, c in zip(net.arch_parameters(), choices, strict=True):
            theta.fill_(-1e4)
            theta[c] = 1e4


def test_supernet_matches_child_when_theta_one_hot():
    torch.manual_seed(0)
    space = _space()
    choices = [3, 8, 1, 7, 0, 5, 2, 6, 4, 8, 3, 1, 0, 2, 5, 6, 7, 8, 4, 3, 2, 1]
    x = torch.randn(4, 1, 16, 16)
    for mode in ("soft", "hard"):
        net = Supernet(space, num_classes=10, mode=mode)
        _one_hot_theta(net, choices)
        net.eval()
        child = net.export_child(choices).eval()
        assert child.spec.to_dict()["stages"] == space.to_spec(choices).to_dict()["stages"]
        with torch.no_grad():
            sample = net.arch_weights(tau=0.1, generator=step_generator(0, 0))
            assert sample.choices() == choices
            got = net(x, sample)
            want = child(x)
        assert torch.equal(got, want), (mode, (got - want).abs().max())
        # a different child disagrees (the comparison can fail)
        other = [(c + 1) % 9 for c in choices]
        with torch.no_grad():
            assert not torch.allclose(net.export_child(other).eval()(x), want)


def test_per_sample_hard_matches_rowwise_children():
    torch.manual_seed(1)
    space = _space()
    net = Supernet(space, num_classes=10, mode="hard", noise="sample").eval()
    x = torch.randn(6, 1, 16, 16)
    with torch.no_grad():
        sample = net.arch_weights(tau=1.0, generator=step_generator(3, 7), batch_size=6)
        out = net(x, sample)
        assert sample.weights[0].shape == (6, 9)
        for b in range(6):
            row_choices = [int(w[b].argmax()) for w in sample.weights]
            ref = net.export_child(row_choices).eval()(x[b:b + 1])
            assert torch.allclose(out[b:b + 1], ref, atol=1e-5)


def test_hard_theta_gradient_is_executed_branch_of_soft_gradient():
    """With a linear loss <g, y>, soft dL/dm_j = <g, b_j(x)>; hard keeps only the executed branch's term."""
    torch.manual_seed(2)
    blocks = [torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Conv2d(3, 3, 1), torch.nn.Identity()]
    op = MixedOp(blocks, ["a", "b", "c"])
    with torch.no_grad():
        op.theta.copy_(torch.tensor([0.3, -0.2, 0.1]))
    x, g = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    noise = gumbel_noise((3,), step_generator(0, 1))
    tau = 2.0

    soft_w = gumbel_softmax(op.theta, tau, noise)
    (op(x, soft_w, "soft") * g).sum().backward()
    soft_grad = op.theta.grad.clone()
    op.theta.grad = None

    hard_w = gumbel_softmax(op.theta, tau, noise, hard=True)
    (op(x, hard_w, "hard") * g).sum().backward()
    hard_grad = op.theta.grad.clone()

    i = int(hard_w.argmax())
    with torch.no_grad():
        dl_dm = torch.stack([(b(x) * g).sum() for b in blocks])
        s = torch.softmax((op.theta + noise) / tau, dim=0)
        jac = (torch.diag(s) - torch.outer(s, s)) / tau  # d softmax / d theta
        expected_soft = jac.T @ dl_dm
        only_i = torch.zeros(3)
        only_i[i] = dl_dm[i]
        expected_hard = jac.T @ only_i
    assert torch.allclose(soft_grad, expected_soft, atol=1e-5)
    assert torch.allclose(hard_grad, expected_hard, atol=1e-5)
    assert hard_grad.abs().sum() > 0
    assert not torch.allclose(hard_grad, soft_grad)


def test_hard_supernet_theta_gets_gradient_and_weights_only_sampled():
    torch.manual_seed(3)
    net = Supernet(_space(), num_classes=10, mode="hard")
    # 16 images: with 4, one layer's ReLUs could all be off for the whole batch at 1 thread (exactly zero grad)
    x, y = torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,))
    sample = net.arch_weights(tau=1.0, generator=step_generator(0, 0))
    torch.nn.functional.cross_entropy(net(x, sample), y).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in net.arch_parameters())
    chosen = sample.choices()
    for op, c in zip(net.mixed_ops, chosen, strict=True):
        for j, cand in enumerate(op.candidates):
            has_grad = any(p.grad is not None for p in cand.parameters())
            if list(cand.parameters()):
                assert has_grad == (j == c)
    ids = {id(p) for p in net.arch_parameters()}
    assert not any(id(p) in ids for p in net.weight_parameters())
    assert len(net.weight_parameters()) + len(net.arch_parameters()) == len(list(net.parameters()))
