"""FBNetV3 JointNAS: constraints on the Sobol pool, the early-stopping rule, the predictor's Huber loss and freeze
schedule, the genetic algorithm (constraints, stall), the executors, trial persistence, predictor reuse and
training with the searched recipe. Each check has a negative control where one makes sense. The SIGKILL +
resume check is in ``test_jointnas_resume.py``."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from fbnas.search.jointnas.config import JointNasConfig, PredictorSection
from fbnas.search.jointnas.earlystop import early_stop_epoch, rank_correlation_by_epoch
from fbnas.search.jointnas.evolution import evolve
from fbnas.search.jointnas.predictor import (
    PredictorNet,
    encode,
    fit_predictor,
    huber_loss,
    pretrain,
    train_end_to_end,
    train_frozen,
)
from fbnas.search.jointnas.spaces import Constraints, feasible_pool, joint_space
from fbnas.search.strategy import run_search, strategies


def _cfg(**jointnas) -> JointNasConfig:
    base = copy.deepcopy(strategies()["jointnas"].smoke_config)
    for k, v in jointnas.items():
        base["jointnas"][k] = {**base["jointnas"].get(k, {}), **v}
    return JointNasConfig.parse(base, "test")


def _fmnist_space():
    return joint_space(JointNasConfig.parse({}, "test").jointnas.space)


# ---- constraints and the Sobol pool ---------------------------------------------------------------------
def test_sobol_pool_meets_every_constraint():
    from fbnas.cost.counting import count

    space = _fmnist_space()
    caps = {"macs": 12.0, "params": 0.5}
    cons = Constraints(space, caps, num_classes=10)
    pool = feasible_pool(space, cons, 200, seed=0)
    assert len(pool) == 200 and len({json.dumps(s, sort_keys=True) for s in pool}) == 200
    for s in pool:
        r = count(space.build(s).arch, num_classes=10)
        assert r.macs / 1e6 <= caps["macs"] and r.params / 1e6 <= caps["params"]
    # negative control: plain Sobol points break the caps, so the filter is doing the work
    plain = space.sobol(200, seed=0)
    assert sum(not cons.ok(s) for s in plain) > 20
    assert feasible_pool(space, cons, 200, seed=0) == pool  # keyed by the seed
    assert feasible_pool(space, cons, 200, seed=1) != pool


def test_an_unmeetable_constraint_is_one_line():
    from fbnas.errors import FbnasError

    space = _fmnist_space()
    with pytest.raises(FbnasError, match=r"constraints: none of \d+ Sobol samples .* meets macs <= 0.01"):
        feasible_pool(space, Constraints(space, {"macs": 0.01}, 10), 16, seed=0, max_rounds=2)
    with pytest.raises(FbnasError, match="constraints.latency_ms: needs a latency table"):
        Constraints(space, {"latency_ms": 1.0}, 10)


# ---- the early-stopping rule ------------------------------------------------------------------------------
def test_early_stop_rule_on_synthetic_curves():
    final = [0.5 + 0.03 * i for i in range(12)]
    order1 = [7, 2, 9, 0, 11, 4, 1, 8, 3, 10, 5, 6]  # epoch 1: scrambled
    order2 = [1, 0, 3, 2, 5, 4, 7, 6, 8, 9, 10, 11]  # epoch 2: four adjacent pairs swapped (tau 58/66)
    order3 = [1, 0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # epoch 3: one pair swapped (tau 64/66)
    curves = [[final[order1[i]] - 0.2, final[order2[i]] - 0.1, final[order3[i]] - 0.05, final[i]] for i in range(12)]
    epoch, corr = early_stop_epoch(curves, 0.92)
    assert corr[1:] == pytest.approx([58 / 66, 64 / 66, 1.0])
    assert corr[-1] == 1.0 and corr[2] >= 0.92 > max(corr[:2])
    assert epoch == 3
    assert early_stop_epoch(curves, 0.5)[0] <= 2
    # negative control: a threshold no earlier epoch reaches gives the full budget
    assert early_stop_epoch(curves, 1.0)[0] == 4
    # rankings that agree from the start stop after one epoch
    assert early_stop_epoch([[f - 0.1, f - 0.05, f] for f in final], 0.92)[0] == 1


def test_rank_correlation_is_kendall_tau():
    from scipy.stats import kendalltau

    curves = [[0.1, 0.5], [0.3, 0.4], [0.2, 0.6], [0.4, 0.7]]
    corr = rank_correlation_by_epoch(curves)
    assert corr[0] == pytest.approx(kendalltau([0.1, 0.3, 0.2, 0.4], [0.5, 0.4, 0.6, 0.7]).statistic)
    assert rank_correlation_by_epoch([[0.5, 0.1], [0.5, 0.2], [0.5, 0.3]])[0] == 0.0  # constant epoch: undefined


# ---- the predictor ----------------------------------------------------------------------------------------
def test_huber_loss_is_quadratic_inside_delta_and_linear_outside():
    pred, target = torch.tensor([0.5, 3.0]), torch.zeros(2)
    per = [float(huber_loss(pred[i:i + 1], target[i:i + 1], 1.0)) for i in range(2)]
    assert per == pytest.approx([0.5 * 0.5 ** 2, 1.0 * (3.0 - 0.5)])
    assert float(huber_loss(pred, target, 1.0)) < float(torch.nn.functional.mse_loss(pred, target))


def _toy(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    xa, xr = torch.rand(n, 12, generator=g), torch.rand(n, 3, generator=g)
    return xa, xr, (xa[:, :3].sum(1) - xr[:, 0]).float()


def test_freeze_schedule_encoder_unchanged_then_trained_end_to_end():
    cfg = PredictorSection(encoder=[16, 8], head=[8], freeze_epochs=5, finetune_epochs=5)
    xa, xr, y = _toy()
    net = PredictorNet(12, 3, cfg.encoder, cfg.head)
    enc0 = copy.deepcopy(net.encoder.state_dict())
    head0 = copy.deepcopy(net.acc_head.state_dict())
    train_frozen(net, xa, xr, y, cfg, ("t",))
    assert all(torch.equal(enc0[k], v) for k, v in net.encoder.state_dict().items())  # frozen phase
    assert not all(torch.equal(head0[k], v) for k, v in net.acc_head.state_dict().items())
    assert all(p.requires_grad for p in net.encoder.parameters())  # unfrozen again for the next phase
    train_end_to_end(net, xa, xr, y, cfg, ("t",))
    assert not all(torch.equal(enc0[k], v) for k, v in net.encoder.state_dict().items())


def test_predictor_fit_is_deterministic_and_learns():
    space = _fmnist_space()
    cfg = PredictorSection(pretrain_samples=256, pretrain_epochs=10, ensemble=2)
    samples = space.sobol(48, seed=3)
    def truth_of(s):
        return 0.8 + 0.05 * np.log10(s["recipe.lr"]) + 0.01 * s["arch.s1.n"]

    acc = [truth_of(s) for s in samples]

    def costs(arch_sample):
        from fbnas.cost.counting import count

        r = count(space.parts["arch"].build(arch_sample).arch, num_classes=10)
        return {"macs": r.macs / 1e6, "params": r.params / 1e6}

    pre = pretrain(space, cfg, 0, costs)
    a = fit_predictor(space, samples, acc, cfg, 0, pre)
    b = fit_predictor(space, samples, acc, cfg, 0, pretrain(space, cfg, 0, costs))
    test = space.sobol(32, seed=4)
    assert np.array_equal(a.predict(test), b.predict(test))
    truth = [truth_of(s) for s in test]
    from scipy.stats import spearmanr

    assert spearmanr(a.predict(test), truth).statistic > 0.7
    # the proxy head learned MACs from free samples: predicted vs counted
    pm = a.predict_proxy(test)[:, 0]
    counted = [costs(space.split(s)["arch"])["macs"] for s in test]
    assert spearmanr(pm, counted).statistic > 0.8
    xa, xr = encode(space, test)
    assert xa.shape == (32, space.parts["arch"].encoding_size) and xr.shape[1] == space.parts["recipe"].encoding_size


def test_stage_targets_pretrain_the_encoder_on_every_stage_cost(tmp_path):
    from scipy.stats import spearmanr

    from fbnas.errors import FbnasError
    from fbnas.search.jointnas.coarse import arch_costs
    from fbnas.search.jointnas.predictor import AccuracyPredictor, proxy_targets

    space = _fmnist_space()
    costs = arch_costs(space, 10)
    cfg = PredictorSection(pretrain_samples=256, pretrain_epochs=15, ensemble=1, pretrain_targets="stages")
    pre = pretrain(space, cfg, 0, costs)
    stages = len(costs(space.parts["arch"].sobol(1, seed=0)[0])["stage_macs"])
    assert len(pre.proxy_mean) == 2 + 2 * stages and stages > 2
    test = space.sobol(64, seed=5)
    truth = proxy_targets([costs(space.split(s)["arch"]) for s in test], "stages")
    net = PredictorNet(space.parts["arch"].encoding_size, space.parts["recipe"].encoding_size, cfg.encoder,
                       cfg.head, len(pre.proxy_mean))
    net.load_state_dict(pre.members[0])
    with torch.no_grad():
        z = net.proxy(encode(space, test)[0]).numpy()
    varying = [j for j in range(2, truth.shape[1]) if truth[:, j].std() > 1e-6]
    # every stage's cost that varies is learnt (an untrained head would rank them at random)
    rhos = [spearmanr(z[:, j], truth[:, j]).statistic for j in varying]
    assert min(rhos) > 0.6, rhos
    random_init = pretrain(space, cfg.replace(pretrain=False), 0, costs)
    net.load_state_dict(random_init.members[0])
    with torch.no_grad():
        z0 = net.proxy(encode(space, test)[0]).numpy()
    assert np.mean([abs(spearmanr(z0[:, j], truth[:, j]).statistic) for j in varying]) < 0.5
    # the fitted predictor keeps the proxy head's size through save / load, and predicts the totals
    samples = space.sobol(24, seed=6)
    fitted = fit_predictor(space, samples, [0.5 + 0.01 * i for i in range(24)], cfg, 0, pre)
    fitted.save(tmp_path / "p.pt")
    loaded = AccuracyPredictor.load(tmp_path / "p.pt", space, cfg)
    assert np.array_equal(loaded.predict(test), fitted.predict(test))
    assert loaded.predict_proxy(test).shape == (64, 2)
    with pytest.raises(FbnasError, match="numbers of stages"):
        one = costs(space.split(test[0])["arch"])
        proxy_targets([one, {**one, "stage_macs": one["stage_macs"][:-1]}], "stages")


def test_pretraining_keeps_the_embedding_at_its_initial_scale_and_the_proxy_head_at_its_outputs():
    from fbnas.errors import FbnasError
    from fbnas.search.jointnas.coarse import arch_costs
    from fbnas.search.jointnas.predictor import embedding_rms, rescale_embedding
    from fbnas.seeding import derive_seed

    space = _fmnist_space()
    costs = arch_costs(space, 10)
    arch = space.parts["arch"]
    free = arch.sobol(256, seed=derive_seed(0, "jointnas", "pretrain") % (2**32))  # what pretrain() draws
    xa = torch.tensor([arch.encode(s) for s in free], dtype=torch.float32)

    cfg = PredictorSection(pretrain_samples=256, pretrain_epochs=15, ensemble=1)

    def net_of(pre):
        net = PredictorNet(arch.encoding_size, space.parts["recipe"].encoding_size, cfg.encoder, cfg.head, 2)
        net.load_state_dict(pre.members[0])
        return net

    init = net_of(pretrain(space, cfg.replace(pretrain=False), 0, costs))
    kept = net_of(pretrain(space, cfg.replace(rescale_embedding=False), 0, costs))
    scaled = net_of(pretrain(space, cfg, 0, costs))
    # negative control: pretraining alone leaves a louder embedding than the random initialisation's
    assert embedding_rms(kept, xa) > 2 * embedding_rms(init, xa)
    assert embedding_rms(scaled, xa) == pytest.approx(embedding_rms(init, xa), rel=1e-4)
    with torch.no_grad():  # the same pretrained function: proxy outputs unchanged, embedding a constant multiple
        assert torch.allclose(scaled.proxy(xa), kept.proxy(xa), atol=1e-4)
        ratio = scaled.embed(xa).sum() / kept.embed(xa).sum()
        assert torch.allclose(scaled.embed(xa), ratio * kept.embed(xa), atol=1e-5)
    with pytest.raises(FbnasError, match="positive"):
        rescale_embedding(kept, 0.0)


# ---- the genetic algorithm --------------------------------------------------------------------------------
def _ga_cfg(**kw):
    return JointNasConfig.parse({"jointnas": {"evolution": kw}}, "t").jointnas.evolution


def test_ga_respects_constraints_and_improves():
    space = _fmnist_space()
    cons = Constraints(space, {"macs": 10.0}, 10)

    def predict(samples):  # a predictor that likes big networks and a high lr: the cap must hold it back
        return np.array([cons.costs(s)["macs"] / 50 + np.log(s["recipe.lr"]) / 10 for s in samples])

    seeds = feasible_pool(space, cons, 16, seed=0)
    res = evolve(space, seeds, predict, cons.ok, _ga_cfg(population=16, children=24, generations=30, stall=30),
                 seed=0)
    assert all(cons.costs(x.sample)["macs"] <= 10.0 for x in res.archive)
    assert res.best.score > max(predict(seeds))
    assert [h["best"] for h in res.history] == sorted(h["best"] for h in res.history)  # elitist
    # negative control: without the feasibility check the same search leaves the cap
    free = evolve(space, seeds, predict, lambda s: True, _ga_cfg(population=16, children=24, generations=30,
                                                                  stall=30), seed=0)
    assert max(cons.costs(x.sample)["macs"] for x in free.archive) > 10.0


def test_ga_stops_after_a_stall_of_g_generations_and_adapts_rates():
    space = _fmnist_space()
    flat = evolve(space, space.sobol(8, seed=0), lambda s: np.zeros(len(s)), lambda s: True,
                  _ga_cfg(population=8, children=8, generations=100, stall=4), seed=0)
    assert flat.stopped == "stall" and len(flat.history) == 4
    assert [h["stall"] for h in flat.history] == [1, 2, 3, 4]
    muts = [h["p_mut"] for h in flat.history]
    assert muts == sorted(muts) and muts[-1] > 0.15  # stalling raises the mutation rate
    # an improving search does not stop on a stall, and lowers its mutation rate when it improves
    rising = evolve(space, space.sobol(8, seed=0), lambda s: np.array([x["recipe.lr"] for x in s]),
                    lambda s: True, _ga_cfg(population=8, children=8, generations=6, stall=4), seed=0)
    assert rising.stopped == "generations" or len(rising.history) > 4
    prev = 0.15
    for h in rising.history:  # improving lowers the mutation rate, stalling raises it
        assert h["p_mut"] == pytest.approx(max(0.03, prev * 0.8) if h["stall"] == 0 else min(0.5, prev * 1.25))
        prev = h["p_mut"]
    assert any(h["stall"] == 0 for h in rising.history)


# ---- executors --------------------------------------------------------------------------------------------
def _probe(x: int) -> tuple[int, int, int]:
    return x * x, torch.get_num_threads(), os.getpid()


def test_process_executor_runs_tasks_in_workers_with_their_threads():
    from fbnas.search.executors import ProcessExecutor, SequentialExecutor

    seen = []
    with ProcessExecutor(workers=2, threads=1) as ex:
        out = ex.map(_probe, list(range(6)), on_result=lambda i, r: seen.append(i))
    assert [o[0] for o in out] == [x * x for x in range(6)] and sorted(seen) == list(range(6))
    assert {o[1] for o in out} == {1} and os.getpid() not in {o[2] for o in out}
    assert SequentialExecutor().map(_probe, [3])[0][2] == os.getpid()


# ---- the strategy: trials, reuse, train with the searched recipe ------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("jointnas") / "run"
    s = strategies()["jointnas"]
    cfg = s.config_model.parse(s.smoke_config, "smoke")
    result = run_search(s, cfg, out, log=lambda m: None)
    return out, cfg, result


def test_trials_are_persisted_with_sample_recipe_and_metrics(smoke_run):
    out, cfg, result = smoke_run
    trials = sorted((out / "trials").iterdir())
    assert len(trials) == 4 + 3 + 2  # calibration, coarse, verified
    assert result["coarse"]["trials"] == 4 + 3
    for d in trials:
        res = json.loads((d / "result.json").read_text())
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert res["sample"] and res["recipe"]["epochs"] == 3 and len(rows) == res["epochs_trained"]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1)) and "val_acc" in rows[0]
        assert json.loads((d / "manifest.json").read_text())["kind"] == "trial"
    calib = [json.loads((d / "result.json").read_text()) for d in trials if d.name < "p0004"]
    assert all(r["role"] == "calibration" and r["epochs_trained"] == 3 for r in calib)
    assert (out / "predictor.pt").exists()
    state = torch.load(out / "predictor.pt", weights_only=True)
    assert state["schema"] == "fbnas.jointnas.predictor/1"
    assert all(e["constraints"]["macs"]["value"] <= 0.5 for e in result["samples"])


def test_verification_trains_new_proposals_and_picks_the_best_measured(smoke_run):
    out, cfg, result = smoke_run
    early = result["coarse"]["early_stop_epoch"]
    trials = {d.name: json.loads((d / "result.json").read_text()) for d in (out / "trials").iterdir()}
    verified = {t: r for t, r in trials.items() if r["role"] == "verify"}
    coarse = [r["sample"] for r in trials.values() if r["role"] != "verify"]
    assert sorted(verified) == ["v0001", "v0002"] == result["verify"]["trials"]
    assert all(r["sample"] not in coarse and r["epochs_trained"] == early for r in verified.values())
    archs = [json.dumps({k: v for k, v in r["sample"].items() if k.startswith("arch.")}, sort_keys=True)
             for r in verified.values()]
    assert len(set(archs)) == len(archs)  # one proposal per architecture
    # oracle: the best measured trial read back from disk (its accuracy at the early-stopping epoch)
    acc = {t: r["curve"][early - 1] for t, r in trials.items()}
    best = max(acc, key=lambda t: (acc[t], [-ord(c) for c in t]))
    assert result["selected_by"] == "measured" and result["trial"] == best
    assert result["sample"] == trials[best]["sample"] and result["measured_acc"] == acc[best]
    got = [e["measured_acc"] for e in result["samples"]]
    assert got == sorted(acc.values(), reverse=True)[:len(got)]


def test_proposals_skip_trained_pairs_and_repeated_architectures():
    from fbnas.search.jointnas.evolution import GAResult, Scored
    from fbnas.search.jointnas.fine import FineResult
    from fbnas.search.jointnas.verify import proposals

    space = strategies()["jointnas"].space(_cfg())
    a, b, c = (space.sample(0, step) for step in (1, 2, 3))
    a_other_recipe = {**a, **{k: v for k, v in b.items() if k.startswith("recipe.")}}
    archive = [Scored(x, 1.0 - i / 10, 1.0 - i / 10, 0) for i, x in enumerate([a, a_other_recipe, b, c])]
    fine = FineResult(GAResult(archive[:2], archive), [], [], 0, 0.0)
    assert proposals(fine, [], 3, space) == [archive[0], archive[2], archive[3]]  # a's second recipe skipped
    assert proposals(fine, [b], 2, space) == [archive[0], archive[3]]  # b is already trained
    assert proposals(fine, [a, b, c], 2, space) == [archive[1]]  # a's other recipe is a new pair


def test_reuse_reruns_only_the_fine_stage_under_new_constraints(smoke_run, tmp_path):
    out, cfg, result = smoke_run
    macs = sorted(e["macs"] for e in result["samples"])[0] / 1e6 * 1.01
    s = strategies()["jointnas"]
    data = cfg.to_dict()
    data["constraints"] = {"macs": macs}
    data["jointnas"]["reuse_predictor"] = str(out)
    logs = []
    t0 = time.perf_counter()
    new = run_search(s, s.config_model.parse(data, "reuse"), tmp_path / "reuse", log=logs.append)
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "reuse" / "trials").exists()  # nothing trained
    assert new["reused_predictor"] == str(out) and any("only the fine stage" in m for m in logs)
    assert new["samples"] and all(e["macs"] / 1e6 <= macs for e in new["samples"])
    assert (tmp_path / "reuse" / "plots" / "accuracy_vs_cost.png").exists()


def test_fbnas_train_uses_the_searched_recipe(smoke_run, tmp_path):
    out, cfg, result = smoke_run
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "fbnas.cli", "train", "--arch", str(out / "result.json"), "--data", "synthetic",
           "--epochs", "2", "--limit-train", "64", "--limit-test", "64", "--no-progress", "--out", str(tmp_path / "t")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "recipe searched with" in done.stderr
    used = json.loads((tmp_path / "t" / "config.json").read_text())["recipe"]
    for k, v in result["recipe"].items():
        assert used[k] == v, k
    assert used["epochs"] == 2
    # negative control: an explicit option still wins over the searched field
    cmd2 = [*cmd[:-1], str(tmp_path / "t2"), "--lr", "0.0123"]
    assert subprocess.run(cmd2, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    assert json.loads((tmp_path / "t2" / "config.json").read_text())["recipe"]["lr"] == 0.0123


def test_train_aware_objective_is_a_s_w_p_v():
    from fbnas.search.jointnas.evolution import train_aware_objective

    seeds = [{"s": 2.0, "p": 1.0}, {"s": 4.0, "p": 3.0}, {"s": 8.0, "p": 9.0}]
    obj = train_aware_objective(lambda x: x["s"], lambda x: x["p"], seeds, -0.07, -0.05)
    got = obj([{"s": 8.0, "p": 1.0}], np.array([0.9]))
    assert got[0] == pytest.approx(0.9 * (8.0 / 4.0) ** -0.07 * (1.0 / 3.0) ** -0.05)


def test_reuse_with_the_train_aware_objective_measures_a_step_time_table(smoke_run, tmp_path):
    out, cfg, result = smoke_run
    s = strategies()["jointnas"]
    data = cfg.to_dict()
    data["jointnas"]["reuse_predictor"] = str(out)
    data["jointnas"]["evolution"]["objective"] = "train_aware"
    data["jointnas"]["step_time"] = {"path": None, "batch": 8, "rounds": 1}
    new = run_search(s, s.config_model.parse(data, "reuse"), tmp_path / "ta", log=lambda m: None)
    table = json.loads((tmp_path / "ta" / "step_time.json").read_text())
    assert table["meta"]["batch"] == 8 and len(table["entries"]) > 10
    assert all(e["step_time_ms"] > 0 for e in new["samples"]) and new["objective"] == "train_aware"
    top = new["samples"][0]
    assert top["score"] != pytest.approx(top["predicted_acc"])  # the reward, not the accuracy


def test_shipped_config_and_quick_preset_parse():
    from fbnas.config import load_config

    full = load_config("configs/jointnas_fashion_mnist.yaml", JointNasConfig)
    quick = load_config("configs/jointnas_fashion_mnist.yaml", JointNasConfig, "quick")
    assert full.constraints.macs == quick.constraints.macs == 15.0
    n = lambda c: c.jointnas.calibration.candidates + (c.jointnas.coarse.iterations - 1) * c.jointnas.coarse.batch  # noqa: E731
    assert (n(full), n(quick)) == (56, 24)
    space = joint_space(full.jointnas.space)
    assert space.dim("recipe.lr").high == 0.8 and space.parts["arch"].name == "fbnetv3_fmnist"
    assert full.jointnas.predictor.freeze_epochs == full.jointnas.predictor.finetune_epochs == 50
    assert full.jointnas.calibration.threshold == 0.92
    # augmentation only in the long retraining: the quick preset's 4-epoch one goes without
    assert full.jointnas.retrain.recipe == {"crop_padding": 2, "hflip": True}
    assert quick.jointnas.retrain.recipe == {"crop_padding": 0, "hflip": False}


@pytest.mark.parametrize("change, message", [
    ({"jointnas": {"coarse": {"pool": 0}}}, "cfg.yaml: jointnas.coarse.pool: must be >= 1"),
    ({"jointnas": {"evolution": {"objective": "speed"}}}, "cfg.yaml: jointnas.evolution.objective: must be one of"),
    ({"jointnas": {"proxy": {"recipe": {"epochs": 3}}}}, "cfg.yaml: jointnas.proxy.recipe.epochs: set by the search"),
    ({"jointnas": {"proxy": {"recipe": {"lr": -1.0}}}}, "cfg.yaml: jointnas.proxy.recipe.lr: must be in (0, 100]"),
    ({"jointnas": {"calibration": {"epoch": 9}}}, "jointnas.calibration.epoch: must be <= proxy.epochs (4)"),
    ({"jointnas": {"executor": {"kind": "slurm"}}}, "cfg.yaml: jointnas.executor.kind: must be one of"),
    ({"jointnas": {"coarse": {"poool": 3}}}, "cfg.yaml: jointnas.coarse.poool: unknown field; valid: batch"),
    ({"jointnas": {"retrain": {"recipe": {"crop_pading": 2}}}}, "cfg.yaml: jointnas.retrain.recipe.crop_pading: "
     "unknown field"),
    ({"jointnas": {"retrain": {"recipe": {"epochs": 9}}}}, "cfg.yaml: jointnas.retrain.recipe.epochs: set by the "
     "retraining"),
    ({"jointnas": {"retrain": {"recipe": {"mixup_alpha": 0.0}}}}, "jointnas.retrain.recipe.mixup_alpha: a searched "
     "field"),
])
def test_bad_config_is_one_line_naming_the_field(change, message):
    from fbnas.errors import FbnasError

    with pytest.raises(FbnasError) as e:
        JointNasConfig.parse(change, "cfg.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_recipe_ranges_name_the_field():
    from fbnas.errors import FbnasError

    cfg = JointNasConfig.parse({"jointnas": {"space": {"ranges": {"momentum": {"low": 0.5, "high": 0.9}}}}}, "c")
    with pytest.raises(FbnasError, match="jointnas.space.ranges.momentum: not a searched field"):
        joint_space(cfg.jointnas.space, "c.yaml")
    cfg = JointNasConfig.parse({"jointnas": {"space": {"ranges": {"lr": {"low": 0.0, "high": 0.9}}}}}, "c")
    with pytest.raises(FbnasError, match="c.yaml: jointnas.space: .*lr"):
        joint_space(cfg.jointnas.space, "c.yaml")
