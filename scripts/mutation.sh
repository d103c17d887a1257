#!/usr/bin/env bash
# Mutation testing of the boundary code, on demand (not part of CI).
#   scripts/mutation.sh                         every module listed under [tool.mutmut] in pyproject.toml
#   scripts/mutation.sh 'relayrouter.core.pairs*'   one module's mutants (mutmut's name globs)
# mutmut breaks one line at a time (a comparison, a constant, a boolean
# operator...) in the authorization, revocation, pairs, JWT, failed-login
# limiter and relay access/scope modules, runs the tests that reach that line,
# and reports each mutant no test noticed.  Results stay in mutants/ (ignored
# by git): a second run only redoes what changed.  `mutmut show NAME` prints a
# survivor's diff; `mutmut browse` walks them.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import mutmut" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --config-settings editable_mode=strict -e '.[test,mutation]'
fi
"$PYTHON" -m mutmut run "$@" || true   # the survivors are the report, not a failure
"$PYTHON" -m mutmut results
