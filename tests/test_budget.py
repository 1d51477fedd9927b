"""The time planner: a cost model of the model that never reads a clock, scaling only as far as needed and never
below the floors, every change recorded; the bounded sanity cascade; SmoothGrad in bf16."""
from __future__ import annotations

import json

import numpy as np
import torch
from torch import nn

import budget
import explain
import main
import metrics
import model
import saliency
import settings
import tasks
from conftest import make_ctx

REF = settings.REFERENCE_RATES["cpu"]
HEAVY = {"dense_macs": 4_000_000_000, "grouped_macs": 50_000_000, "linear_macs": 2_000_000,
         "activation_bytes": 250_000_000, "calls": 160}
NAMES = ["smoothgrad", "ig", "filters", "lime", "shap", "trust", "report"]


def test_plan_scales_down_only_as_needed():
    s = settings.resolve("cpu")
    rates = budget.model_rates(HEAVY, REF, "fp32", s)
    full = budget.total_seconds(NAMES, s, rates, 4, 11, 0)
    same, changes = budget.plan(NAMES, s, rates, 4, 11, 0, budget=full * 1.01)
    assert same == s and changes == []
    half, changes = budget.plan(NAMES, s, rates, 4, 11, 0, budget=full / 2)
    assert budget.total_seconds(NAMES, half, rates, 4, 11, 0) <= full / 2
    assert half["lime_samples"] < s["lime_samples"] and half["shap_max_evals"] < s["shap_max_evals"]
    assert any(c.startswith("lime_samples: 1000 -> ") for c in changes)
    tiny, changes = budget.plan(NAMES, s, rates, 4, 11, 0, budget=0.01)
    assert tiny["shap_max_evals"] == budget.SCALABLE["shap_max_evals"] == 200
    assert "still predicted" in changes[-1]


def test_a_model_at_three_times_the_budget_is_scaled_into_it_above_every_floor():
    s = settings.resolve("cpu")
    rates = budget.model_rates(HEAVY, REF, "bf16", s)
    target = budget.total_seconds(NAMES, s, rates, 5, 1000, 0, 107, size=224) / 3
    new, changes = budget.plan(NAMES, s, rates, 5, 1000, 0, 107, budget=target, size=224)
    assert changes and not any("still predicted" in c for c in changes)
    assert budget.total_seconds(NAMES, new, rates, 5, 1000, 0, 107, size=224) <= target
    assert all(floor <= new[k] <= s[k] for k, floor in budget.SCALABLE.items() if s[k] >= floor)


def test_per_call_overheads_and_model_kinds_are_counted():
    s = settings.resolve("cpu")
    depthwise = HEAVY | {"dense_macs": 0, "grouped_macs": HEAVY["dense_macs"]}
    forward = {k: budget.model_rates(c, REF, "fp32", s)["forward"] for k, c in (("dense", HEAVY), ("dw", depthwise))}
    assert forward["dw"] < forward["dense"]
    rates = budget.model_rates(HEAVY, REF, "fp32", s)
    # SHAP's own work per evaluation and the model copies count beyond the passes
    shap = budget.task_seconds(["shap"], s, rates, 4, 11, 0)["shap"]
    assert shap > 4 * s["shap_max_evals"] / rates["forward"] + REF["task_seconds"]
    assert budget.extra_seconds("trust", s, rates, 4, 11, 0, 107, None) > budget.extra_seconds("trust", s, rates, 4, 11,
                                                                                                0, 1, None)


def test_the_plan_never_reads_a_clock(demo_data, tmp_path, monkeypatch):
    """Two machines measuring 2x and 0.5x the speed plan the same settings; the probe planner does not."""
    def planned(speed: float, probed: bool) -> dict:
        monkeypatch.setattr(budget, "rate", lambda m, d, size, batch, grad, seconds=0.5: speed * (25 if grad else 100))
        ctx = make_ctx(tmp_path / f"{speed}{probed}", "--set", "shap_max_evals=2000")
        budget.apply(ctx, ["smoothgrad", "ig", "lime", "shap", "trust"], 60.0, probed)
        return ctx.settings

    fast, slow = planned(2.0, False), planned(0.5, False)
    assert fast == slow
    assert planned(2.0, True) != planned(0.5, True)


def test_the_demo_and_the_full_size_hw3_keep_the_defaults():
    s = settings.resolve("cpu")
    names = tasks.default_tasks()
    for width, macs, n_eval in ((0.25, 74_000_000, 549), (1.0, 1_100_000_000, 3430)):
        net = model.build_network("hw3", 11, width, 128).eval()
        cost = model.model_cost(net, 128)
        assert abs(sum(cost[k] for k in model.MAC_KINDS) - macs) < 0.05 * macs
        rates = budget.model_rates(cost, REF, "bf16", s)
        new, changes = budget.plan(names, s, rates, 4, 11, n_eval, 13, budget=budget.DEFAULT_SECONDS, size=128,
                                   n_classviz=11, macs=macs)
        assert changes == [] and new == s


