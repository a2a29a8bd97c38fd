"""The stage controller, driven by synthetic loss curves with a known best LR."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest

from autolrs import AutoLRSConfig, DivergenceError, ProtocolError
from autolrs.core import Controller, Report, Restore, Snapshot, Train
from autolrs.core.search import GPSearch

BEST_LR = 0.03


def bowl_curve(lr: float, steps: int, start: float = 2.0) -> list[float]:
    """Exponential decay towards a floor that is lowest at BEST_LR (a bowl in log LR)."""
    floor = 0.5 + 0.2 * (math.log10(lr) - math.log10(BEST_LR)) ** 2
    t = np.arange(1, steps + 1)
    return list(floor + (start - floor) * np.exp(-t / max(steps, 1)))


LossFn = Callable[[Train], list[float]]


def answer(command: Train, loss_fn: LossFn = lambda c: bowl_curve(c.lr, c.steps)) -> Report:
    """Report every step of ``command`` with ``loss_fn``'s curve, validating when asked."""
    losses = loss_fn(command)
    n = len(losses)
    if n < command.steps:  # stopped early: no evaluation after the stopping step
        evaluated = n - 1
    else:
        evaluated = n
    count = evaluated // command.eval_every if command.eval_every else 0
    val = [losses[(i + 1) * command.eval_every - 1] + 0.01 for i in range(count)]
    return Report(seq=command.seq, losses=losses, val_losses=val)


def small_config(**changes) -> AutoLRSConfig:
    base = dict(
        min_lr=1e-3,
        max_lr=1.0,
        stage_steps=20,
        max_stage_steps=80,
        trial_fraction=0.25,
        num_candidates=4,
        val_every=2,
        gp_fit_hyperparameters=False,
    )
    base.update(changes)
    return AutoLRSConfig(**base)


def run(controller: Controller, reports: int, loss_fn: LossFn | None = None) -> list[list]:
    """Drive ``controller`` for ``reports`` round trips; return every reply."""
    replies = [controller.start()] if not controller.started else []
    for _ in range(reports):
        pending = controller.pending
        report = answer(pending) if loss_fn is None else answer(pending, loss_fn)
        replies.append(controller.report(report))
    return replies


def kinds(commands: list) -> list[str]:
    return [type(c).__name__ for c in commands]


def test_one_stage_issues_snapshot_k_trials_then_restore_and_stage_training():
    config = small_config()
    controller = Controller(config, validation=False)
    replies = run(controller, config.num_candidates + 1)

    assert kinds(replies[0]) == ["Snapshot", "Train"]
    assert [c.phase for c in replies[0] if isinstance(c, Train)] == ["trial"]
    for reply in replies[1 : config.num_candidates]:
        assert kinds(reply) == ["Restore", "Train"]
        assert reply[-1].phase == "trial" and reply[-1].steps == 5
    stage_reply = replies[config.num_candidates]
    assert kinds(stage_reply) == ["Restore", "Train"]
    assert stage_reply[-1].phase == "stage" and stage_reply[-1].steps == 20
    # After the stage: the next stage's snapshot and first trial, with τ doubled.
    assert kinds(replies[-1]) == ["Snapshot", "Train"]
    assert replies[-1][-1].steps == 10  # τ' of τ = 40
    assert controller.search_steps == 4 * 5
    assert controller.update_steps == 20
    assert [c.seq for r in replies for c in r if isinstance(c, Train)] == list(range(6))


def test_stage_lengths_double_until_max_and_record_their_starts():
    config = small_config()
    controller = Controller(config, validation=False)
    run(controller, 4 * (config.num_candidates + 1))

    stages = controller.history
    assert [s.stage_steps for s in stages] == [20, 40, 80, 80, 80]
    assert [s.trial_steps for s in stages] == [5, 10, 20, 20, 20]
    assert [s.start_update_step for s in stages] == [0, 20, 60, 140, 220]
    assert [s.start_total_step for s in stages] == [0, 40, 120, 280, 440]
    assert controller.update_steps == 220 and controller.search_steps == 220


def test_chosen_lr_lands_near_the_best_lr_of_a_known_bowl():
    config = small_config(num_candidates=8)
    controller = Controller(config, validation=False)
    run(controller, 3 * (config.num_candidates + 1))

    for stage in controller.history[:3]:
        assert config.min_lr <= stage.chosen_lr <= config.max_lr
        assert abs(math.log10(stage.chosen_lr) - math.log10(BEST_LR)) < 0.6
        assert len({c.lr for c in stage.candidates}) == len(stage.candidates)
        assert all(c.forecast_ok for c in stage.candidates)


def test_validation_loss_judges_candidates_once_stages_reach_max_length():
    config = small_config()
    controller = Controller(config, validation=True)
    run(controller, 2 * (config.num_candidates + 1))

    assert [s.metric for s in controller.history] == ["train", "train", "val"]
    trial = controller.pending
    assert trial.phase == "trial" and trial.eval_every == config.val_every
    # Earlier stages asked for no evaluation at all.
    assert controller.evaluations == 0
    run(controller, config.num_candidates)
    stage = controller.pending
    assert stage.phase == "stage" and stage.eval_every == stage.steps == 80
    val_stage = controller.history[2]
    assert val_stage.candidates[0].loss_steps == list(range(2, 21, 2))
    assert controller.evaluations == config.num_candidates * 10
    run(controller, 1)
    assert controller.evaluations == config.num_candidates * 10 + 1
    assert val_stage.final_loss is not None


