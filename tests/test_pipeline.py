"""``fbnas run`` end to end on synthetic data: every stage, resume that redoes nothing, the report's numbers, and
the report rendered in headless Chromium (no console errors, every image loaded, a screenshot kept).

Chromium comes from Debian's package (``.ci/run`` installs it and sets FBNAS_REQUIRE_CHROMIUM=1, so CI fails
rather than skips without it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest
import yaml

from fbnas.cli import main
from fbnas.search.strategy import get_strategy

OUTPUT = Path(os.environ.get("FBNAS_TEST_OUTPUT", Path(__file__).resolve().parents[1] / "test-output"))


def _config(tmp_path: Path) -> Path:
    cfg = {**get_strategy("dnas").smoke_config, "strategy": "dnas",
           "pipeline": {"retrain": {"epochs": 2, "limit_train": 512, "samples": 1,
                                    "recipe": {"batch_size": 64, "lr": 0.2, "warmup_epochs": 0.0}},
                        "baseline": {"num": 2, "tolerance": 0.2}}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    cfg = _config(tmp)
    out = tmp / "run"
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 0
    return cfg, out


def test_every_stage_and_the_summary(pipeline_run, capsys):
    cfg, out = pipeline_run
    summary = json.loads((out / "result.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert [n["name"] for n in summary["nets"]] == ["found", "sample0", "random0", "random1"]
    for n in summary["nets"]:
        assert (out / "trials" / n["name"] / "checkpoint.pt").exists() and 0 <= n["test_acc"] <= 1
    found = json.loads((out / "search" / "result.json").read_text())
    assert summary["found"]["arch"] == found["arch"] and summary["found"]["sample"] == found["sample"]
    comp = summary["comparison"]
    base = [n["test_acc"] for n in summary["nets"] if n["role"] == "baseline"]
    assert comp["baseline_median"] == pytest.approx(statistics.median(base))
    assert f"{100 * comp['found_test_acc']:.2f}%" in comp["sentence"] and f"{100 * comp['baseline_median']:.2f}%" \
        in comp["sentence"]
    assert (out / "model.onnx").stat().st_size > 1000 and summary["export"]["max_abs_diff"] < 1e-3
    assert report["layers"][-1]["block"] == "classifier" and report["comparison"] == comp
    html = (out / "report.html").read_text()
    assert comp["sentence"] in html.replace("&#x27;", "'") and "http://" not in html and "https://" not in html
    assert (out / "report.html").stat().st_size < 3_000_000
    # resume: every stage is finished, nothing is redone
    before = {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("checkpoint.pt")}
    capsys.readouterr()
    assert main(["run", "--config", str(cfg), "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "reusing" in printed and "training" not in printed
    assert before == {p: p.stat().st_mtime_ns for p in (out / "trials").rglob("checkpoint.pt")}
    # without --resume the folder is refused in one line
    assert main(["run", "--config", str(cfg), "--out", str(out)]) == 2


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_chromium(pipeline_run, tmp_path):
    _, out = pipeline_run
    browser = _chromium()
    if browser is None:
        if os.environ.get("FBNAS_REQUIRE_CHROMIUM") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium not installed")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'u'}"]
    url = (out / "report.html").resolve().as_uri()
    dom = subprocess.run([*flags, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
                          url], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stderr[-2000:]
    images = int(re.search(r'data-images="(\d+)"', body.group(0)).group(1))
    broken = int(re.search(r'data-broken="(\d+)"', body.group(0)).group(1))
    assert images >= 3 and broken == 0
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "report-screenshot.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,2400", url], capture_output=True,
                   timeout=120, check=True)
    assert shot.stat().st_size > 10_000