def test_model_cost_counts_each_kind():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    cost = model.model_cost(net, 16)
    assert cost["dense_macs"] == 3 * 9 * 8 * 256 and cost["grouped_macs"] == 9 * 8 * 256
    assert cost["linear_macs"] == 8 * 256 * 10 and cost["calls"] == 5
    # each layer's input and output: conv 3 -> 8 channels, ReLU, depthwise conv and Flatten 8 -> 8, Linear 8 -> 10
    assert cost["activation_bytes"] == 4 * (3 * 256 + 8 * 8 * 256 + 10)
    assert model.model_macs(net, 16) == sum(cost[k] for k in model.MAC_KINDS)


def test_time_budget_is_recorded_in_run_json(tmp_path, capsys):
    out = tmp_path / "o"
    code = main.main(["--task", "smoothgrad,ig", "--time-budget", "0.01", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    plan = record["budget"]
    assert plan["seconds"] == 0.01 and plan["mode"] == "model" and plan["changes"]
    assert "time budget: smoothgrad_n" in err
    assert plan["cost"]["dense_macs"] > 0 and plan["predicted_seconds_after"] < plan["predicted_seconds_before"]
    assert record["settings"]["smoothgrad_n"] == budget.SCALABLE["smoothgrad_n"]
    assert record["results"]["ig"]["steps"] == budget.SCALABLE["ig_steps"]


def test_time_budget_none_keeps_the_settings_and_bad_values_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "DEFAULT_SECONDS", 0.01)
    monkeypatch.setattr(tasks, "default_tasks", lambda: ["saliency"])
    assert main.main(["--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["budget"]["changes"]
    assert main.main(["--out", str(tmp_path / "b"), "--time-budget", "none"]) == 0
    plan = json.loads((tmp_path / "b" / "run.json").read_text())["budget"]
    assert plan["mode"] == "none" and plan["seconds"] is None and plan["changes"] == []
    capsys.readouterr()
    for bad in ("-3", "0", "inf", "nan", "ten"):
        assert main.main(["--time-budget", bad, "--task", "saliency", "--out", str(tmp_path / "c")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--time-budget" in err[0] and "positive number of seconds" in err[0]


def test_the_cascade_on_a_50_layer_model_runs_at_most_8_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), *[nn.Conv2d(4, 4, 3, padding=1) for _ in range(48)],
                        nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    names = metrics.parameterised_modules(net, net, torch.zeros(1, 3, 8, 8))
    calls = []

    def fn(work: nn.Module, x: torch.Tensor, t: np.ndarray) -> np.ndarray:
        calls.append(1)
        return saliency_of(work, x, t)

    res = metrics.cascade(net, net, torch.rand(2, 3, 8, 8), np.array([0, 1]), {"vanilla": fn}, seed=0)
    steps = res["layers"][1:]
    assert len(names) == 50 and len(steps) <= metrics.CASCADE_STEPS and len(calls) == 1 + len(steps)
    assert steps[0] == names[-1] == "50" and steps[-1] == names[0] == "0"
    assert [names.index(n) for n in steps] == sorted((names.index(n) for n in steps), reverse=True)  # top-down
    assert res["maps"]["vanilla"].shape[0] == 1 + len(steps)
    assert metrics.cascade_stops(16) == list(range(16)) and len(metrics.cascade_stops(17)) == 8


def saliency_of(net: nn.Module, x: torch.Tensor, t: np.ndarray) -> np.ndarray:
    """|d logit / dx| maxed over channels."""
    return saliency.vanilla(net, x, torch.as_tensor(t))


def test_smoothgrad_bf16_matches_fp32_with_the_same_noise(demo_ctx):
    """At the default n (fewer copies average less of bf16's rounding away: n = 8 gives r 0.998)."""
    x, t = demo_ctx.images[:2], demo_ctx.targets()[:2]
    s = settings.resolve("cpu")
    kw = dict(method="smoothgrad", n=s["smoothgrad_n"], sigma=s["smoothgrad_sigma"], seed=3, batch_size=2)
    fp32 = explain.attribute(demo_ctx.model, x, t, precision="fp32", **kw).maps
    bf16 = explain.attribute(demo_ctx.model, x, t, precision="bf16", **kw).maps
    assert not np.array_equal(fp32, bf16)   # bf16 did run
    for a, b in zip(fp32, bf16):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999