def test_without_validation_or_with_use_val_loss_off_the_training_loss_is_kept():
    for config, validation in ((small_config(), False), (small_config(use_val_loss=False), True)):
        controller = Controller(config, validation=validation)
        run(controller, 3 * (config.num_candidates + 1))
        assert {s.metric for s in controller.history} == {"train"}
        assert controller.pending.eval_every == 0


def test_warmup_ramps_linearly_then_hands_over_to_the_first_stage():
    config = small_config(warmup_steps=10, warmup_lr=0.2)
    controller = Controller(config, validation=False)
    first = controller.start()

    assert kinds(first) == ["Train"]
    warmup = first[0]
    assert warmup.phase == "warmup" and warmup.steps == 10
    assert warmup.lr_at(0) == pytest.approx(0.02) and warmup.lr_at(9) == pytest.approx(0.2)
    assert controller.stage_index == -1
    reply = controller.report(answer(warmup))
    assert kinds(reply) == ["Snapshot", "Train"]
    assert controller.update_steps == 10
    assert controller.history[0].start_update_step == 10


def test_non_finite_warmup_loss_raises_divergence_naming_warmup_lr():
    controller = Controller(small_config(warmup_steps=10, warmup_lr=0.2), validation=False)
    warmup = controller.start()[-1]
    with pytest.raises(DivergenceError, match="warmup_lr=0.2"):
        controller.report(Report(seq=warmup.seq, losses=[1.0, math.nan]))


def diverge_above(threshold: float) -> LossFn:
    """Curves that turn NaN after 2 steps for every LR above ``threshold``."""

    def loss_fn(command: Train) -> list[float]:
        if command.lr > threshold:
            return [3.0, math.nan]
        return bowl_curve(command.lr, command.steps)

    return loss_fn


def test_a_diverging_candidate_is_recorded_failed_and_never_chosen():
    config = small_config(num_candidates=6)
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates, diverge_above(0.1))

    stage = controller.history[0]
    failed = [c for c in stage.candidates if c.failed]
    assert failed, "the seeded search should try at least one LR above 0.1"
    for candidate in failed:
        assert candidate.reason == "non_finite" and candidate.steps == 2
    assert stage.chosen_lr <= 0.1
    # Failed trials count only the steps they ran.
    expected = sum(c.steps for c in stage.candidates)
    assert controller.search_steps == expected


SPIKE = [2.0, 3.5, 3.6, 3.6, 3.5, 3.4, 3.3, 3.1, 2.9, 2.7]


def spike_above(threshold: float) -> LossFn:
    """Above ``threshold`` the loss jumps, plateaus, then falls steeply, still above its start."""

    def loss_fn(command: Train) -> list[float]:
        if command.lr <= threshold:
            return bowl_curve(command.lr, command.steps)
        return SPIKE[: command.steps]

    return loss_fn


def test_a_candidate_that_spikes_and_recovers_fast_is_not_chosen_for_its_fall():
    # Extrapolated over ten trial lengths, the steep fall that ends the spike would forecast a
    # loss far below 0, below every candidate that trained calmly.
    config = small_config(
        num_candidates=6, stage_steps=100, max_stage_steps=100, trial_fraction=0.1
    )
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates, spike_above(0.1))

    stage = controller.history[0]
    spiked = [c for c in stage.candidates if c.lr > 0.1]
    assert spiked, "the seeded search should try at least one LR above 0.1"
    assert stage.chosen_lr <= 0.1
    for candidate in spiked:
        assert candidate.reason == "below_zero" and not candidate.forecast_ok
        assert candidate.forecast == pytest.approx(SPIKE[-1], rel=0.02)


def test_diverging_stage_training_restores_and_retrains_with_the_next_best_lr():
    config = small_config()
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates)
    stage = controller.history[0]
    first_choice = stage.chosen_lr
    command = controller.pending
    searched = controller.search_steps

    reply = controller.report(Report(seq=command.seq, losses=[1.0] * 7 + [math.inf]))

    assert kinds(reply) == ["Restore", "Train"]
    assert reply[-1].phase == "stage" and reply[-1].steps == stage.stage_steps
    assert reply[-1].lr != first_choice
    assert stage.restarts[0].lr == first_choice and stage.restarts[0].steps == 8
    assert controller.search_steps == searched + 8
    assert controller.update_steps == 0


def test_all_candidates_diverging_falls_back_to_min_lr_then_raises_if_that_diverges():
    config = small_config()
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates, diverge_above(0.0))
    stage = controller.history[0]
    assert stage.choice_reason == "all_failed"
    command = controller.pending
    assert command.phase == "stage" and command.lr == config.min_lr

    with pytest.raises(DivergenceError, match="min_lr"):
        controller.report(Report(seq=command.seq, losses=[math.nan]))


