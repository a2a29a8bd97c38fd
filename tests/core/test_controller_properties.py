"""Properties of the controller under arbitrary losses, finite or not (hypothesis)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autolrs import AutoLRSConfig, DivergenceError
from autolrs.core import Controller, Report, Restore, Snapshot, Train

CONFIG = AutoLRSConfig(
    min_lr=1e-3,
    max_lr=1.0,
    stage_steps=20,
    max_stage_steps=40,
    trial_fraction=0.25,
    num_candidates=3,
    val_every=2,
    gp_fit_hyperparameters=False,
)

#: Loss values: ordinary ones, huge ones, and every kind of non-finite.
LOSS = st.one_of(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False),
    st.floats(min_value=-1e6, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)


def report_for(command: Train, values: list[float]) -> Report:
    """A valid report: ``values`` cycled over the steps, stopping where the command says."""
    losses: list[float] = []
    val_losses: list[float] = []
    for step in range(command.steps):
        loss = values[step % len(values)]
        losses.append(loss)
        if command.should_abort(loss):
            break
        if command.evaluates_after(step):
            val = values[(step * 7 + 3) % len(values)]
            val_losses.append(val)
            if not math.isfinite(val):
                break
    return Report(seq=command.seq, losses=losses, val_losses=val_losses)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    validation=st.booleans(),
    curves=st.lists(st.lists(LOSS, min_size=1, max_size=12), min_size=1, max_size=40),
)
def test_any_losses_keep_the_search_in_bounds_monotone_restored_and_serialisable(
    validation, curves
):
    controller = Controller(CONFIG, validation=validation)
    reply = controller.start()
    update_steps = 0
    trials_in_stage = 0

    for values in curves:
        # Every candidate starts from the stage snapshot: the first right after it is taken,
        # every later one right after a restore.
        command = reply[-1]
        if command.phase == "trial":
            expected = Snapshot if trials_in_stage == 0 else Restore
            assert isinstance(reply[-2], expected)
            trials_in_stage += 1
        elif command.phase == "stage":
            assert isinstance(reply[-2], Restore)
            assert CONFIG.min_lr <= command.lr <= CONFIG.max_lr

        # Compared as JSON text: a NaN loss in the state is never equal to itself as a float.
        text = json.dumps(controller.state_dict())
        assert json.dumps(Controller.from_state_dict(json.loads(text)).state_dict()) == text

        try:
            reply = controller.report(report_for(command, values))
        except DivergenceError:
            return  # every LR diverged, min_lr too: the one allowed way out
        if isinstance(reply[0], Snapshot):
            trials_in_stage = 0

        assert controller.update_steps >= update_steps
        update_steps = controller.update_steps
        for stage in controller.history:
            for candidate in stage.candidates:
                assert CONFIG.min_lr <= candidate.lr <= CONFIG.max_lr
                assert candidate.forecast is None or math.isfinite(candidate.forecast)
            if stage.chosen_lr is not None:
                assert CONFIG.min_lr <= stage.chosen_lr <= CONFIG.max_lr
    executed = controller.update_steps + controller.search_steps
    assert executed >= 0
