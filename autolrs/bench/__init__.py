"""The benchmark suite: does AutoLRS reach a tuned baseline's loss in fewer steps and less time?

Layout (dependencies point down):

- :mod:`~autolrs.bench.cli`: ``autolrs bench``, resumable, with progress bars;
- :mod:`~autolrs.bench.report`: markdown tables, plots, ``summary.json``, with the
  machine's description (:mod:`~autolrs.bench.machine`);
- :mod:`~autolrs.bench.suite`: the phases: tuned baselines, methods, overheads;
- :mod:`~autolrs.bench.summary` and :mod:`~autolrs.bench.metrics`: steps to target, speedups,
  quality at fixed cost, bootstrap intervals;
- :mod:`~autolrs.bench.reference`: the tuning protocol and its committed reference files;
- :mod:`~autolrs.bench.overhead`: AutoLRS's per-step, snapshot and decision costs;
- :mod:`~autolrs.bench.runner`: one run of one method, measured, through a driver
  (:mod:`~autolrs.bench.drivers`) of a method resolved for the task
  (:mod:`~autolrs.bench.methods`), baselines following :mod:`~autolrs.bench.schedules`;
- :mod:`~autolrs.bench.store`, :mod:`~autolrs.bench.records`: the results, one JSON line each;
- :mod:`~autolrs.bench.tasks`: the tasks themselves.

The protocol is docs/benchmark.md's; nothing here is imported by ``import autolrs``.
"""
