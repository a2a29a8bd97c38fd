"""The HTML report renders in a real headless Chromium, figures included.

Needs Debian's ``chromium`` package. When ``/usr/bin/chromium`` is missing the test installs it
with ``apt-get install -y chromium`` (as root, where apt-get exists), and skips, saying why,
only when that fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autolrs.reporting import write_report

pytest.importorskip("matplotlib")

WIDTH, HEIGHT = 1280, 2400
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The schedule's chosen-LR line and the table's error colours: drawn only when the embedded
# figures decode, so counting them tells a rendered figure from a broken image.
CHOSEN_RED = np.array([0xC0, 0x39, 0x2B]) / 255


def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("chromium is missing and cannot be installed here (no apt-get, or not root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "chromium"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:  # perhaps no package lists yet
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("chromium")
    if found is None:
        pytest.skip(
            f"chromium is not installable: 'apt-get install -y chromium' exited "
            f"{result.returncode}: {result.stderr.strip()[-300:]}"
        )
    return found


def screenshot(page: Path, out: Path, profile: Path) -> np.ndarray:
    from matplotlib.image import imread

    command = [
        chromium(),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.is_file(), (
        f"chromium wrote no screenshot (exit {result.returncode}):\n" + (result.stderr[-2000:])
    )
    return imread(out)[..., :3]  # RGB floats in [0, 1]


def test_the_report_renders_in_headless_chromium(recorded_run, tmp_path):
    files = write_report(recorded_run.log, tmp_path / "report")
    image = screenshot(files.html, tmp_path / "shot.png", tmp_path / "profile")

    assert image.shape == (HEIGHT, WIDTH, 3)
    assert float(image.std()) > 0.05, "the screenshot is blank"
    background = np.all(np.abs(image - image[5, 5]) < 0.02, axis=-1)
    assert background.mean() < 0.9, "almost nothing was drawn"
    red = np.all(np.abs(image - CHOSEN_RED) < 0.06, axis=-1)
    assert red.sum() > 500, "the embedded figures did not render"