def test_keep_last_trial_continues_from_the_last_candidate_when_it_wins():
    # Two candidates with first_candidate="center": the second one proposed is the winner
    # whenever its forecast is lower, so build a landscape where any later LR wins.
    config = small_config(keep_last_trial=True, num_candidates=2, first_candidate="center")
    controller = Controller(config, validation=False)
    center = controller.start()[-1]

    def first_is_bad(command: Train) -> list[float]:
        offset = 1.0 if command.lr == center.lr else 0.0
        return [x + offset for x in bowl_curve(command.lr, command.steps)]

    reply = controller.report(answer(center, first_is_bad))
    reply = controller.report(answer(reply[-1], first_is_bad))

    assert kinds(reply) == ["Train"], "no restore: the model already holds the winner's steps"
    stage = controller.history[0]
    assert stage.chosen_lr == stage.candidates[-1].lr
    assert stage.kept_trial_steps == stage.trial_steps
    assert reply[-1].steps == stage.stage_steps - stage.trial_steps
    assert controller.update_steps == stage.trial_steps
    assert controller.search_steps == stage.trial_steps

    # If that stage training then diverges, the kept steps are rolled back too.
    controller.report(Report(seq=reply[-1].seq, losses=[1.0, math.nan]))
    assert stage.kept_trial_steps == 0
    assert controller.update_steps == 0
    assert controller.search_steps == 2 * stage.trial_steps + 2


def test_a_kept_trial_in_a_validation_stage_still_measures_the_loss_reached():
    config = small_config(
        keep_last_trial=True, num_candidates=2, first_candidate="center", stage_steps=80
    )
    controller = Controller(config, validation=True)
    center = controller.start()[-1]
    assert controller.history[0].metric == "val"

    def first_is_bad(command: Train) -> list[float]:
        offset = 1.0 if command.lr == center.lr else 0.0
        return [x + offset for x in bowl_curve(command.lr, command.steps)]

    reply = controller.report(answer(center, first_is_bad))
    reply = controller.report(answer(reply[-1], first_is_bad))
    stage_command = reply[-1]
    assert stage_command.steps == 60 and stage_command.eval_every == 60
    controller.report(answer(stage_command, first_is_bad))
    assert controller.history[0].final_loss is not None


@pytest.mark.parametrize("validation", [False, True])
@pytest.mark.parametrize("cut", [0, 1, 3, 4, 5, 9, 11])
def test_state_round_trip_through_json_gives_identical_later_decisions(cut, validation):
    config = small_config(num_candidates=3)
    total = 3 * (config.num_candidates + 1)
    reference = Controller(config, validation=validation)
    expected = run(reference, total)

    interrupted = Controller(config, validation=validation)
    before = run(interrupted, cut)
    state = json.loads(json.dumps(interrupted.state_dict()))
    resumed = Controller.from_state_dict(state)
    assert resumed.state_dict() == interrupted.state_dict()
    after = run(resumed, total - cut)

    assert before + after == expected
    assert resumed.state_dict() == reference.state_dict()


def test_state_from_another_version_is_refused():
    state = Controller(small_config(), validation=False).state_dict()
    state["version"] = 99
    with pytest.raises(Exception, match="version 99"):
        Controller.from_state_dict(state)


def test_reports_that_do_not_answer_the_pending_command_are_refused():
    controller = Controller(small_config(), validation=False)
    with pytest.raises(ProtocolError, match="before start"):
        controller.report(Report(seq=0, losses=[1.0]))
    trial = controller.start()[-1]
    with pytest.raises(ProtocolError, match="already called"):
        controller.start()
    with pytest.raises(ProtocolError, match="seq=7"):
        controller.report(Report(seq=7, losses=[1.0] * trial.steps))
    with pytest.raises(ProtocolError, match="between 1 and 5"):
        controller.report(Report(seq=trial.seq, losses=[1.0] * (trial.steps + 1)))
    with pytest.raises(ProtocolError, match="between 1 and 5"):
        controller.report(Report(seq=trial.seq, losses=[]))
    with pytest.raises(ProtocolError, match="no reason to stop early"):
        controller.report(Report(seq=trial.seq, losses=[1.0, 0.9]))
    with pytest.raises(ProtocolError, match="0 validation losses"):
        controller.report(Report(seq=trial.seq, losses=[1.0] * trial.steps, val_losses=[1.0]))
    # The controller is unharmed by the refused reports.
    assert kinds(controller.report(answer(trial))) == ["Restore", "Train"]


def test_every_reply_ends_with_exactly_one_train_command():
    controller = Controller(small_config(warmup_steps=3, warmup_lr=0.1), validation=True)
    for reply in run(controller, 20):
        assert isinstance(reply[-1], Train)
        assert all(isinstance(c, (Snapshot, Restore)) for c in reply[:-1])


def test_schedule_lists_each_stage_start_and_chosen_lr():
    config = small_config()
    controller = Controller(config, validation=False)
    run(controller, 2 * (config.num_candidates + 1))
    schedule = controller.schedule()
    assert [start for start, _ in schedule] == [0, 20]
    assert [lr for _, lr in schedule] == [s.chosen_lr for s in controller.history[:2]]


def explode_above(threshold: float) -> LossFn:
    """Finite curves that blow up by 1000x for every LR above ``threshold``."""

    def loss_fn(command: Train) -> list[float]:
        curve = bowl_curve(command.lr, command.steps)
        if command.lr > threshold:
            return [x * 1000.0 ** (i / command.steps) for i, x in enumerate(curve, start=1)]
        return curve

    return loss_fn


