"""A benchmark suite: tuned baselines, every method on every task, overheads, then the report.

Phases, each resumable through the results store (a finished run is never run twice):

1. **Reference.** For each task without a reference file (or with ``regrid``): sweep every
   family of :data:`~autolrs.bench.methods.TUNED_FAMILIES` over the grid with one seed, run
   each family's best LR with ``family_seeds`` seeds, pick the tuned baseline and the target,
   and write the reference file.
2. **Methods.** Every method on every task for ``seeds`` seeds, interleaved seed by seed and
   task by task, so that the drift of a shared machine's speed hits all methods alike.
3. **Overheads** of AutoLRS per task, once per task and thread count.
4. **Report** (see :mod:`~autolrs.bench.report`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from autolrs.bench.methods import (
    ABLATIONS,
    METHODS,
    TUNED_FAMILIES,
    MethodConfig,
    autolrs_config,
    family_config,
    resolve_method,
)
from autolrs.bench.records import HARNESS_VERSION, RunRecord, config_hash
from autolrs.bench.reference import (
    SWEEP_SEED,
    GridPoint,
    Reference,
    best_lr,
    build_reference,
    reference_path,
    swept_grid,
)
from autolrs.bench.runner import RunSettings, run, run_key
from autolrs.bench.store import ResultStore, append_json_line
from autolrs.bench.tasks.base import Task, TaskDataError
from autolrs.errors import ConfigError, MissingDependencyError

__all__ = [
    "Suite",
    "SuiteSettings",
    "SuiteResult",
    "MethodRuns",
    "OVERHEADS_FILE",
    "default_settings",
]

logger = logging.getLogger(__name__)

SuiteName = Literal["smoke", "standard"]
SUITES: tuple[SuiteName, ...] = ("smoke", "standard")
OVERHEADS_FILE = "overheads.jsonl"
#: The three cheapest standard tasks, of three kinds, on which the ablations run.
STANDARD_ABLATION_TASKS: tuple[str, ...] = ("nqm", "teacher-student", "fmnist-mlp")


@dataclass(frozen=True)
class SuiteSettings:
    """What a suite runs and where it writes.

    Args:
        suite: ``"smoke"`` (every task's smoke variant, a two-point grid, one seed) or
            ``"standard"`` (the benchmark proper).
        tasks: Task names to run.
        methods: Methods to compare (see :data:`~autolrs.bench.methods.METHODS`).
        seeds: Seeds per method, 0 … seeds-1. ≥ 1.
        out_dir: Results, overheads, report and plots go here.
        reference_dir: Where reference files are read and written.
        regrid: Rerun the tuning grid even where a reference file exists.
        family_seeds: Seeds of each family's best LR in the reference phase. ≥ 1.
        run: Thread count and step cap of every run.
        overheads: Measure AutoLRS's overheads per task.
        progress: Show progress bars.
        ablation_tasks: Tasks on which the ablation methods (:data:`ABLATIONS`) run; they are
            skipped on the others. None: every task.
        reverse: Run the pending runs of each phase last first. A second suite started on the
            same output folder with it shares the work with the first: before each run both
            read what the other has finished.
    """

    suite: SuiteName
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int
    out_dir: Path
    reference_dir: Path
    regrid: bool = False
    family_seeds: int = 3
    run: RunSettings = field(default_factory=RunSettings)
    overheads: bool = True
    progress: bool = True
    ablation_tasks: tuple[str, ...] | None = None
    reverse: bool = False

    def __post_init__(self) -> None:
        if self.suite not in SUITES:
            raise ConfigError(f"suite must be one of {SUITES}, got {self.suite!r}")
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"methods must be a non-empty subset of {METHODS}, got {unknown}")
        if not self.tasks:
            raise ConfigError("tasks must name at least one task, got none")
        for name in ("seeds", "family_seeds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")

    def runs_method_on(self, method: str, task: str) -> bool:
        """Whether ``method`` is run on ``task``: ablations only on the ablation tasks."""
        if method not in ABLATIONS or self.ablation_tasks is None:
            return True
        return task in self.ablation_tasks

    @property
    def variant(self) -> str:
        """The task variant this suite runs."""
        return "smoke" if self.suite == "smoke" else "standard"


@dataclass(frozen=True)
class MethodRuns:
    """One method's runs on one task.

    Attributes:
        config: The method as resolved for the task.
        runs: Its finished runs, in seed order (a failed run is missing).
    """

    config: MethodConfig
    runs: list[RunRecord]


@dataclass(frozen=True)
class SuiteResult:
    """Everything the report needs.

    Attributes:
        settings: The suite's settings.
        tasks: The tasks, by name.
        references: Each task's tuned baselines.
        methods: ``methods[task][method]``: the runs of that method on that task.
        overheads: AutoLRS's overhead measurement per task (absent when not measured).
        failures: ``"task method lr seed: error"`` for every run that raised.
    """

    settings: SuiteSettings
    tasks: dict[str, Task]
    references: dict[str, Reference]
    methods: dict[str, dict[str, MethodRuns]]
    overheads: dict[str, dict[str, Any]]
    failures: list[str]


@dataclass(frozen=True)
class _Job:
    task: Task
    config: MethodConfig
    seed: int
    family: str = ""


class Suite:
    """Runs the phases of a suite against one results store.

    Args:
        settings: What to run.
        tasks: The tasks by name; by default each of ``settings.tasks`` from the registry in
            ``settings``'s variant. Tests pass their own.
    """

    def __init__(self, settings: SuiteSettings, tasks: Mapping[str, Task] | None = None):
        if tasks is None:
            from autolrs.bench.tasks import get_task

            tasks = {name: get_task(name, settings.variant) for name in settings.tasks}
        self.settings = settings
        self.tasks = dict(tasks)
        self.store = ResultStore(settings.out_dir)
        self.failures: list[str] = []

    def run(self) -> SuiteResult:
        """All phases; the report is left to the caller (see :mod:`autolrs.bench.report`)."""
        references = self.references()
        methods = self.method_runs(references)
        measure_overheads = self.settings.overheads and any(
            method.startswith("autolrs") for method in self.settings.methods
        )
        overheads = self.overheads() if measure_overheads else {}
        return SuiteResult(
            settings=self.settings,
            tasks=self.tasks,
            references=references,
            methods=methods,
            overheads=overheads,
            failures=list(self.failures),
        )

    # -- phase 1: the tuned baselines ------------------------------------------------------

    def references(self) -> dict[str, Reference]:
        """Each task's reference, read from its file or built by running the grid."""
        references: dict[str, Reference] = {}
        to_build: list[Task] = []
        for name, task in self.tasks.items():
            path = reference_path(self.settings.reference_dir, task.spec)
            if path.exists() and not self.settings.regrid:
                references[name] = Reference.load(path, task.spec)
                logger.info("%s: tuned baselines read from %s", name, path)
            else:
                to_build.append(task)
        if to_build:
            references.update(self._build_references(to_build))
        return references

    def _build_references(self, tasks: Sequence[Task]) -> dict[str, Reference]:
        smoke = self.settings.suite == "smoke"
        grids = {task.spec.name: swept_grid(task.spec, smoke=smoke) for task in tasks}
        sweep_jobs = [
            _Job(task, family_config(family, task.spec, lr), SWEEP_SEED, family)
            for task in tasks
            for family in TUNED_FAMILIES
            for lr in grids[task.spec.name]
        ]
        sweep = self._execute(sweep_jobs, "grid")

        points: dict[str, list[GridPoint]] = {task.spec.name: [] for task in tasks}
        for job, record in zip(sweep_jobs, sweep, strict=True):
            if record is not None:
                points[job.task.spec.name].append(GridPoint.of(job.family, record))
        best = {
            task.spec.name: {
                family: best_lr([p for p in points[task.spec.name] if p.family == family])
                for family in TUNED_FAMILIES
            }
            for task in tasks
        }
        seed_jobs = [
            _Job(
                task, family_config(family, task.spec, best[task.spec.name][family]), seed, family
            )
            for seed in range(self.settings.family_seeds)
            for task in tasks
            for family in TUNED_FAMILIES
        ]
        seeded = self._execute(seed_jobs, "best LRs")

        references = {}
        for task in tasks:
            name = task.spec.name
            runs: dict[str, list[RunRecord]] = {family: [] for family in TUNED_FAMILIES}
            for job, record in zip(seed_jobs, seeded, strict=True):
                if job.task is task and record is not None:
                    runs[job.family].append(record)
            reference = build_reference(task.spec, grids[name], points[name], runs)
            path = reference_path(self.settings.reference_dir, task.spec)
            reference.save(path)
            logger.info("%s: reference written to %s", name, path)
            references[name] = reference
        return references

    # -- phase 2: the methods --------------------------------------------------------------

    def method_runs(self, references: Mapping[str, Reference]) -> dict[str, dict[str, MethodRuns]]:
        """Every method on every task for every seed, interleaved."""
        configs: dict[str, dict[str, MethodConfig]] = {}
        for name, task in self.tasks.items():
            configs[name] = {}
            for method in self.settings.methods:
                if not self.settings.runs_method_on(method, name):
                    logger.info(
                        "%s: ablation %s runs only on %s",
                        name,
                        method,
                        ", ".join(self.settings.ablation_tasks or ()),
                    )
                    continue
                try:
                    configs[name][method] = resolve_method(
                        method, task.spec, references[name].best
                    )
                except ConfigError as exc:
                    # E.g. a budget too short for AutoLRS's stage rule: the other methods go on.
                    logger.error("%s %s cannot be configured: %s", name, method, exc)
                    self.failures.append(f"{name} {method}: cannot be configured: {exc}")
        jobs = [
            _Job(task, configs[name][method], seed)
            for seed in range(self.settings.seeds)
            for name, task in self.tasks.items()
            for method in configs[name]
        ]
        records = self._execute(jobs, "methods")

        results = {
            name: {method: MethodRuns(configs[name][method], []) for method in configs[name]}
            for name in self.tasks
        }
        for job, record in zip(jobs, records, strict=True):
            if record is not None:
                results[job.task.spec.name][job.config.method].runs.append(record)
        return results

    # -- phase 3: overheads ----------------------------------------------------------------

    def overheads(self) -> dict[str, dict[str, Any]]:
        """AutoLRS's overheads per task, measured once per task version and thread count."""
        from autolrs.bench.overhead import measure

        path = self.settings.out_dir / OVERHEADS_FILE
        done = _read_overheads(path)
        results: dict[str, dict[str, Any]] = {}
        for name, task in self.tasks.items():
            key = _overhead_key(task, self.settings.run.threads)
            if key not in done:
                logger.info("%s: measuring AutoLRS's overheads", name)
                try:
                    # A smoke suite checks the wiring; one repeat of each loop is enough there.
                    repeats = 1 if self.settings.suite == "smoke" else 2
                    record = measure(task, threads=self.settings.run.threads, repeats=repeats)
                except ConfigError as exc:
                    logger.error("%s: AutoLRS's overheads cannot be measured: %s", name, exc)
                    self.failures.append(f"{name} overheads: cannot be configured: {exc}")
                    continue
                append_json_line(path, record)
                done[key] = record
            results[name] = done[key]
        return results

    # -- running jobs ----------------------------------------------------------------------

    def _execute(self, jobs: Sequence[_Job], phase: str) -> list[RunRecord | None]:
        """Run every job not yet in the store; the record of each job, None if it failed."""
        keys = [run_key(job.task.spec, job.config, job.seed, self.settings.run) for job in jobs]
        pending = sum(1 for key in keys if key not in self.store)
        logger.info("%s: %d runs, %d already finished", phase, len(jobs), len(jobs) - pending)
        with tqdm(
            total=pending, desc=phase, unit="run", disable=not self.settings.progress
        ) as bar:
            order = range(len(jobs) - 1, -1, -1) if self.settings.reverse else range(len(jobs))
            results: list[RunRecord | None] = [None] * len(jobs)
            for index in order:
                job, key = jobs[index], keys[index]
                record = self.store.get(key)
                if record is None and self.store.refresh() and key in self.store:
                    record = self.store.get(key)  # another suite on this folder just ran it
                    bar.update()
                elif record is None:
                    bar.set_postfix_str(f"{key.task} {key.method} lr={key.lr} seed={key.seed}")
                    record = self._run_one(job)
                    bar.update()
                results[index] = record
        return results

    def _run_one(self, job: _Job) -> RunRecord | None:
        try:
            record = run(job.task, job.config, job.seed, self.settings.run)
        except (TaskDataError, MissingDependencyError):
            raise  # missing data or packages fail every run alike: stop and say so
        except Exception as exc:  # one broken run must not end a suite of hours
            label = f"{job.task.spec.name} {job.config.method} lr={job.config.lr} seed={job.seed}"
            logger.exception("%s failed; it is not recorded and will be retried next time", label)
            self.failures.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        self.store.add(record)
        return record


_OverheadKey = tuple[str, int, str, int, int, str]


def _overhead_key(task: Task, threads: int) -> _OverheadKey:
    """Task, threads, harness and the AutoLRS config measured: a new default is measured anew."""
    spec = task.spec
    config = autolrs_config(resolve_method("autolrs", spec, {}), seed=0)
    digest = config_hash(config.to_dict())
    return (spec.name, spec.version, spec.variant, threads, HARNESS_VERSION, digest)


def _read_overheads(path: Path) -> dict[_OverheadKey, dict[str, Any]]:
    done: dict[_OverheadKey, dict[str, Any]] = {}
    if not path.exists():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            logger.warning("%s: skipping an incomplete line; it will be measured again", path)
            continue
        key = (
            record["task"],
            record["version"],
            record["variant"],
            record["threads"],
            record["harness_version"],
            config_hash(record["config"]),
        )
        done[key] = record
    return done


def default_settings(suite: SuiteName, **overrides: Any) -> SuiteSettings:
    """The settings of ``suite`` with its defaults, changed by ``overrides``.

    Defaults: every registered task and method; smoke: 1 seed, 1 family seed, results in
    ``benchmarks/results/smoke`` and references beside them, ablations on the NQM only;
    standard: 3 seeds, 3 family seeds, results in ``benchmarks/results/standard``, references
    in ``benchmarks/reference`` (committed), ablations on :data:`STANDARD_ABLATION_TASKS`.
    """
    from autolrs.bench.tasks import TASK_NAMES

    smoke = suite == "smoke"
    out_dir = Path(overrides.pop("out_dir", None) or Path("benchmarks/results") / suite)
    defaults: dict[str, Any] = {
        "suite": suite,
        "tasks": TASK_NAMES,
        "methods": METHODS,
        "seeds": 1 if smoke else 3,
        "family_seeds": 1 if smoke else 3,
        "out_dir": out_dir,
        "reference_dir": out_dir / "reference" if smoke else Path("benchmarks/reference"),
        "ablation_tasks": ("nqm",) if smoke else STANDARD_ABLATION_TASKS,
    }
    defaults.update({key: value for key, value in overrides.items() if value is not None})
    return SuiteSettings(**defaults)
