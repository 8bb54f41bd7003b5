"""FP-NAS's search end to end on synthetic data: the weight step's gradient is eq. 3's importance-weighted sum,
adaptive K draws fewer architectures than a fixed K as the distribution focuses, the search switches FD -> JD at
``switch_epoch`` and reports both parameter counts, bad config fields are one-line errors naming the field, and a
search killed with SIGKILL resumes to the same alpha and result.json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from search_cli import kill_after_first_checkpoint, read_result, search_cmd, search_env

from fbnas.errors import FbnasError
from fbnas.search.sampled_update import SampledUpdate, importance_weights
from fbnas.search.single_path import SinglePathSupernet
from fbnas.search.strategy import get_strategy, run_search
from fbnas.seeding import STREAMS, step_generator
from fbnas.space import load_space

SMOKE = get_strategy("fpnas").smoke_config


def _update(net, cost_model=None, **kw) -> SampledUpdate:
    args = {"seed": 3, "lam": 0.25, "k_min": 1, "k_max": 16, "fixed_k": None, "switch_epoch": None, "beta": 1.0,
            "target": None, "weight_loss": "importance", "lr": 0.1, "weight_decay": 0.0, **kw}
    return SampledUpdate(net, cost_model, **args)


def test_weight_step_is_the_importance_weighted_gradient():
    torch.manual_seed(0)
    net = SinglePathSupernet(load_space("fbnetv2_fpp_fmnist"), 10)
    net.head.dropout = torch.nn.Identity()  # deterministic: batch statistics, no dropout
    torch.nn.init.normal_(net.head.fc.weight, 0.0, 0.2)  # children with different likelihoods
    update = _update(net, fixed_k=3)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    params = net.weight_parameters()
    update.weight_step(net, x, y, step=7)
    got = [None if p.grad is None else p.grad.clone() for p in params]
    choices = net.dist.sample(3, step_generator(3, 7, STREAMS["weights"]))
    grads, lls = [], []
    for ch in choices:
        net.zero_grad()
        ce = F.cross_entropy(net.run(x, ch), y)
        ce.backward()
        grads.append([None if p.grad is None else p.grad.clone() for p in params])
        lls.append(-float(ce.detach()) * len(y))
    w = importance_weights(torch.tensor(lls))
    assert 0.4 < float(w.max()) < 0.99, w  # neither equal weights nor one child alone
    used = 0
    for i, g in enumerate(got):
        parts = [(float(w[k]), grads[k][i]) for k in range(3) if grads[k][i] is not None]
        if not parts:
            assert g is None
            continue
        want = sum(wk * gk for wk, gk in parts)
        assert torch.allclose(g, want, atol=1e-6, rtol=1e-4), i
        used += 1
    assert used > 10
    # negative control: equal weights are another gradient
    mean = [sum(grads[k][i] for k in range(3) if grads[k][i] is not None) / 3 for i in range(len(params))
            if got[i] is not None]
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip([g for g in got if g is not None], mean,
                                                                     strict=True))


def test_search_switches_to_jd_and_counts_what_it_draws(tmp_path):
    strategy = get_strategy("fpnas")
    fixed = {**SMOKE, "fpnas": {**SMOKE["fpnas"], "fixed_k": 3}}
    results = {}
    for name, raw in (("adaptive", SMOKE), ("fixed", fixed)):
        cfg = strategy.config_model.parse(raw, name)
        results[name] = run_search(strategy, cfg, tmp_path / name, log=lambda m: None)
    a = results["adaptive"]
    assert a["distribution"]["form"] == "jd"
    assert (a["distribution"]["fd_parameters"], a["distribution"]["jd_parameters"]) == (89, 931)  # F-Fine F++
    rows = json.loads((tmp_path / "adaptive" / "metrics.jsonl").read_text().splitlines()[1])
    assert rows["dist"] == "fd"
    s = results["fixed"]["sampling"]
    assert s["mode"] == "fixed" and s["drawn"] == 3 * s["steps"]
    assert a["sampling"]["mode"] == "adaptive" and a["sampling"]["k_first"] == 3  # ceil(30.2 / 4) = 8, k_max 3
    trace = json.loads((tmp_path / "adaptive" / "fpnas_trace.json").read_text())
    assert len(trace["rows"]) == a["sampling"]["steps"] and sum(r[2] for r in trace["rows"]) == a["sampling"]["drawn"]
    for f in ("k_entropy.png", "marginals.png", "theta_heatmap.png"):
        assert (tmp_path / "adaptive" / "plots" / f).stat().st_size > 1000


def test_within_target_the_found_architecture_is_the_most_probable_in_the_band(tmp_path):
    strategy = get_strategy("fpnas")
    raw = {**SMOKE, "fpnas": {**SMOKE["fpnas"], "target_floor": 0.9, "select": "within_target", "beta": 2.0,
                              "cost_baseline": True}}
    result = run_search(strategy, strategy.config_model.parse(raw, "smoke"), tmp_path / "run", log=lambda m: None)
    sel, cost = result["selection"], result["cost"]
    assert sel["rule"] == "within_target" and sel["band"] == pytest.approx([0.54, 0.6])
    assert sel["in_band"] and not sel["fallback"] and 0.54 <= cost["value"] <= 0.6
    assert cost["target_floor"] == 0.9
    mp = sel["most_probable"]
    assert sel["is_most_probable"] == (mp["choices"] == result["choices"])
    assert result["probability"] <= mp["probability"] + 1e-12  # the constrained argmax is never more probable
    inside = [a for a in result["samples"] if 0.54 <= a["cost"] <= 0.6]
    assert all(a["probability"] <= result["probability"] + 1e-12 for a in inside)


@pytest.mark.parametrize("change, field", [
    ({"fpnas": {"switch_epoch": 3}}, "fpnas.switch_epoch"),
    ({"fpnas": {"k_min": 4, "k_max": 2}}, "k_max"),
    ({"fpnas": {"lambda": 0}}, "fpnas.lambda"),
    ({"fpnas": {"beta": -1.0}}, "fpnas.beta"),
    ({"fpnas": {"cost": "latency"}}, "lut.path"),
    ({"loss": {"form": "target", "target": 1.0}}, "loss"),
    ({"fpnas": {"lamda": 0.5}}, "fpnas.lamda"),
    ({"fpnas": {"target_floor": 1.0}}, "fpnas.target_floor"),
    ({"fpnas": {"select": "closest"}}, "fpnas.select"),
])
def test_bad_config_fields_are_one_line_errors(change, field):
    raw = {**SMOKE, **{k: {**SMOKE.get(k, {}), **v} for k, v in change.items()}}
    with pytest.raises(FbnasError) as e:
        get_strategy("fpnas").config_model.parse(raw, "cfg.yaml")
    msg = str(e.value)
    assert "\n" not in msg and field in msg, msg


def test_a_space_of_another_kind_is_refused_in_one_line():
    cfg = get_strategy("fpnas").config_model.parse({**SMOKE, "space": {"name": "fbnetv2_fmnist"}}, "cfg.yaml")
    with pytest.raises(FbnasError, match="space.name: fpnas searches a space of kind fpnas"):
        get_strategy("fpnas").space(cfg, "cfg.yaml")


def test_resume_after_sigkill_gives_the_same_alpha_and_result(tmp_path):
    cfg = tmp_path / "fpnas.yaml"
    cfg.write_text(yaml.safe_dump(SMOKE))
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(search_cmd("fpnas", cfg, full), check=True, env=search_env(), capture_output=True, timeout=300)
    kill_after_first_checkpoint(search_cmd("fpnas", cfg, killed), killed)
    assert not (killed / "result.json").exists()
    assert torch.load(killed / "checkpoint.pt", weights_only=True)["epoch"] < SMOKE["schedule"]["epochs"] - 1
    subprocess.run(search_cmd("fpnas", cfg, killed, "--resume"), check=True, env=search_env(), capture_output=True,
                   timeout=300)
    a = torch.load(full / "checkpoint.pt", weights_only=True)
    b = torch.load(killed / "checkpoint.pt", weights_only=True)
    alpha = [k for k in a["model"] if k.startswith("dist.")]
    assert len(alpha) > 20 and bool(a["model"]["dist.joint"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["arch_update"]["trace"] == b["arch_update"]["trace"]
    assert read_result(full) == read_result(killed)
    assert Path(killed / "fpnas_trace.json").exists()


def test_latency_cost_from_a_table(tmp_path):
    """fpnas.cost latency: the cost model is the table's (every block's entry at every option of its term); the
    result names the found architecture's predicted latency. The table is synthetic (ms from each entry's MACs)."""
    from fbnas.cost.formulas import total
    from fbnas.lut import needed_entries
    from fbnas.lut.measure import fingerprint
    from fbnas.lut.store import LutStore
    from fbnas.nn.ops import get_family

    strategy = get_strategy("fpnas")
    raw = {**SMOKE, "space": {"name": "fbnetv2_f_fmnist"}}
    cfg0 = strategy.config_model.parse(raw, "smoke")

    def ms(desc: dict) -> float:
        if desc["kind"] == "classifier":
            return 0.01
        shapes = get_family(desc["family"]).shapes(desc["cin"], desc["cout"], desc["stride"], desc["h"], desc["w"],
                                                   desc["build_params"])[0]
        return 0.01 + 0.05 * total(shapes)[0] / 1e6

    lut = tmp_path / "synthetic.sqlite"
    entries = needed_entries(strategy.space(cfg0), num_classes=10)
    with LutStore(lut, create=True) as store:
        store.put(({"key": e.key, "value_ms": ms(e.desc), "spread_ms": 0.0, "samples": 1, "block": e.desc}
                   for e in entries), "torch", 1, {**fingerprint("torch", 1, "cpu_median_cold"), "synthetic": True},
                  "cpu_median_cold")  # stored as this machine's rows: a search uses no other device's
    raw = {**raw, "fpnas": {**SMOKE["fpnas"], "cost": "latency", "target": 0.05},
           "lut": {"path": str(lut), "build": False}}
    result = run_search(strategy, strategy.config_model.parse(raw, "smoke"), tmp_path / "run", log=lambda m: None)
    assert result["cost"]["kind"] == "latency" and result["cost"]["unit"] == "ms"
    assert result["latency_ms"] == pytest.approx(result["cost"]["value"], rel=1e-5)
    entries = sum(len(stage) for stage in result["arch"]["stages"]) + 1  # every block and the classifier
    classifier_macs = 128 * 10
    assert result["cost"]["value"] == pytest.approx(0.01 * entries + 0.05 * (result["macs"] - classifier_macs) / 1e6,
                                                    rel=1e-6)
