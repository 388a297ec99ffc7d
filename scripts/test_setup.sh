#!/usr/bin/env bash
# Extra set-up for `make test`: optional system pieces (headless Chromium for the browser tests,
# a Jupyter kernel for the notebook tests). Each step may fail; the tests that need it then skip.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
for step in "$here"/install_chromium.sh "$here"/register_kernel.sh; do
  [ -f "$step" ] && { bash "$step" || echo "warning: $(basename "$step") failed; dependent tests will skip"; }
done
exit 0
