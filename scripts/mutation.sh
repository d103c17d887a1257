#!/usr/bin/env bash
# Mutation testing of the boundary code, on demand (not part of CI).
#   scripts/mutation.sh --max-children 1 'relayrouter.core.pairs.*'   one module's mutants, on one core
#   scripts/mutation.sh                         every module listed under [tool.mutmut] in pyproject.toml
# mutmut breaks one line at a time (a comparison, a constant, a boolean
# operator...) in the authentication methods, the failed-login limiter,
# authorization, revocation and the pairs' fence, runs the tests that reach
# that line, and reports each mutant no test noticed.  Results stay in
# mutants/ (ignored by git): a second run only redoes what changed.
# `mutmut show NAME` prints a survivor's diff; `mutmut browse` walks them.
# The relay's access and scope checks and the IoT agent's provisioning are
# broken by hand instead: scripts/handmade_mutants.py.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import mutmut" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --config-settings editable_mode=strict -e '.[test,mutation]'
fi
"$PYTHON" -m mutmut run "$@" || true   # the survivors are the report, not a failure
"$PYTHON" -m mutmut results
