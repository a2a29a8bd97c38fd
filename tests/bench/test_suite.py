import json

import pytest

import autolrs.bench.suite as suite_module
from autolrs.bench.report import write_report
from autolrs.bench.suite import Suite, SuiteSettings
from autolrs.errors import MissingDependencyError

FAST_METHODS = ("constant", "cosine", "step", "schedulefree", "prodigy", "plateau")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def count_runs(monkeypatch):
    """Counts the runs a suite actually executes (as opposed to reads from the store)."""
    calls = []
    real_run = suite_module.run

    def counting_run(task, config, seed, settings):
        calls.append((config.method, config.lr, seed))
        return real_run(task, config, seed, settings)

    monkeypatch.setattr(suite_module, "run", counting_run)
    return calls


def settings(tmp_path, **changes):
    values = {
        "suite": "smoke",
        "tasks": ("fake",),
        "methods": FAST_METHODS,
        "seeds": 2,
        "family_seeds": 2,
        "out_dir": tmp_path / "out",
        "reference_dir": tmp_path / "reference",
        "overheads": False,
        "progress": False,
    }
    values.update(changes)
    return SuiteSettings(**values)


def test_a_second_invocation_runs_nothing_already_finished(tmp_path, fake_task, count_runs):
    first = Suite(settings(tmp_path), {"fake": fake_task}).run()
    executed = len(count_runs)
    # Grid: 4 families x 2 LRs; one extra seed per family; then 6 methods x 2 seeds, of which
    # constant/cosine/step at their best LR are already done, schedulefree-tuned is not run.
    assert executed == 8 + 4 + (6 * 2 - 3 * 2)
    assert not first.failures

    count_runs.clear()
    second = Suite(settings(tmp_path), {"fake": fake_task}).run()
    assert count_runs == []
    assert second.references["fake"] == first.references["fake"]

    # A new seed runs only that seed of each method.
    Suite(settings(tmp_path, seeds=3), {"fake": fake_task}).run()
    assert sorted({seed for _, _, seed in count_runs}) == [2]
    assert len(count_runs) == len(FAST_METHODS)


def test_regrid_reruns_the_grid_only_when_asked(tmp_path, fake_task, count_runs):
    Suite(settings(tmp_path, methods=("cosine",)), {"fake": fake_task}).run()
    reference_file = tmp_path / "reference" / "fake-v1-smoke.json"
    assert reference_file.exists()

    # A fresh output folder: with the reference file in place no grid run is needed.
    count_runs.clear()
    fresh = settings(tmp_path, methods=("cosine",), out_dir=tmp_path / "fresh")
    Suite(fresh, {"fake": fake_task}).run()
    assert len(count_runs) == 2  # cosine at its tuned LR, two seeds

    count_runs.clear()
    regrid = settings(tmp_path, methods=("cosine",), out_dir=tmp_path / "regrid", regrid=True)
    Suite(regrid, {"fake": fake_task}).run()
    assert len(count_runs) == 8 + 4


def test_the_report_has_a_table_per_task_plots_and_a_summary(tmp_path, fake_task):
    result = Suite(settings(tmp_path), {"fake": fake_task}).run()
    report = write_report(result, n_boot=200)

    text = report.read_text()
    assert "## Overall" in text and "## fake (v1, smoke)" in text
    for method in FAST_METHODS:
        assert f"| {method} |" in text
    for plot in ("fake-loss.png", "fake-lr.png"):
        assert (report.parent / "plots" / plot).read_bytes().startswith(PNG_SIGNATURE)
    summary = json.loads((report.parent / "summary.json").read_text())
    baseline = summary["tasks"]["fake"]["baseline"]
    assert baseline["target"] == pytest.approx(result.references["fake"].target)
    assert summary["machine"]["torch_threads"] == 2


