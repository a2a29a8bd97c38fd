"""Replaying a found schedule sets exactly the LRs the searched run used."""

from __future__ import annotations

import doctest
import io
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSConfig, AutoLRSError, ConfigError
from autolrs.pytorch import replay
from autolrs.pytorch.replay import FoundSchedule, ReplaySchedule, Segment

torch.set_num_threads(1)

# Two param groups whose ratio 3/7 rounds differently as b/a and as b·(1/a): the replay must
# compute it exactly as AutoLRS does.
GROUP_LRS = (0.7, 0.3)


def config(**changes) -> AutoLRSConfig:
    base = dict(
        min_lr=1e-3,
        max_lr=0.5,
        stage_steps=16,
        max_stage_steps=32,
        trial_fraction=0.5,
        num_candidates=3,
        val_every=2,
        warmup_steps=10,
        warmup_lr=0.2,
        gp_fit_hyperparameters=False,
    )
    base.update(changes)
    return AutoLRSConfig(**base)


def make_optimizer(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
    groups = [
        {"params": model[0].parameters(), "lr": GROUP_LRS[0]},
        {"params": model[2].parameters(), "lr": GROUP_LRS[1]},
    ]
    return model, torch.optim.SGD(groups, momentum=0.9)


class Run:
    """A real AutoLRS run that records the LRs of every param group at every update step."""

    def __init__(self, tmp_path: Path, cfg: AutoLRSConfig, *, nan_in_stage: int | None = None):
        generator = torch.Generator().manual_seed(1)
        weights = torch.randn(8, 1, generator=generator)
        x = torch.randn(512, 8, generator=generator)
        y = x @ weights + 0.1 * torch.randn(512, 1, generator=generator)
        self.model, self.optimizer = make_optimizer()
        self.log = tmp_path / "run.jsonl"
        self.scheduler = AutoLRS(
            self.optimizer,
            self.model,
            val_fn=lambda: nn.functional.mse_loss(self.model(x[:64]), y[:64]).item(),
            config=cfg,
            event_log=self.log,
        )
        self.reports: list[dict] = []
        self.scheduler.add_listener(
            lambda event: self.reports.append(event) if event["event"] == "report" else None
        )
        self.executed: list[list[float]] = []  # LRs of each executed step, search included
        self.x, self.y = x, y
        self.nan_in_stage = nan_in_stage

    def train(self, update_steps: int) -> list[list[float]]:
        """Train; return the LRs of each update step, in order (index = update step)."""
        diverged = False
        while self.scheduler.update_steps < update_steps:
            self.executed.append([group["lr"] for group in self.optimizer.param_groups])
            start = (len(self.executed) * 16) % 512
            batch = slice(start, start + 16)
            loss = nn.functional.mse_loss(self.model(self.x[batch]), self.y[batch])
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()
            in_target = self.scheduler.stage == self.nan_in_stage
            if in_target and self.scheduler.phase == "stage" and not diverged:
                diverged = True  # the stage's training diverges once and is restarted
                self.scheduler.step(math.nan)
            else:
                self.scheduler.step(loss)
        return self.kept_lrs()

    def kept_lrs(self) -> list[list[float]]:
        # A command whose report raised the update-step counter was kept as progress.
        kept: list[list[float]] = []
        position, update_steps = 0, 0
        for report in self.reports:
            count = len(report["losses"])
            if report["update_steps"] > update_steps:
                kept += self.executed[position : position + count]
            position += count
            update_steps = report["update_steps"]
        if self.scheduler.phase != "trial":  # the stage still training when the loop ended
            kept += self.executed[position:]
        return kept


def replayed_lrs(scheduler: ReplaySchedule, optimizer: torch.optim.Optimizer, steps: int):
    lrs = []
    for _ in range(steps):
        lrs.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return lrs


def test_replay_sets_exactly_the_recorded_lr_at_every_update_step(tmp_path):
    run = Run(tmp_path, config(), nan_in_stage=1)
    recorded = run.train(update_steps=150)
    assert len(recorded) == 150
    assert run.scheduler.history[1].restarts, "stage 1's training diverged and was redone"
    assert len({lrs[0] for lrs in recorded[:10]}) == 10, "the warmup ramp is replayed too"

    saved = FoundSchedule.from_autolrs(run.scheduler).save(tmp_path / "schedule.json")
    builders = {
        "history": lambda opt: ReplaySchedule.from_autolrs(opt, run.scheduler),
        "event log": lambda opt: ReplaySchedule.from_event_log(opt, run.log),
        "file": lambda opt: ReplaySchedule.load(opt, saved),
    }
    for name, build in builders.items():
        _, optimizer = make_optimizer()
        scheduler = build(optimizer)
        assert replayed_lrs(scheduler, optimizer, len(recorded)) == recorded, name


def test_replay_matches_a_run_that_kept_its_last_trial_as_progress(tmp_path):
    run = Run(tmp_path, config(keep_last_trial=True, warmup_steps=0, warmup_lr=None))
    recorded = run.train(update_steps=200)
    assert any(
        r["update_steps"] > previous["update_steps"]
        for previous, r in itertools.pairwise(run.reports)
        if r["phase"] == "trial"
    ), "some stage chose its last candidate and kept its trial steps"

    _, optimizer = make_optimizer()
    scheduler = ReplaySchedule.from_event_log(optimizer, run.log)
    assert replayed_lrs(scheduler, optimizer, len(recorded)) == recorded


@pytest.mark.parametrize("settle", [False, True])
def test_replay_matches_a_run_with_a_window_a_tolerance_and_a_final_cooldown(tmp_path, settle):
    cfg = config(
        total_steps=200,
        cooldown_fraction=0.25,
        search_window=3.0,
        larger_lr_tolerance=0.5,
        stop_search_when_settled=settle,
    )
    run = Run(tmp_path, cfg)
    recorded = run.train(update_steps=200)
    assert len(recorded) == 200 and run.scheduler.finished
    # With settling, a stage trains on at the LR its predecessor kept, unsearched.
    assert any(stage.settled for stage in run.scheduler.history) == settle
    (cooldown,) = [stage for stage in run.scheduler.history if stage.cooldown]
    assert cooldown.start_update_step == 150 and cooldown.stage_steps == 50
    decay = [lrs[0] for lrs in recorded[150:]]
    assert decay[0] == cooldown.chosen_lr and decay[-1] == 0.0
    assert all(later < earlier for earlier, later in itertools.pairwise(decay))

    for build in (
        lambda opt: ReplaySchedule.from_autolrs(opt, run.scheduler),
        lambda opt: ReplaySchedule.from_event_log(opt, run.log),
    ):
        _, optimizer = make_optimizer()
        assert replayed_lrs(build(optimizer), optimizer, len(recorded)) == recorded


def test_other_param_groups_keep_their_ratio_to_the_first():
    _, optimizer = make_optimizer()
    found = FoundSchedule((Segment(0, 4, 0.2, 0.2),))
    ReplaySchedule(optimizer, found)
    first, second = (group["lr"] for group in optimizer.param_groups)
    assert first == 0.2
    assert second == pytest.approx(0.2 * GROUP_LRS[1] / GROUP_LRS[0], rel=1e-15)


def test_after_the_last_segment_the_last_lr_holds():
    found = FoundSchedule((Segment(0, 3, 0.01, 0.03), Segment(3, 2, 0.5, 0.5)))
    assert [found.lr_at(u) for u in range(3)] == pytest.approx([0.01, 0.02, 0.03], rel=1e-12)
    assert [found.lr_at(u) for u in (3, 4, 5, 10_000)] == [0.5] * 4


def test_a_gap_between_segments_holds_the_earlier_segments_last_lr():
    found = FoundSchedule((Segment(5, 2, 0.1, 0.2), Segment(10, 1, 0.4, 0.4)))
    assert found.lr_at(0) == 0.1  # before the first segment: its first LR
    assert [found.lr_at(u) for u in (6, 7, 9)] == [0.2, 0.2, 0.2]
    assert found.lr_at(10) == 0.4


def test_get_last_lr_follows_the_schedule():
    _, optimizer = make_optimizer()
    scheduler = ReplaySchedule(optimizer, FoundSchedule((Segment(0, 2, 0.1, 0.1),)))
    optimizer.step()
    scheduler.step()
    assert scheduler.get_last_lr() == [group["lr"] for group in optimizer.param_groups]
    assert scheduler.last_epoch == 1


def test_state_dict_resumes_the_replay_exactly_through_a_weights_only_load(tmp_path):
    found = FoundSchedule((Segment(0, 5, 0.01, 0.05), Segment(5, 4, 0.3, 0.3)))
    _, optimizer = make_optimizer()
    reference = replayed_lrs(ReplaySchedule(optimizer, found), optimizer, 12)

    _, optimizer = make_optimizer()
    scheduler = ReplaySchedule(optimizer, found)
    first = replayed_lrs(scheduler, optimizer, 7)
    buffer = io.BytesIO()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    _, resumed_optimizer = make_optimizer()
    # Build the scheduler first, then load the optimizer, as torch's warning advises.
    resumed = ReplaySchedule(resumed_optimizer, FoundSchedule((Segment(0, 1, 9.0, 9.0),)))
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed.load_state_dict(checkpoint["scheduler"])
    assert resumed.schedule == found
    assert first + replayed_lrs(resumed, resumed_optimizer, 5) == reference


def test_a_saved_schedule_round_trips_bit_for_bit(tmp_path):
    found = FoundSchedule(
        (
            Segment(0, 7, 0.2 / 7, 0.2),
            Segment(7, 16, 0.1 + 0.2, 0.1 + 0.2),
            Segment(23, 32, 1e-3, 1e-3),
        )
    )
    path = found.save(tmp_path / "deep" / "schedule.json")
    assert FoundSchedule.load(path) == found
    assert json.loads(path.read_text())["format"] == replay.SCHEDULE_FORMAT


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ((-1, 1, 0.1, 0.1), "start must be >= 0"),
        ((0, 0, 0.1, 0.1), "steps must be >= 1"),
        ((0, 1.5, 0.1, 0.1), "steps must be an integer"),
        ((0, 1, math.nan, 0.1), "lr must be finite"),
        ((0, 1, 0.1, -0.1), "end_lr must be finite and >= 0"),
        ((0, 1, "0.1", 0.1), "lr must be a real number"),
    ],
)
def test_a_bad_segment_is_rejected_with_the_bad_value(fields, message):
    with pytest.raises(ConfigError, match=message):
        Segment(*fields)