def test_a_finite_but_exploding_candidate_is_stopped_early_and_counted_as_diverged():
    config = small_config(num_candidates=6, divergence_factor=10.0)
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates, explode_above(0.1))

    stage = controller.history[0]
    assert stage.reference_loss is not None
    exploded = [c for c in stage.candidates if c.lr > 0.1]
    assert exploded
    for candidate in exploded:
        assert candidate.failed and candidate.reason == "diverged"
        assert candidate.steps < stage.trial_steps or max(candidate.losses) > 10 * 1.9
    assert stage.chosen_lr <= 0.1
    assert controller.pending.abort_above == pytest.approx(stage.reference_loss * 10.0)


def test_a_stage_training_that_explodes_is_restarted_like_a_nan():
    config = small_config(divergence_factor=10.0)
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates)
    stage = controller.history[0]
    command = controller.pending
    assert command.abort_above == pytest.approx(stage.reference_loss * 10.0)

    reply = controller.report(Report(seq=command.seq, losses=[1.0, 2.0, command.abort_above * 2]))

    assert stage.restarts[0].reason == "diverged" and stage.restarts[0].steps == 3
    assert reply[-1].phase == "stage" and reply[-1].lr != command.lr


def test_the_reference_loss_of_later_stages_is_where_the_previous_stage_ended():
    config = small_config()
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates + 1)
    first, second = controller.history
    assert first.reference_loss == bowl_curve(first.candidates[0].lr, 5)[0]
    # The largest of the first stage's last τ' training losses, not their mean.
    last = bowl_curve(first.chosen_lr, first.stage_steps)[-first.trial_steps :]
    assert second.reference_loss == max(last)
    assert first.final_loss == pytest.approx(sum(last) / len(last))


def test_the_last_stage_stretches_to_the_budget_instead_of_leaving_a_stub():
    # Stages of 20, 40, 80, 80, ... and a budget of 210: after 20 + 40 + 80 = 140 update steps
    # a stage of 80 would leave 30 (< 80 / 2), so the fourth stage takes all 70 remaining steps.
    config = small_config(total_steps=210)
    controller = Controller(config, validation=False)
    run(controller, 4 * (config.num_candidates + 1))
    assert [s.stage_steps for s in controller.history[:4]] == [20, 40, 80, 70]
    assert controller.history[3].trial_steps == 20
    assert controller.update_steps == 210


def run_to_budget(controller: Controller, loss_fn: LossFn | None = None) -> list[Train]:
    """Drive ``controller`` until its budget of update steps is spent; every Train issued."""
    issued = [controller.start()[-1]]
    while controller.update_steps < controller.config.total_steps:
        pending = controller.pending
        report = answer(pending) if loss_fn is None else answer(pending, loss_fn)
        issued.append(controller.report(report)[-1])
    return issued


def test_the_cooldown_takes_the_budgets_last_share_decaying_the_last_lr_to_zero():
    # Budget 300 with a 0.2 cooldown: searched stages of 20, 40, 80 and then 100 (stretched,
    # as 80 would leave 20 < 40 before the cooldown), then 60 steps of cooldown, no trials.
    config = small_config(total_steps=300, cooldown_fraction=0.2)
    controller = Controller(config, validation=False)
    issued = run_to_budget(controller)

    assert controller.update_steps == 300
    stages = controller.history[:5]
    assert [s.stage_steps for s in stages] == [20, 40, 80, 100, 60]
    assert [s.cooldown for s in stages] == [False, False, False, False, True]
    cooldown = stages[4]
    assert cooldown.candidates == [] and cooldown.start_update_step == 240
    assert cooldown.chosen_lr == stages[3].chosen_lr
    ramp = [c for c in issued if c.phase == "stage" and c.end_lr != c.lr]
    assert len(ramp) == 1
    assert ramp[0].steps == 60 and ramp[0].lr == stages[3].chosen_lr and ramp[0].end_lr == 0.0
    # No trial after the searched stages: search steps are the four stages' k trials only.
    expected_search = sum(config.num_candidates * s.trial_steps for s in stages[:4])
    assert controller.search_steps == expected_search


def test_a_diverging_cooldown_restarts_from_min_lr_and_then_raises():
    config = small_config(total_steps=100, cooldown_fraction=0.2)
    controller = Controller(config, validation=False)
    while not (controller.history and controller.history[-1].cooldown):
        controller.report(answer(controller.pending)) if controller.started else controller.start()
    command = controller.pending
    before = controller.update_steps

    reply = controller.report(Report(seq=command.seq, losses=[1.0, math.nan]))

    assert kinds(reply) == ["Restore", "Train"]
    assert reply[-1].lr == config.min_lr and reply[-1].end_lr == 0.0
    assert reply[-1].steps == command.steps and controller.update_steps == before
    assert controller.history[-1].restarts[0].lr == command.lr
    with pytest.raises(DivergenceError, match="cooldown"):
        controller.report(Report(seq=reply[-1].seq, losses=[math.nan]))


def test_the_cooldown_survives_a_state_round_trip():
    config = small_config(total_steps=300, cooldown_fraction=0.2)
    controller = Controller(config, validation=False)
    while not (controller.history and controller.history[-1].cooldown):
        controller.report(answer(controller.pending)) if controller.started else controller.start()
    restored = Controller.from_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert restored.history[-1].cooldown and restored.pending == controller.pending
    assert restored.report(answer(restored.pending)) == controller.report(
        answer(controller.pending)
    )


