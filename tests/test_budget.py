"""The time-budget planner: scales only as far as needed, never below floors, records every change; warnings."""
from __future__ import annotations

import json

import pytest

import budget
import main
import model
import settings


def test_plan_scales_down_only_as_needed():
    s = settings.resolve("cpu")
    rates = {"forward": 100.0, "backward": 25.0}
    names = ["smoothgrad", "ig", "lime", "trust"]
    full = 1.25 * sum(budget.task_seconds(names, s, rates, 4, 11, 0).values())
    same, changes = budget.plan(names, s, rates, 4, 11, 0, budget=full * 1.01)
    assert same == s and changes == []
    half, changes = budget.plan(names, s, rates, 4, 11, 0, budget=full / 2)
    assert 1.25 * sum(budget.task_seconds(names, half, rates, 4, 11, 0).values()) <= full / 2
    assert half["lime_samples"] < s["lime_samples"] and half["smoothgrad_n"] < s["smoothgrad_n"]
    assert any(c.startswith("lime_samples: 1000 -> ") for c in changes)
    tiny, changes = budget.plan(names, s, rates, 4, 11, 0, budget=0.01)
    assert all(min(floor, s[k]) <= tiny[k] <= s[k] for k, floor in budget.SCALABLE.items())
    assert "still predicted" in changes[-1]
    # the sanity check re-runs the gradient methods once per parameterised layer: deeper nets cost more
    assert budget.passes("trust", s, 4, 11, 0, 26)[1] == 2 * budget.passes("trust", s, 4, 11, 0, 13)[1]


def test_time_budget_is_recorded_in_run_json(tmp_path, capsys):
    out = tmp_path / "o"
    code = main.main(["--task", "smoothgrad,ig", "--time-budget", "0.01", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    record = json.loads((out / "run.json").read_text())
    plan = record["budget"]
    assert plan["seconds"] == 0.01 and plan["changes"] and "time budget: smoothgrad_n" in err
    assert record["settings"]["smoothgrad_n"] == budget.SCALABLE["smoothgrad_n"]
    assert record["results"]["ig"]["steps"] == budget.SCALABLE["ig_steps"]


def test_default_run_warns_when_predicted_too_slow(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(budget, "WARN_SECONDS", 0.0)
    monkeypatch.setattr(budget, "task_seconds", lambda *a, **k: {"confusion": 1.0})
    monkeypatch.setattr(main.tasks, "default_tasks", lambda: ["confusion"])
    code = main.main(["--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 0 and "--time-budget 540" in err
    assert main.main(["--time-budget", "-3", "--task", "confusion", "--out", str(tmp_path / "o")]) == 2


def test_budget_scales_samples_and_keeps_the_precision(tmp_path, monkeypatch):
    """A budget that the run misses cuts samples and keeps the run's precision; a budget that fits changes nothing."""
    monkeypatch.setattr(budget, "rate", lambda m, device, size, batch, grad, seconds=0.5: 25.0 if grad else 100.0)
    for seconds, precision in (("0.5", "fp32"), ("100000", "bf16")):
        out = tmp_path / seconds
        assert main.main(["--task", "lime", "--time-budget", seconds, "--out", str(out), "--precision", precision,
                          "--set", "lime_samples=200"]) == 0
        record = json.loads((out / "run.json").read_text())
        assert record["precision"] == precision == record["results"]["lime"]["precision"]
        changes = record["budget"]["changes"]
        assert any(c.startswith("lime_samples") for c in changes) if seconds == "0.5" else changes == []