def test_a_schedule_needs_segments_in_increasing_order():
    with pytest.raises(ConfigError, match="at least one segment"):
        FoundSchedule(())
    with pytest.raises(ConfigError, match=r"increase strictly, got \[4, 4\]"):
        FoundSchedule((Segment(4, 1, 0.1, 0.1), Segment(4, 2, 0.2, 0.2)))
    with pytest.raises(ConfigError, match="Segment objects"):
        FoundSchedule(((0, 1, 0.1, 0.1),))  # type: ignore[arg-type]


def test_lr_at_a_negative_update_step_is_an_error():
    with pytest.raises(ConfigError, match="update_step must be >= 0, got -1"):
        FoundSchedule((Segment(0, 1, 0.1, 0.1),)).lr_at(-1)


def test_a_history_with_no_choice_and_no_warmup_has_no_schedule():
    with pytest.raises(ConfigError, match="none chose an LR yet"):
        FoundSchedule.from_history([], config(warmup_steps=0, warmup_lr=None))


def test_a_history_with_only_a_warmup_replays_the_ramp():
    found = FoundSchedule.from_history([], config())
    assert found.segments == (Segment(0, 10, 0.2 / 10, 0.2),)


def test_loading_something_else_says_what_it_is(tmp_path):
    with pytest.raises(AutoLRSError, match="cannot read schedule file"):
        FoundSchedule.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(AutoLRSError, match="cannot read schedule file"):
        FoundSchedule.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something/2"}')
    with pytest.raises(ConfigError, match="got 'something/2'"):
        FoundSchedule.load(tmp_path / "other.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="got 'list'"):
        FoundSchedule.load(tmp_path / "list.json")
    broken = {"format": replay.SCHEDULE_FORMAT, "segments": [{"start": 0}]}
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(ConfigError, match="malformed schedule segments"):
        FoundSchedule.load(tmp_path / "broken.json")


def test_the_scheduler_checks_its_arguments():
    _, optimizer = make_optimizer()
    with pytest.raises(ConfigError, match="schedule must be a FoundSchedule, got list"):
        ReplaySchedule(optimizer, [(0, 0.1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="optimizer must be a torch.optim.Optimizer"):
        ReplaySchedule(object(), FoundSchedule((Segment(0, 1, 0.1, 0.1),)))  # type: ignore[arg-type]


def test_the_docstring_example_runs():
    result = doctest.testmod(replay, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