def test_a_larger_lr_tolerance_picks_the_largest_lr_near_the_best_from_the_second_stage():
    plain = Controller(small_config(num_candidates=6), validation=False)
    tolerant = Controller(
        small_config(num_candidates=6, larger_lr_tolerance=0.5), validation=False
    )
    for controller in (plain, tolerant):
        run(controller, 6 + 1 + 6)  # stage 0's trials and training, stage 1's trials
    # The first stage, from initialisation, takes the best candidate either way.
    assert plain.history[0] == tolerant.history[0]
    base, loose = plain.history[1], tolerant.history[1]
    assert [c.lr for c in base.candidates] == [c.lr for c in loose.candidates]
    assert loose.chosen_lr > base.chosen_lr
    # Reference: among the candidates, the largest whose posterior mean is within half the
    # best's improvement over the stage's start (the highest first loss), at most half the
    # best itself, of the best.
    from autolrs.core.controller import stage_observations

    search = tolerant._search
    lrs = np.array([c.lr for c in loose.candidates])
    mean, _ = search.posterior(stage_observations(loose), lrs)
    start = max(c.losses[0] for c in loose.candidates)
    bound = mean.min() + 0.5 * min(start - mean.min(), mean.min())
    assert loose.chosen_lr == max(lrs[mean <= bound])
    assert base.chosen_lr == lrs[np.argmin(mean)]


def test_a_search_window_keeps_later_stages_near_the_previous_choice_starting_from_it():
    config = small_config(search_window=3.0)
    controller = Controller(config, validation=False)
    run(controller, 3 * (config.num_candidates + 1))
    first, second, third = controller.history[:3]
    assert first.search_range is None and first.anchor_lr is None
    for previous, stage in ((first, second), (second, third)):
        low, high = stage.search_range
        assert low == pytest.approx(max(config.min_lr, previous.chosen_lr / 3))
        assert high == pytest.approx(min(config.max_lr, previous.chosen_lr * 3))
        assert stage.anchor_lr == previous.chosen_lr
        assert stage.candidates[0].lr == previous.chosen_lr
        assert all(low <= c.lr <= high for c in stage.candidates)
        assert len({c.lr for c in stage.candidates}) == config.num_candidates
    restored = Controller.from_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert restored.history[2] == third
    assert restored.report(answer(restored.pending)) == controller.report(
        answer(controller.pending)
    )


def test_with_kept_trials_the_previous_choice_is_tried_last_and_kept_when_it_wins_again():
    config = small_config(search_window=3.0, keep_last_trial=True)
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates + 1)  # stage 0 searched, its training reported
    first = controller.history[0]
    anchor = first.chosen_lr

    def anchor_wins(command: Train) -> list[float]:
        offset = 0.0 if command.lr == anchor else 0.5
        return [x + offset for x in bowl_curve(command.lr, command.steps)]

    updates, searched = controller.update_steps, controller.search_steps
    run(controller, config.num_candidates, anchor_wins)  # stage 1's trials and choice
    second = controller.history[1]
    lrs = [c.lr for c in second.candidates]
    assert second.anchor_lr == anchor and lrs[-1] == anchor and anchor not in lrs[:-1]
    low, high = second.search_range
    assert all(low <= lr <= high for lr in lrs) and len(set(lrs)) == len(lrs)
    # The proposals before it keep clear of it as of a tried LR: not within a grid spacing.
    spacing = (math.log(high) - math.log(low)) / (GPSearch(low, high).grid_size - 1)
    assert min(abs(math.log(lr / anchor)) for lr in lrs[:-1]) > spacing / 2
    assert second.chosen_lr == anchor and second.kept_trial_steps == second.trial_steps
    assert kinds(controller.last_reply) == ["Train"]  # no restore: the steps are kept
    assert controller.update_steps == updates + second.trial_steps
    assert controller.search_steps == searched + (config.num_candidates - 1) * second.trial_steps


def test_when_every_windowed_candidate_diverges_the_fallback_is_min_lr():
    config = small_config(search_window=3.0)
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates + 1)  # stage 0 searched and trained
    assert controller.history[1].search_range[0] > config.min_lr
    run(controller, config.num_candidates, diverge_above(0.0))
    stage = controller.history[1]
    assert stage.choice_reason == "all_failed"
    assert controller.pending.phase == "stage" and controller.pending.lr == config.min_lr


def run_until_finished(controller: Controller, loss_fn: LossFn | None = None) -> list[Train]:
    """Drive ``controller`` until :attr:`Controller.finished`; every Train carried out."""
    carried = []
    pending = controller.start()[-1]
    while not controller.finished:
        carried.append(pending)
        report = answer(pending) if loss_fn is None else answer(pending, loss_fn)
        pending = controller.report(report)[-1]
    return carried


