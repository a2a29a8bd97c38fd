#!/usr/bin/env bash
# Install autolrs (editable) with its test and development tools into the current python3.
#
# PyTorch is installed only when none can be imported, pinned to 2.13.0, the CPU build that
# this project's machines keep on disk: an unpinned torch would pull a multi-GB CUDA build.
# A torch the user already has is left alone. Safe to run again; prints only problems.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if ! python3 -c 'import torch' >/dev/null 2>&1; then
    echo "install.sh: no PyTorch found; installing torch==2.13.0 (CPU build)" >&2
    python3 -m pip install --quiet torch==2.13.0
fi
python3 -m pip install --quiet --editable ".[dev]"