def test_a_failing_run_is_reported_and_retried_next_time(tmp_path, fake_task, monkeypatch):
    real_run = suite_module.run

    def failing_prodigy(task, config, seed, settings):
        if config.method == "prodigy":
            raise RuntimeError("boom")
        return real_run(task, config, seed, settings)

    monkeypatch.setattr(suite_module, "run", failing_prodigy)
    result = Suite(settings(tmp_path, seeds=1), {"fake": fake_task}).run()
    assert result.failures == ["fake prodigy lr=1.0 seed=0: RuntimeError: boom"]
    assert result.methods["fake"]["prodigy"].runs == []

    monkeypatch.setattr(suite_module, "run", real_run)
    again = Suite(settings(tmp_path, seeds=1), {"fake": fake_task}).run()
    assert not again.failures
    assert len(again.methods["fake"]["prodigy"].runs) == 1


def test_a_missing_optional_package_stops_the_suite_naming_the_extra(
    tmp_path, fake_task, monkeypatch
):
    import sys

    # Makes `import prodigyopt` fail as it does where the bench extra is not installed.
    monkeypatch.setitem(sys.modules, "prodigyopt", None)
    with pytest.raises(MissingDependencyError, match=r"prodigy.*pip install 'autolrs\[bench\]'"):
        Suite(settings(tmp_path, methods=("prodigy",), seeds=1), {"fake": fake_task}).run()


def test_settings_name_the_valid_choices(tmp_path):
    with pytest.raises(ValueError, match="methods must be a non-empty subset"):
        settings(tmp_path, methods=("sgdr",))
    with pytest.raises(ValueError, match="suite must be one of"):
        settings(tmp_path, suite="huge")
    with pytest.raises(ValueError, match="seeds must be an integer"):
        settings(tmp_path, seeds=0)


def test_ablations_run_only_on_the_ablation_tasks_and_get_their_own_table(
    tmp_path, fake_task, count_runs
):
    methods = ("cosine", "schedulefree", "prodigy", "autolrs", "autolrs-paper")
    methods += ("autolrs-no-window",)
    elsewhere = settings(tmp_path, methods=methods, seeds=1, ablation_tasks=("another",))
    result = Suite(elsewhere, {"fake": fake_task}).run()
    assert "autolrs-no-window" not in {method for method, _, _ in count_runs}
    assert "autolrs-no-window" not in result.methods["fake"]
    assert "## Ablations" not in write_report(result, n_boot=50).read_text()

    count_runs.clear()
    here = settings(tmp_path, methods=methods, seeds=1, ablation_tasks=("fake",))
    result = Suite(here, {"fake": fake_task}).run()
    assert [method for method, _, _ in count_runs] == ["autolrs-no-window"]
    text = write_report(result, n_boot=50).read_text()
    assert "## Ablations: the default with one change undone" in text
    assert "| autolrs-no-window | search_window=None |" in text
    assert "| autolrs-paper | every change |" in text
    assert "## AutoLRS against its goals" in text
    assert "median signed error (forecast − reached) by the training loss" in text
    for measure in ("search / update steps", "cost speedup", "update-step speedup"):
        assert f"| {measure} | autolrs |" in text and f"| {measure} | autolrs-paper |" in text


def test_a_reversed_suite_on_the_same_folder_skips_what_the_other_finished(
    tmp_path, fake_task, count_runs
):
    # Both suites load the folder first, as two processes started together would; the
    # reversed one then runs everything, and the forward one, re-reading, runs nothing.
    Suite(settings(tmp_path, methods=("cosine",)), {"fake": fake_task}).run()
    count_runs.clear()
    methods = ("cosine", "step", "constant", "prodigy", "schedulefree")
    forward = Suite(settings(tmp_path, methods=methods, seeds=3), {"fake": fake_task})
    backward = Suite(
        settings(tmp_path, methods=methods, seeds=3, reverse=True), {"fake": fake_task}
    )
    backward.run()
    ran_backward = list(count_runs)
    count_runs.clear()
    forward.run()  # its store was loaded before the reversed suite ran anything
    assert count_runs == []
    assert ran_backward and ran_backward[0][2] == 2  # last seed first