@pytest.mark.parametrize("total", [300, 457, 1000])
@pytest.mark.parametrize("cooldown", [0.0, 0.2])
def test_a_budget_that_includes_the_search_ends_after_exactly_that_many_steps(total, cooldown):
    config = small_config(
        total_steps=total, cooldown_fraction=cooldown, budget_includes_search=True
    )
    controller = Controller(config, validation=False)
    carried = run_until_finished(controller)

    assert sum(command.steps for command in carried) == total
    assert controller.update_steps + controller.search_steps == total == controller.budget_used
    stages = [s for s in controller.history if s.final_loss is not None]
    if cooldown:
        # The cooldown is the last command: no search, its share of the whole budget.
        assert stages[-1].cooldown and stages[-1].candidates == []
        assert carried[-1].end_lr == 0.0 and carried[-1].steps == round(total * cooldown)
    searched = [s for s in stages if not s.cooldown]
    # Each searched stage paid for its trials out of the budget, as planned.
    planned = sum(s.stage_steps + len(s.candidates) * s.trial_steps for s in searched)
    assert planned == total - (stages[-1].stage_steps if cooldown else 0)


def test_with_the_search_in_the_budget_a_trial_stopped_early_leaves_its_steps_to_the_cooldown():
    def explodes_at_large_lr(command: Train) -> list[float]:
        curve = bowl_curve(command.lr, command.steps)
        if command.phase == "trial" and command.lr > 0.3:
            return curve[:2] + [math.inf]  # three steps, then divergence
        return curve

    config = small_config(total_steps=300, cooldown_fraction=0.2, budget_includes_search=True)
    controller = Controller(config, validation=False)
    carried = run_until_finished(controller, explodes_at_large_lr)

    cut_short = [c for s in controller.history for c in s.candidates if c.steps < s.trial_steps]
    assert cut_short, "the test needs a trial stopped early"
    executed = sum(c.steps for s in controller.history for c in s.candidates) + sum(
        s.stage_steps for s in controller.history if s.final_loss is not None
    )
    assert executed == 300 == controller.budget_used
    last = [s for s in controller.history if s.final_loss is not None][-1]
    assert last.cooldown
    assert last.stage_steps >= round(300 * 0.2)  # the cooldown got what the stops saved
    assert carried[-1].end_lr == 0.0


def test_without_the_search_in_the_budget_it_counts_update_steps_only():
    config = small_config(total_steps=300, cooldown_fraction=0.2)
    controller = Controller(config, validation=False)
    run_until_finished(controller)
    assert controller.update_steps == 300 == controller.budget_used
    assert controller.search_steps > 0


@pytest.mark.parametrize("which", ["first", "last searched"])
def test_a_diverged_stage_keeps_the_budget_exact_when_it_includes_the_search(which):
    config = small_config(total_steps=400, cooldown_fraction=0.2, budget_includes_search=True)
    search_end = 400 - config.cooldown_steps
    controller = Controller(config, validation=False)
    executed = 0
    pending = controller.start()[-1]

    def is_target(command: Train) -> bool:
        if command.phase != "stage" or controller.history[-1].cooldown:
            return False
        return which == "first" or controller.budget_used + command.steps == search_end

    while not is_target(pending):
        executed += pending.steps
        pending = controller.report(answer(pending))[-1]
    stage = controller.history[-1]
    reply = controller.report(Report(seq=pending.seq, losses=[1.0] * 5 + [math.nan]))
    executed += 6
    assert kinds(reply) == ["Restore", "Train"] and stage.restarts[0].steps == 6
    if which == "last searched":  # shortened by the lost steps, so the cooldown keeps its share
        assert reply[-1].steps == stage.stage_steps == pending.steps - 6
    pending = reply[-1]
    while not controller.finished:
        executed += pending.steps
        pending = controller.report(answer(pending))[-1]
    assert executed == 400 == controller.budget_used
    assert controller.history[-2].cooldown or controller.history[-1].cooldown


def to_first_stage(config: AutoLRSConfig, validation: bool = False) -> Controller:
    controller = Controller(config, validation=validation)
    controller.start()
    while controller.phase != "stage":
        controller.report(answer(controller.pending))
    return controller


def rising(steps: int, trial: int, start: float, end: float) -> list[float]:
    """``trial`` losses at ``start``, a straight climb, ``trial`` losses at ``end``."""
    middle = list(np.linspace(start, end, steps - 2 * trial))
    return [start] * trial + middle + [end] * trial


def test_a_stage_that_ends_above_its_start_is_trained_again_with_the_next_best_lr():
    controller = to_first_stage(small_config(restart_on_no_progress=True))
    stage = controller.history[0]
    first = controller.pending
    trial = stage.trial_steps

    # The first trial's first losses set where the stage starts from; it ends 50% above.
    start = stage.start_loss
    assert start == pytest.approx(np.mean(stage.candidates[0].losses[:5]))
    climb = rising(first.steps, trial, start, 1.5 * start)
    reply = controller.report(Report(seq=first.seq, losses=climb))

    assert kinds(reply) == ["Restore", "Train"] and reply[-1].phase == "stage"
    assert stage.restarts[0].reason == "no_progress" and stage.restarts[0].lr == first.lr
    assert controller.update_steps == 0
    assert controller.search_steps == sum(c.steps for c in stage.candidates) + first.steps
    # Reference: the pick among the candidates once the first choice counts as failed.
    from autolrs.core.controller import stage_observations, stage_start_value

    expected = controller._search.choose(
        stage_observations(stage),
        by=controller.config.choose_by,
        larger_lr_tolerance=controller.config.larger_lr_tolerance,
        start_value=stage_start_value(stage),
    )
    assert reply[-1].lr == expected.lr != first.lr

    # The second time the result stands, even if it is no better.
    second = reply[-1]
    reply = controller.report(Report(seq=second.seq, losses=climb))
    assert controller.update_steps == second.steps
    assert stage.final_loss == pytest.approx(1.5 * start)
    assert reply[-1].phase == "trial" and controller.stage_index == 1


