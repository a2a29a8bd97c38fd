"""The PyTorch adapter with ``server=`` runs the same search as with its in-process controller."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from autolrs import AutoLRS, AutoLRSConfig  # noqa: E402

torch.set_num_threads(1)

STEPS = 90  # update steps: the first stages' searches and trainings


def config() -> AutoLRSConfig:
    return AutoLRSConfig(
        min_lr=1e-3, max_lr=0.5, stage_steps=16, max_stage_steps=32, trial_fraction=0.5,
        num_candidates=3, val_every=2, gp_fit_hyperparameters=False, seed=1,
    )  # fmt: skip


class Problem:
    """A seeded regression with a fixed data order: every run sees the same batches."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(8, 1, generator=g)
        self.x = torch.randn(256, 8, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(256, 1, generator=g)
        self.x_val = torch.randn(64, 8, generator=g)
        self.y_val = self.x_val @ w
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

    def val_loss(self) -> float:
        return nn.functional.mse_loss(self.model(self.x_val), self.y_val).item()

    def train(self, scheduler: AutoLRS, update_steps: int) -> None:
        step = scheduler.total_steps
        while scheduler.update_steps < update_steps:
            start = (step * 16) % 256
            x, y = self.x[start : start + 16], self.y[start : start + 16]
            loss = nn.functional.mse_loss(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            scheduler.step(loss)
            step += 1


def history_text(scheduler: AutoLRS, helpers) -> str:
    return helpers.canonical({"h": [stage.to_dict() for stage in scheduler.history]})


def local_run(update_steps: int) -> tuple[Problem, AutoLRS]:
    problem = Problem()
    scheduler = AutoLRS(problem.optimizer, problem.model, val_fn=problem.val_loss, config=config())
    problem.train(scheduler, update_steps)
    return problem, scheduler


def remote_scheduler(problem: Problem, url: str) -> AutoLRS:
    return AutoLRS(
        problem.optimizer, problem.model, val_fn=problem.val_loss, config=config(), server=url
    )


def test_the_adapter_on_a_remote_controller_trains_the_same_run(service, helpers):
    _, local = local_run(STEPS)

    problem = Problem()
    remote = remote_scheduler(problem, service.url)
    problem.train(remote, STEPS)

    assert type(remote.controller).__name__ == "RemoteController"
    assert remote.schedule() == local.schedule()
    assert history_text(remote, helpers) == history_text(local, helpers)
    assert (remote.update_steps, remote.search_steps) == (local.update_steps, local.search_steps)


def test_the_adapter_resumes_a_remote_run_from_its_checkpoint(service, helpers):
    _, local = local_run(STEPS)

    problem = Problem()
    first = remote_scheduler(problem, service.url)
    problem.train(first, STEPS // 2)
    checkpoint = copy.deepcopy(
        {
            "model": problem.model.state_dict(),
            "optimizer": problem.optimizer.state_dict(),
            "scheduler": first.state_dict(),
        }
    )
    problem.train(first, STEPS // 2 + 10)  # the run goes on past the checkpoint, then dies

    resumed_problem = Problem()
    resumed_problem.model.load_state_dict(checkpoint["model"])
    resumed_problem.optimizer.load_state_dict(checkpoint["optimizer"])
    resumed = remote_scheduler(resumed_problem, service.url)
    resumed.load_state_dict(checkpoint["scheduler"])
    assert resumed.controller.job_id == first.controller.job_id  # the same job, rewound
    resumed_problem.train(resumed, STEPS)

    assert resumed.schedule() == local.schedule()
    assert history_text(resumed, helpers) == history_text(local, helpers)
