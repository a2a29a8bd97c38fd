"""The integrations' shared pieces: optional imports, config resolution, decision metrics."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from integration_support import small_config

from autolrs import AutoLRSConfig, AutoLRSError, ConfigError
from autolrs.integrations._common import (
    DecisionMetrics,
    check_total_steps,
    check_val_batches,
    resolve_config,
    warn_if_step_cap_too_low,
)


def test_importing_autolrs_and_its_integrations_package_loads_no_framework():
    code = (
        "import sys, autolrs, autolrs.integrations; "
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("autolrs.integrations.lightning", "lightning", "lightning"),
        ("autolrs.integrations.transformers", "transformers", "transformers"),
    ],
)
def test_an_integration_without_its_framework_names_the_extra(
    monkeypatch, module, framework, extra
):
    monkeypatch.delitem(sys.modules, module, raising=False)
    for name in [n for n in sys.modules if n == framework or n.startswith(framework + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, framework, None)  # makes `import framework` fail
    with pytest.raises(AutoLRSError, match=rf"pip install 'autolrs\[{extra}\]'"):
        importlib.import_module(module)


def test_config_comes_from_the_budget_or_the_paper_or_the_given_config():
    assert resolve_config(1e-3, 0.1, 4000, None) == AutoLRSConfig.for_budget(4000, 1e-3, 0.1)
    assert resolve_config(1e-3, 0.1, None, None) == AutoLRSConfig(min_lr=1e-3, max_lr=0.1)
    given = small_config()
    assert resolve_config(None, None, 4000, given) is given
    assert resolve_config(None, 0.2, None, given) == small_config(max_lr=0.2)
    with pytest.raises(ConfigError, match="min_lr and max_lr are required"):
        resolve_config(1e-3, None, None, None)
    with pytest.raises(ConfigError, match="config must be an AutoLRSConfig, got dict"):
        resolve_config(None, None, None, {"min_lr": 1e-3})


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "10"])
def test_total_steps_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="total_steps"):
        check_total_steps(bad)


def test_total_steps_and_val_batches_accept_their_valid_values():
    assert check_total_steps(None) is None
    assert check_total_steps(7) == 7
    assert check_val_batches(0) == 0
    with pytest.raises(ConfigError, match="val_batches must be an integer >= 0, got 1.5"):
        check_val_batches(1.5)


def test_a_step_cap_below_twice_an_update_budget_is_warned_about(caplog):
    update_budget = AutoLRSConfig(min_lr=1e-3, max_lr=0.1)
    with caplog.at_level("WARNING", logger="autolrs.integrations._common"):
        warn_if_step_cap_too_low(-1, 100, "max_steps", update_budget)  # unlimited
        warn_if_step_cap_too_low(250, 100, "max_steps", update_budget)
        warn_if_step_cap_too_low(500, None, "max_steps", update_budget)
        assert caplog.text == ""
        warn_if_step_cap_too_low(150, 100, "max_steps", update_budget)
    assert "max_steps=150" in caplog.text
    assert "at least 300" in caplog.text


def test_a_budget_that_counts_the_search_needs_a_cap_of_the_budget_only(caplog):
    counting = AutoLRSConfig.for_budget(100, 1e-3, 0.1)
    assert counting.budget_includes_search
    with caplog.at_level("WARNING", logger="autolrs.integrations._common"):
        warn_if_step_cap_too_low(100, 100, "max_steps", counting)
        warn_if_step_cap_too_low(-1, 100, "max_steps", counting)
        assert caplog.text == ""
        warn_if_step_cap_too_low(99, 100, "max_steps", counting)
    assert "max_steps=99" in caplog.text and "set max_steps to 100" in caplog.text


def test_decisions_become_prefixed_metrics_once():
    metrics = DecisionMetrics()
    counters = {"update_steps": 16, "search_steps": 24}
    metrics({"event": "report", **counters})  # not a decision
    metrics(
        {"event": "choice", "stage": 1, "lr": 0.02, "predicted": 0.5, "reason": "", **counters}
    )
    metrics(
        {"event": "choice", "stage": 2, "lr": 0.01, "predicted": None, "reason": "x", **counters}
    )
    metrics({"event": "restart", "stage": 2, "restart": {"lr": 0.01}, **counters})
    stage = {"index": 2, "final_loss": float("nan")}
    metrics({"event": "stage_end", "stage": stage, **counters})

    drained = metrics.drain()
    assert drained[0] == {
        "autolrs/stage": 1.0,
        "autolrs/chosen_lr": 0.02,
        "autolrs/predicted_loss": 0.5,
        "autolrs/update_steps": 16.0,
        "autolrs/search_steps": 24.0,
    }
    assert "autolrs/predicted_loss" not in drained[1]
    assert drained[2]["autolrs/restarted_lr"] == 0.01
    assert "autolrs/stage_final_loss" not in drained[3]  # NaN is left out
    assert metrics.drain() == []