@pytest.mark.parametrize(
    ("rule", "end"),
    [(True, 0.8), (True, 1.05), (False, 1.5)],
    ids=["progress", "within the margin", "rule off"],
)
def test_a_stage_is_not_trained_again_unless_it_clearly_lost_ground_and_the_rule_is_on(rule, end):
    config = small_config(restart_on_no_progress=True) if rule else small_config()
    controller = to_first_stage(config)
    command = controller.pending
    stage = controller.history[0]
    start = stage.start_loss
    losses = rising(command.steps, stage.trial_steps, start, end * start)
    controller.report(Report(seq=command.seq, losses=losses))
    assert stage.restarts == []
    assert controller.update_steps == command.steps


def test_a_stage_judged_by_the_validation_loss_is_compared_with_its_validation_start():
    config = small_config(restart_on_no_progress=True, stage_steps=80, max_stage_steps=80)
    controller = to_first_stage(config, validation=True)
    command = controller.pending
    stage = controller.history[0]
    assert stage.metric == "val"
    start = max(c.losses[0] for c in stage.candidates)  # the first validation losses
    # Training losses fall, but the validation loss measured at the end is far above the start.
    reply = controller.report(
        Report(seq=command.seq, losses=[0.1] * command.steps, val_losses=[1.5 * start])
    )
    assert stage.restarts and stage.restarts[0].reason == "no_progress"
    assert kinds(reply) == ["Restore", "Train"]


def test_without_warmup_the_first_stages_reference_is_the_largest_of_the_first_losses():
    def first_losses_vary(command: Train) -> list[float]:
        return [0.5, 2.0, 1.5, 1.0, 0.9, 0.1] + [0.05] * (command.steps - 6)

    controller = Controller(small_config(stage_steps=24, trial_fraction=0.25), validation=False)
    command = controller.start()[-1]
    controller.report(answer(command, first_losses_vary))
    stage = controller.history[0]
    assert stage.reference_loss == 2.0  # not 0.5, the very first one; not the later 0.1s
    assert controller.pending.abort_above == pytest.approx(
        2.0 * controller.config.divergence_factor
    )


def test_noisy_training_losses_must_rise_by_more_than_their_standard_error():
    # The stage ends 60% above its start, but every single loss, in the trials too, scatters
    # by ±scatter: by chance alone, as a noisy quadratic with one sample per step gives. The
    # same climb with little scatter restarts.
    def outcome(scatter: float) -> list:
        rng = np.random.default_rng(0)

        def noisy(command: Train) -> list[float]:
            curve = np.array(bowl_curve(command.lr, command.steps))
            return list(curve + rng.choice([-scatter, scatter], size=command.steps))

        controller = Controller(small_config(restart_on_no_progress=True), validation=False)
        controller.start()
        while controller.phase != "stage":
            controller.report(answer(controller.pending, noisy))
        command = controller.pending
        stage = controller.history[0]
        start = stage.start_loss
        losses = np.array(rising(command.steps, stage.trial_steps, start, 1.6 * start))
        losses += rng.choice([-scatter, scatter], size=command.steps)
        controller.report(Report(seq=command.seq, losses=list(losses)))
        return stage.restarts

    assert outcome(2.0) == []
    assert [restart.reason for restart in outcome(0.01)] == ["no_progress"]


def settling_config(**changes) -> AutoLRSConfig:
    base = dict(
        total_steps=600,
        cooldown_fraction=0.2,
        budget_includes_search=True,
        search_window=3.0,
        stop_search_when_settled=True,
    )
    return small_config(**{**base, **changes})


def favour(lrs: set[float]) -> LossFn:
    """The bowl, with every LR outside ``lrs`` half a unit worse: one of them always wins."""

    def loss_fn(command: Train) -> list[float]:
        offset = 0.0 if command.lr in lrs else 0.5
        return [x + offset for x in bowl_curve(command.lr, command.steps)]

    return loss_fn


def first_stage_lr(config: AutoLRSConfig) -> float:
    controller = Controller(config, validation=False)
    run(controller, config.num_candidates)
    return controller.history[0].chosen_lr


def test_once_a_stage_keeps_its_anchor_the_rest_before_the_cooldown_trains_at_it_unsearched():
    config = settling_config()
    anchor = first_stage_lr(config)
    controller = Controller(config, validation=False)
    carried = run_until_finished(controller, favour({anchor}))

    first, second, settled, cooldown = controller.history[:4]
    assert not first.settled and second.anchor_lr == second.chosen_lr == anchor
    assert len(second.candidates) == config.num_candidates
    assert settled.settled and settled.candidates == [] and settled.chosen_lr == anchor
    assert settled.search_range is None and settled.final_loss is not None
    # It runs up to the cooldown, which keeps its share; the budget is spent exactly.
    search_end = config.total_steps - config.cooldown_steps
    assert settled.start_total_step + settled.stage_steps == search_end
    assert cooldown.cooldown and cooldown.stage_steps == config.cooldown_steps
    assert sum(command.steps for command in carried) == config.total_steps
    commands = [c for c in carried if c.phase == "stage" and c.end_lr == c.lr]
    assert commands[-1].steps == settled.stage_steps and commands[-1].lr == anchor
    # What the skipped trials would have cost was trained instead.
    unsettled = Controller(config.replace(stop_search_when_settled=False), validation=False)
    run_until_finished(unsettled, favour({anchor}))
    assert controller.search_steps < unsettled.search_steps
    assert controller.update_steps - unsettled.update_steps == (
        unsettled.search_steps - controller.search_steps
    )
    assert controller.schedule()[:3] == unsettled.schedule()[:3]


