"""``fit()``: model, data, recipe and callbacks in; per-epoch metrics out; no files and no output. A run
continued from a state saved by a callback mid-way ends with the weights of an uninterrupted run."""

from __future__ import annotations

import copy
import os

import torch

from fbnas import create_model
from fbnas.data import BatchLoader, ImageTensors
from fbnas.train import Callback, Fit, Recipe, fit

SPEC = {"name": "tiny", "input_size": 12, "in_channels": 1,
        "stages": [[["conv_k3", 8, 2, 1]], [["ir_k3", 8, 1, 1, {"e": 2}]], [["ir_k3", 16, 2, 1, {"e": 2}]]]}


def _data(n: int, seed: int) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        images[i, 0, 3 * k:3 * k + 3, 2:10] = 220
    return ImageTensors(images, labels, 4, (0.2,), (0.3,), "toy")


def _setup(recipe: Recipe):
    torch.set_num_threads(1)  # fit() leaves threads to its caller; one thread keeps this test fast beside others
    torch.manual_seed(0)
    model = create_model(SPEC, num_classes=4)
    train = BatchLoader(_data(96, 0), batch_size=16, shuffle=True, seed=recipe.seed)
    test = BatchLoader(_data(48, 1), batch_size=48, shuffle=False)
    return model, train, {"test": test}


class Saver(Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch, self.saved, self.records = at_epoch, None, []

    def on_epoch_end(self, record, state) -> None:
        self.records.append(record)
        if record["epoch"] == self.at_epoch:
            self.saved = copy.deepcopy(state.state_dict())  # state_dict tensors share the live weights


def test_fit_returns_metrics_and_writes_and_prints_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = Recipe(epochs=3, batch_size=16, lr=0.1, warmup_epochs=0, channels_last=False, threads=1)
    model, train, evals = _setup(recipe)
    saver = Saver(at_epoch=99)
    out = fit(model, train, recipe, eval_loaders=evals, callbacks=[saver])
    assert os.listdir(tmp_path) == [] and capsys.readouterr() == ("", "")
    assert [r["epoch"] for r in out.history] == [1, 2, 3] and not out.stopped
    assert saver.records == out.history
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "images_per_s"} <= set(out.history[0])
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
    assert out.state.position.epoch == 3


def test_continuing_from_a_saved_state_matches_an_uninterrupted_run():
    recipe = Recipe(epochs=3, batch_size=16, lr=0.1, warmup_epochs=0.5, ema_decay=0.9, mixup_alpha=0.2,
                    drop_path=0.1, channels_last=False, threads=1)
    model, train, evals = _setup(recipe)
    saver = Saver(at_epoch=1)
    full = fit(model, train, recipe, eval_loaders=evals, callbacks=[saver])
    assert saver.saved is not None
    model2, train2, evals2 = _setup(recipe)
    state = Fit(model2, recipe, len(train2))
    state.load_state_dict(saver.saved)
    rest = fit(model2, train2, recipe, eval_loaders=evals2, state=state)
    assert [r["epoch"] for r in rest.history] == [2, 3]
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert rest.history[-1]["test_acc"] == full.history[-1]["test_acc"]
    # negative control: a state from another epoch does not end the same
    model3, train3, _ = _setup(recipe)
    fit(model3, train3, recipe.replace(epochs=2))
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model3.state_dict().values(),
                                                      strict=True))
