"""Tests of the benchmark tasks: specs, registry, data loading, and every task's smoke variant."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from autolrs.bench.tasks import (
    TASK_NAMES,
    VARIANTS,
    TaskDataError,
    TaskSpec,
    fashion_mnist,
    get_task,
)
from autolrs.bench.tasks.common import EpochBatches, derive_generator
from autolrs.bench.tasks.corpus import CORPUS_PATH, CORPUS_SHA256, load_corpus
from autolrs.bench.tasks.nqm import NQMInstance, NQMTask
from autolrs.errors import AutoLRSError, ConfigError

FMNIST_TASKS = ("fmnist-mlp", "fmnist-cnn")
_FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def _fmnist_present() -> bool:
    directory = fashion_mnist.data_dir()
    return all(
        (directory / name).is_file() or (directory / f"{name}.gz").is_file()
        for name in _FMNIST_FILES
    )


requires_fmnist = pytest.mark.skipif(
    not _fmnist_present(),
    reason=f"Fashion-MNIST idx files not found in {fashion_mnist.data_dir()}: install them with "
    "`apt-get update && apt-get install -y dataset-fashion-mnist` or set "
    f"{fashion_mnist.ENV_VAR}",
)


def _task_param(name: str) -> object:
    marks = [requires_fmnist] if name in FMNIST_TASKS else []
    return pytest.param(name, marks=marks, id=name)


ALL_TASKS = [_task_param(name) for name in TASK_NAMES]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Bit-identical results need a fixed thread count; restore the caller's afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _train(name: str, seed: int, steps: int, lr: float | None = None) -> list[float]:
    """Training losses of the first ``steps`` steps of the smoke variant at ``lr``."""
    task = get_task(name, "smoke")
    instance = task.build(seed)
    optimizer = instance.make_optimizer(lr or _middle_lr(task.spec))
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = instance.loss(instance.next_batch())
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _middle_lr(spec: TaskSpec) -> float:
    return spec.lr_grid[len(spec.lr_grid) // 2]


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


# -- registry and specs ------------------------------------------------------------------------


def test_task_names_are_the_five_documented_tasks() -> None:
    assert TASK_NAMES == ("nqm", "fmnist-mlp", "fmnist-cnn", "charlm", "teacher-student")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", TASK_NAMES)
def test_get_task_returns_spec_of_requested_name_and_variant(name: str, variant: str) -> None:
    spec = get_task(name, variant).spec

    assert (spec.name, spec.variant) == (name, variant)
    assert spec.optimizer in ("sgd", "adamw")
    assert spec.description


@pytest.mark.parametrize("name", TASK_NAMES)
def test_standard_spec_follows_protocol(name: str) -> None:
    spec = get_task(name).spec
    ratios = [high / low for low, high in zip(spec.lr_grid[:-1], spec.lr_grid[1:], strict=True)]

    assert all(2.9 < ratio < 3.4 for ratio in ratios), spec.lr_grid
    assert len(spec.lr_grid) >= 4
    assert 20 <= spec.budget // spec.eval_every <= 40
    assert spec.lr_range == (min(spec.lr_grid), max(spec.lr_grid))


def test_smoke_variant_is_much_shorter_than_standard() -> None:
    for name in TASK_NAMES:
        assert get_task(name, "smoke").spec.budget * 10 <= get_task(name).spec.budget


def test_charlm_warms_up_for_two_percent_of_budget() -> None:
    spec = get_task("charlm").spec

    assert spec.warmup_steps == round(0.02 * spec.budget)


def test_get_task_rejects_unknown_name_listing_valid_names() -> None:
    with pytest.raises(ConfigError, match="task name must be one of") as caught:
        get_task("cifar10")

    assert all(name in str(caught.value) for name in TASK_NAMES)
    assert "'cifar10'" in str(caught.value)


def test_get_task_rejects_unknown_variant_listing_valid_variants() -> None:
    with pytest.raises(ConfigError, match=r"variant must be one of \('standard', 'smoke'\)"):
        get_task("nqm", "quick")


def test_task_class_rejects_unknown_variant() -> None:
    with pytest.raises(ConfigError, match="task variant must be one of"):
        NQMTask("quick")


def test_get_task_rejects_non_string_name() -> None:
    with pytest.raises(ConfigError, match="task name"):
        get_task(["nqm"])  # type: ignore[arg-type]


def _spec(**changes: object) -> TaskSpec:
    fields: dict[str, object] = {
        "name": "toy",
        "version": 1,
        "variant": "standard",
        "budget": 100,
        "eval_every": 10,
        "lr_grid": (0.01, 0.03, 0.1),
        "warmup_steps": 0,
        "optimizer": "sgd",
        "optimizer_kwargs": {"momentum": 0.9},
        "description": "toy",
    }
    fields.update(changes)
    return TaskSpec(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "name must be a non-empty string"),
        ({"version": 0}, "version must be >= 1"),
        ({"variant": "quick"}, "variant must be one of"),
        ({"budget": 0}, "budget must be >= 1"),
        ({"eval_every": 101}, "eval_every must be <= budget=100"),
        ({"lr_grid": (0.1,)}, "lr_grid must hold at least 2"),
        ({"lr_grid": (0.1, -0.3)}, "lr_grid must hold at least 2 finite LRs > 0"),
        ({"lr_grid": (0.1, math.inf)}, "finite"),
        ({"lr_grid": (0.3, 0.1)}, "strictly ascending"),
        ({"warmup_steps": 100}, "warmup_steps must be < budget=100"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"optimizer": "adam"}, r"optimizer must be one of \('sgd', 'adamw'\), got 'adam'"),
        ({"optimizer_kwargs": [("momentum", 0.9)]}, "optimizer_kwargs must be a mapping"),
        ({"optimizer_kwargs": {"lr": 0.1}}, "must not hold 'lr'"),
        ({"budget": 10.5}, "budget must be an integer"),
    ],
)
def test_task_spec_rejects_invalid_field(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _spec(**changes)


def test_task_spec_is_frozen_hashable_and_its_kwargs_read_only() -> None:
    spec = _spec()

    with pytest.raises(AttributeError):
        spec.budget = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.optimizer_kwargs["momentum"] = 0.0  # type: ignore[index]
    assert hash(spec) == hash(_spec())


def test_task_spec_to_dict_is_json_round_trippable() -> None:
    spec = get_task("charlm").spec

    data = json.loads(json.dumps(spec.to_dict()))

    assert data["lr_grid"] == list(spec.lr_grid)
    assert data["optimizer_kwargs"]["betas"] == [0.9, 0.99]
    assert data["name"] == "charlm" and data["warmup_steps"] == spec.warmup_steps


# -- behaviour shared by every task (smoke variants) -------------------------------------------


@pytest.mark.parametrize("name", ALL_TASKS)
def test_build_gives_model_in_train_mode_with_valid_costs(name: str) -> None:
    task = get_task(name, "smoke")
    instance = task.build(0)

    assert instance.model.training
    assert instance.spec is task.spec
    assert 0.0 <= instance.probe_cost <= instance.val_cost
    assert math.isfinite(instance.val_loss())


@pytest.mark.parametrize("name", ALL_TASKS)
def test_training_at_middle_lr_lowers_validation_loss(name: str) -> None:
    task = get_task(name, "smoke")
    instance = task.build(0)
    optimizer = instance.make_optimizer(_middle_lr(task.spec))
    before = instance.val_loss()

    for _ in range(15):
        optimizer.zero_grad()
        instance.loss(instance.next_batch()).backward()
        optimizer.step()

    assert instance.val_loss() < 0.95 * before


@pytest.mark.parametrize("name", ALL_TASKS)
def test_same_seed_gives_bit_identical_losses(name: str) -> None:
    assert _train(name, seed=3, steps=6) == _train(name, seed=3, steps=6)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_different_seeds_give_different_losses(name: str) -> None:
    first, second = _train(name, seed=0, steps=3), _train(name, seed=1, steps=3)

    assert all(a != b for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("name", ALL_TASKS)
def test_build_does_not_touch_global_rng(name: str) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)

    get_task(name, "smoke").build(0)

    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_build_does_not_depend_on_global_rng(name: str) -> None:
    torch.manual_seed(1)
    first = _state(get_task(name, "smoke").build(0).model)
    torch.manual_seed(2)
    second = _state(get_task(name, "smoke").build(0).model)

    assert all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("name", ALL_TASKS)
@pytest.mark.parametrize("metric", ["val_loss", "probe_loss"])
def test_metric_keeps_mode_and_leaves_parameters_and_buffers_alone(name: str, metric: str) -> None:
    instance = get_task(name, "smoke").build(0)
    optimizer = instance.make_optimizer(_middle_lr(instance.spec))
    optimizer.zero_grad()
    instance.loss(instance.next_batch()).backward()
    optimizer.step()
    before = _state(instance.model)

    value = getattr(instance, metric)()

    assert instance.model.training
    after = _state(instance.model)
    assert all(torch.equal(before[key], after[key]) for key in before)
    instance.model.eval()
    assert getattr(instance, metric)() == value
    assert not instance.model.training


@pytest.mark.parametrize("name", ALL_TASKS)
def test_probe_loss_is_identical_across_calls_and_close_to_val_loss(name: str) -> None:
    instance = get_task(name, "smoke").build(0)

    probes = [instance.probe_loss() for _ in range(3)]

    assert probes[0] == probes[1] == probes[2]
    assert probes[0] == pytest.approx(instance.val_loss(), rel=0.25)


@pytest.mark.parametrize("name", ALL_TASKS)
def test_loss_is_zero_dim_with_gradient_for_every_parameter(name: str) -> None:
    instance = get_task(name, "smoke").build(0)

    loss = instance.loss(instance.next_batch())
    loss.backward()

    assert loss.dim() == 0
    assert all(p.grad is not None for p in instance.model.parameters())


@pytest.mark.parametrize("name", ALL_TASKS)
def test_make_optimizer_builds_spec_optimizer_at_given_lr(name: str) -> None:
    instance = get_task(name, "smoke").build(0)

    optimizer = instance.make_optimizer(0.0123)

    expected = torch.optim.SGD if instance.spec.optimizer == "sgd" else torch.optim.AdamW
    assert type(optimizer) is expected
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.0123
    for key, value in instance.spec.optimizer_kwargs.items():
        assert group[key] == value
    optimized = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in instance.model.parameters()}


@pytest.mark.parametrize("lr", [0.0, -0.1, math.nan, math.inf, True])
def test_make_optimizer_rejects_invalid_lr(lr: float) -> None:
    instance = get_task("nqm", "smoke").build(0)

    with pytest.raises(ConfigError, match="lr must be a finite number > 0"):
        instance.make_optimizer(lr)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_build_rejects_invalid_seed(seed: object) -> None:
    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        get_task("nqm", "smoke").build(seed)  # type: ignore[arg-type]


# -- shared pieces ---------------------------------------------------------------------------


def test_epoch_batches_cover_a_fresh_permutation_every_epoch() -> None:
    batches = EpochBatches(10, 3, derive_generator(0, "test"))

    epochs = [torch.cat([batches.next() for _ in range(3)]) for _ in range(2)]

    for epoch in epochs:
        assert len(set(epoch.tolist())) == 9
    assert not torch.equal(epochs[0], epochs[1])
    assert batches.epoch == 2


def test_epoch_batches_reject_batch_larger_than_data() -> None:
    with pytest.raises(ConfigError, match=r"batch_size must be in \[1, num_items=4\], got 5"):
        EpochBatches(4, 5, derive_generator(0, "test"))


def test_derived_generators_differ_by_purpose_and_seed() -> None:
    draws = [
        torch.rand(4, generator=derive_generator(seed, purpose)).tolist()
        for seed, purpose in [(0, "a"), (0, "b"), (1, "a")]
    ]

    assert torch.rand(4, generator=derive_generator(0, "a")).tolist() == draws[0]
    assert draws[0] != draws[1] and draws[0] != draws[2]


# -- nqm -------------------------------------------------------------------------------------


def _nqm(seed: int = 0) -> NQMInstance:
    instance = get_task("nqm", "smoke").build(seed)
    assert isinstance(instance, NQMInstance)
    return instance


def test_nqm_gradient_is_curvature_times_theta_plus_scaled_noise() -> None:
    instance = _nqm()
    noise = instance.next_batch()
    theta = instance.model.theta.detach().numpy().astype(np.float64)
    curvature = 1.0 / np.arange(1, instance.dimension + 1)

    instance.loss(noise).backward()

    expected = curvature * theta + np.sqrt(curvature / 1) * noise.numpy()
    np.testing.assert_allclose(instance.model.theta.grad.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_nqm_validation_loss_is_half_curvature_weighted_square_norm() -> None:
    instance = _nqm(seed=4)
    theta = instance.model.theta.detach().numpy().astype(np.float64)

    expected = 0.5 * np.sum(theta**2 / np.arange(1, instance.dimension + 1))

    assert instance.val_loss() == pytest.approx(expected, rel=1e-5)
    assert instance.probe_loss() == instance.val_loss()
    assert instance.val_cost == instance.probe_cost == 0.0


def test_nqm_sgd_matches_closed_form_expected_loss_recursion() -> None:
    """Mean final loss over seeds vs E θ²ₜ₊₁ = (1 − ηh)² E θ²ₜ + η²h/B, θ₀ ~ N(0, I)."""
    lr, steps, seeds = 0.5, 60, 24
    finals = []
    for seed in range(seeds):
        instance = _nqm(seed)
        optimizer = instance.make_optimizer(lr)
        for _ in range(steps):
            optimizer.zero_grad()
            instance.loss(instance.next_batch()).backward()
            optimizer.step()
        finals.append(instance.val_loss())

    expected = _nqm_expected_loss(instance.dimension, lr, steps, noise_variance=1.0)
    noiseless = _nqm_expected_loss(instance.dimension, lr, steps, noise_variance=0.0)

    standard_error = np.std(finals, ddof=1) / math.sqrt(seeds)
    assert abs(np.mean(finals) - expected) < 4 * standard_error
    # Tight enough to tell the noise covariance H from 0 or 2H (the noise adds ~0.7 here).
    assert 4 * standard_error < 0.5 * (expected - noiseless)


def _nqm_expected_loss(dimension: int, lr: float, steps: int, noise_variance: float) -> float:
    """Closed form of E L(θ_steps) under SGD with gradient noise covariance noise_variance·H."""
    curvature = 1.0 / np.arange(1, dimension + 1)
    second_moment = np.ones_like(curvature)
    for _ in range(steps):
        second_moment = (1 - lr * curvature) ** 2 * second_moment
        second_moment += noise_variance * lr**2 * curvature
    return float(0.5 * np.sum(curvature * second_moment))


def test_nqm_initial_loss_matches_its_expectation() -> None:
    losses = [_nqm(seed).val_loss() for seed in range(20)]

    expected = 0.5 * np.sum(1.0 / np.arange(1, 1001))

    assert np.mean(losses) == pytest.approx(expected, rel=0.05)


def test_nqm_standard_variant_has_ten_thousand_dimensions() -> None:
    instance = get_task("nqm").build(0)

    assert instance.model.theta.shape == (10_000,)
    assert instance.next_batch().shape == (10_000,)


# -- teacher-student -------------------------------------------------------------------------


def test_teacher_student_training_loss_is_excess_risk_plus_noise_floor() -> None:
    instance = get_task("teacher-student", "smoke").build(0)

    with torch.no_grad():
        train = np.mean([instance.loss(instance.next_batch()).item() for _ in range(200)])

    assert train == pytest.approx(instance.val_loss() + 0.5**2, abs=0.08)


def test_teacher_student_teacher_is_the_same_for_every_seed() -> None:
    first = get_task("teacher-student", "smoke").build(0)
    second = get_task("teacher-student", "smoke").build(1)

    assert torch.equal(first._val[1], second._val[1])
    assert first.val_loss() != second.val_loss()


# -- charlm and its corpus -------------------------------------------------------------------


def test_corpus_loads_with_documented_size_and_digest() -> None:
    corpus = load_corpus()

    assert corpus.dtype == torch.uint8
    assert len(corpus) == 2_983_134
    assert bytes(corpus[:26].tolist()) == b"# ==== __future__.py ====\n"


def test_corpus_file_is_under_a_megabyte_compressed() -> None:
    assert CORPUS_PATH.stat().st_size < 1_000_000


def test_corpus_with_wrong_digest_raises_naming_both_digests() -> None:
    with pytest.raises(TaskDataError, match=f"must have SHA-256 {'0' * 64}, got {CORPUS_SHA256}"):
        load_corpus(expected_sha256="0" * 64)


def test_corpus_edited_copy_fails_digest_check(tmp_path: Path) -> None:
    data = bytearray(gzip.decompress(CORPUS_PATH.read_bytes()))
    data[1000] ^= 1
    edited = tmp_path / "corpus.txt.gz"
    edited.write_bytes(gzip.compress(bytes(data)))

    with pytest.raises(TaskDataError, match="the file was changed or rebuilt"):
        load_corpus(edited)


def test_corpus_missing_file_raises_task_data_error(tmp_path: Path) -> None:
    with pytest.raises(TaskDataError, match="charlm corpus not found"):
        load_corpus(tmp_path / "absent.txt.gz")


def test_corpus_not_gzip_raises_task_data_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt.gz"
    broken.write_bytes(b"not gzip at all")

    with pytest.raises(TaskDataError, match="not readable gzip data"):
        load_corpus(broken)


def test_charlm_batches_are_byte_windows_of_the_training_part_only() -> None:
    instance = get_task("charlm").build(0)
    corpus = bytes(load_corpus().tolist())
    split = len(corpus) - int(len(corpus) * 0.025)

    batch = instance.next_batch()

    assert batch.shape == (16, 65) and batch.dtype == torch.int64
    for row in batch[:4]:
        assert corpus.find(bytes(row.tolist())) + 65 <= split


def test_charlm_validation_windows_tile_the_validation_part() -> None:
    instance = get_task("charlm").build(0)
    corpus = load_corpus()
    validation = corpus[len(corpus) - int(len(corpus) * 0.025) :]

    windows = instance._val_windows

    assert torch.equal(windows[0], validation[:65].long())
    assert torch.equal(windows[1, 0], validation[64].long())
    assert len(windows) == (len(validation) - 1) // 64


def test_charlm_initial_loss_is_near_uniform_over_bytes() -> None:
    instance = get_task("charlm", "smoke").build(0)

    assert instance.val_loss() == pytest.approx(math.log(256), rel=0.02)


# -- Fashion-MNIST -----------------------------------------------------------------------------


def test_fashion_mnist_missing_directory_names_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path / "nowhere"))

    with pytest.raises(AutoLRSError) as caught:
        get_task("fmnist-mlp", "smoke").build(0)

    message = str(caught.value)
    assert "dataset-fashion-mnist" in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert fashion_mnist.ENV_VAR in message
    assert isinstance(caught.value, TaskDataError)


def test_fashion_mnist_malformed_file_raises_task_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in _FMNIST_FILES:
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05"))
    monkeypatch.setenv(fashion_mnist.ENV_VAR, str(tmp_path))

    with pytest.raises(TaskDataError, match="must hold shape"):
        fashion_mnist.load_fashion_mnist()


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip", "raw"])
def test_fashion_mnist_idx_reader_accepts_gzip_and_raw_files(
    tmp_path: Path, compressed: bool
) -> None:
    values = np.arange(12, dtype=np.uint8)
    content = b"\x00\x00\x08\x03" + np.array([3, 2, 2], dtype=">i4").tobytes() + values.tobytes()
    path = tmp_path / ("images.gz" if compressed else "images")
    path.write_bytes(gzip.compress(content) if compressed else content)

    array = fashion_mnist._read_idx(path, expected_shape=(3, 2, 2))

    np.testing.assert_array_equal(array, values.reshape(3, 2, 2))


def test_fashion_mnist_idx_reader_rejects_wrong_type_code(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x0d\x01" + np.array([4], dtype=">i4").tobytes() + bytes(16))

    with pytest.raises(TaskDataError, match="not an idx file of unsigned bytes"):
        fashion_mnist._read_idx(path, expected_shape=(4,))


def test_fashion_mnist_falls_back_to_raw_file_when_no_gzip(tmp_path: Path) -> None:
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")

    found = fashion_mnist._find(tmp_path, "train-labels-idx1-ubyte")

    assert found == tmp_path / "train-labels-idx1-ubyte"


@requires_fmnist
def test_fashion_mnist_split_is_first_50k_train_last_10k_val_standardised() -> None:
    data = fashion_mnist.load_fashion_mnist()
    path = fashion_mnist.data_dir() / "train-labels-idx1-ubyte.gz"
    raw_labels = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=8)

    assert data.train_images.shape == (50_000, 1, 28, 28)
    assert data.val_images.shape == (10_000, 1, 28, 28)
    assert data.train_labels.tolist() == raw_labels[:50_000].tolist()
    assert data.val_labels.tolist() == raw_labels[50_000:].tolist()
    assert abs(float(data.train_images.mean())) < 1e-3
    assert float(data.train_images.std()) == pytest.approx(1.0, abs=1e-3)


@requires_fmnist
def test_fashion_mnist_is_read_once_per_process() -> None:
    assert fashion_mnist.load_fashion_mnist() is fashion_mnist.load_fashion_mnist()


@requires_fmnist
@pytest.mark.parametrize("name", FMNIST_TASKS)
def test_fashion_mnist_stream_reshuffles_every_epoch(name: str) -> None:
    instance = get_task(name, "smoke").build(0)
    per_epoch = 4096 // 128

    epochs = [torch.cat([instance.next_batch()[1] for _ in range(per_epoch)]) for _ in range(2)]

    assert torch.equal(torch.sort(epochs[0]).values, torch.sort(epochs[1]).values)
    assert not torch.equal(epochs[0], epochs[1])


# -- the training stream's state ---------------------------------------------------------------


def _flat(batch: object) -> torch.Tensor:
    parts = batch if isinstance(batch, tuple) else (batch,)
    return torch.cat([part.reshape(-1).to(torch.float64) for part in parts])


@pytest.mark.parametrize("name", ALL_TASKS)
def test_the_stream_replays_the_same_batches_from_a_saved_state(name: str) -> None:
    instance = get_task(name, "smoke").build(0)
    instance.next_batch()
    state = instance.stream.state_dict()
    first = [_flat(instance.next_batch()) for _ in range(4)]
    onward = _flat(instance.next_batch())

    instance.stream.load_state_dict(state)
    again = [_flat(instance.next_batch()) for _ in range(4)]

    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], first[1]) and not torch.equal(onward, first[-1])
    # The saved state is a copy: drawing on did not change it.
    instance.stream.load_state_dict(state)
    assert torch.equal(_flat(instance.next_batch()), first[0])


def test_epoch_batches_replay_across_an_epoch_boundary() -> None:
    stream = EpochBatches(10, 4, derive_generator(0, "test"))  # two batches an epoch
    stream.next()
    state = stream.state_dict()
    drawn = [stream.next() for _ in range(5)]  # into the fourth epoch
    epoch = stream.epoch

    stream.load_state_dict(state)
    assert stream.epoch == 1
    assert all(torch.equal(a, stream.next()) for a in drawn)
    assert stream.epoch == epoch