def test_a_search_that_moves_off_its_anchor_goes_on_to_the_cooldown():
    config = settling_config()
    # Each stage's winner is an LR other than the previous stage's: never settled.
    controller = Controller(config, validation=False)
    chosen: set[float] = set()

    def anchor_loses(command: Train) -> list[float]:
        offset = 0.5 if command.lr in chosen else 0.0
        return [x + offset for x in bowl_curve(command.lr, command.steps)]

    pending = controller.start()[-1]
    while not controller.finished:
        pending = controller.report(answer(pending, anchor_loses))[-1]
        chosen.update(s.chosen_lr for s in controller.history[:-1] if s.chosen_lr)
    trained = [s for s in controller.history if s.final_loss is not None]
    assert len(trained) >= 4 and trained[-1].cooldown
    assert not any(s.settled for s in controller.history)
    assert all(s.candidates for s in trained[:-1])


@pytest.mark.parametrize(
    "changes",
    [{"search_window": None}, {"cooldown_fraction": 0.0}, {"stop_search_when_settled": False}],
)
def test_settling_needs_a_window_and_a_cooldown(changes):
    config = settling_config(**changes)
    anchor = first_stage_lr(config)
    controller = Controller(config, validation=False)
    run_until_finished(controller, favour({anchor}))
    assert not any(s.settled for s in controller.history)
    trained = [s for s in controller.history if s.final_loss is not None and not s.cooldown]
    assert len(trained) >= 3 and all(s.candidates for s in trained)


def test_a_settled_stage_that_diverges_is_rolled_back_and_searched_after_all():
    config = settling_config()
    anchor = first_stage_lr(config)
    favoured = favour({anchor})

    def settled_explodes(command: Train) -> list[float]:
        if command.phase == "stage" and controller.history[-1].settled:
            return favoured(command)[:5] + [math.inf]
        return favoured(command)

    controller = Controller(config, validation=False)
    carried = run_until_finished(controller, settled_explodes)
    stage = controller.history[2]
    assert not stage.settled and stage.anchor_lr is None
    assert [(r.lr, r.steps, r.reason) for r in stage.restarts] == [(anchor, 6, "non_finite")]
    # Searched in the window around the LR that failed, which is not tried again.
    low, high = stage.search_range
    assert low == pytest.approx(anchor / 3) and high == pytest.approx(min(1.0, anchor * 3))
    assert len(stage.candidates) == config.num_candidates
    assert anchor not in {c.lr for c in stage.candidates}
    assert stage.chosen_lr != anchor and stage.final_loss is not None
    trained = [s for s in controller.history if s.final_loss is not None]
    assert trained[-1].cooldown and trained[-1].stage_steps == config.cooldown_steps
    assert carried[-1].end_lr == 0.0
    assert controller.update_steps + controller.search_steps == config.total_steps


def test_a_settled_stage_survives_a_state_round_trip():
    config = settling_config()
    anchor = first_stage_lr(config)
    controller = Controller(config, validation=True)
    pending = controller.start()[-1]
    while not controller.history[-1].settled:
        pending = controller.report(answer(pending, favour({anchor})))[-1]
    restored = Controller.from_state_dict(json.loads(json.dumps(controller.state_dict())))
    assert restored.history == controller.history and restored.history[-1].settled
    report = answer(pending, favour({anchor}))
    assert restored.report(report) == controller.report(report)
    assert restored.history == controller.history


@pytest.mark.parametrize(("rise", "searched_again"), [(1.5, True), (1.05, False)])
def test_a_settled_stage_judged_by_validation_is_compared_with_the_previous_stages_end(
    rise, searched_again
):
    config = settling_config(
        total_steps=1000, stage_steps=80, max_stage_steps=80, restart_on_no_progress=True
    )
    anchor = first_stage_lr(config)
    controller = Controller(config, validation=True)
    pending = controller.start()[-1]
    while not controller.history[-1].settled:
        pending = controller.report(answer(pending, favour({anchor})))[-1]
    previous, stage = controller.history[-2:]
    assert previous.metric == stage.metric == "val" and previous.final_loss is not None
    losses = favour({anchor})(pending)
    reply = controller.report(
        Report(seq=pending.seq, losses=losses, val_losses=[rise * previous.final_loss])
    )
    if searched_again:
        assert [r.reason for r in stage.restarts] == ["no_progress"] and not stage.settled
        assert kinds(reply) == ["Restore", "Train"] and reply[-1].phase == "trial"
    else:
        assert not stage.restarts and stage.settled and stage.final_loss is not None
        assert controller.history[-1].cooldown
