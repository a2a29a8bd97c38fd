#!/usr/bin/env bash
# Install autolrs, then run the whole test suite; extra arguments go to pytest.
set -euo pipefail

bash "$(dirname "${BASH_SOURCE[0]}")/install.sh"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec python3 -m pytest -q "$@"
