#!/usr/bin/env bash
# Install autolrs, then run `autolrs demo` with the arguments given (see --help).
# Results go to ./autolrs-demo relative to the current directory unless --out says otherwise.
set -euo pipefail

bash "$(dirname "${BASH_SOURCE[0]}")/install.sh"
exec python3 -m autolrs demo "$@"
