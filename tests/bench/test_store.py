import json

from autolrs.bench.records import CurvePoint, RunKey, RunRecord
from autolrs.bench.store import RESULTS_FILE, ResultStore


def record(seed, extras=None):
    key = RunKey("fake", 1, "smoke", "cosine", 0.03, seed, "abc")
    curve = [CurvePoint(10, 20, 1.5, 0.1, 0.9), CurvePoint(20, 40, 3.0, 0.2, None)]
    return RunRecord(
        key,
        {"x": 1},
        curve,
        [[0, 19, 0.03, 0.0]],
        20,
        40,
        3.0,
        0.2,
        0.05,
        "diverged",
        extras or {},
    )


def test_a_record_survives_the_round_trip_through_the_file(tmp_path):
    store = ResultStore(tmp_path)
    original = record(0, {"losses": [1.0, float("nan"), float("inf")]})
    store.add(original)

    loaded = ResultStore(tmp_path).get(original.key)
    assert loaded is not None
    assert loaded.curve == original.curve
    assert loaded.key == original.key
    # JSON has no NaN: non-finite numbers in extras come back as None.
    assert loaded.extras == {"losses": [1.0, None, None]}
    assert loaded.final_val_loss is None


def test_finished_keys_are_known_to_a_new_store(tmp_path):
    ResultStore(tmp_path).add(record(0))
    again = ResultStore(tmp_path)
    assert record(0).key in again
    assert record(1).key not in again
    assert len(again) == 1


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_on_its_own_line(tmp_path):
    store = ResultStore(tmp_path)
    store.add(record(0))
    path = tmp_path / RESULTS_FILE
    with path.open("a") as handle:
        handle.write('{"key": {"task": "fa')  # the process died mid-write

    reopened = ResultStore(tmp_path)
    assert len(reopened) == 1
    reopened.add(record(1))
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[-1])["key"]["seed"] == 1
    assert len(ResultStore(tmp_path)) == 2


def test_refresh_reads_what_another_writer_appended_but_not_a_line_in_progress(tmp_path):
    mine, theirs = ResultStore(tmp_path), ResultStore(tmp_path)
    mine.add(record(0))
    assert record(0).key not in theirs
    assert theirs.refresh() == 1 and record(0).key in theirs
    assert theirs.refresh() == 0

    path = tmp_path / RESULTS_FILE
    line = json.dumps(record(1).to_dict())
    with path.open("a") as handle:
        handle.write(line[:20])  # the other writer is mid-line
    assert theirs.refresh() == 0 and record(1).key not in theirs
    with path.open("a") as handle:
        handle.write(line[20:] + "\n")
    assert theirs.refresh() == 1 and record(1).key in theirs
    theirs.add(record(2))
    assert mine.refresh() == 2 and len(mine) == 3
