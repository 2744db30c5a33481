#!/usr/bin/env bash
# A full mutation run (mutmut) of rtsr/video/, rtsr/tiling.py, rtsr/backends/ and train/train.py,
# in a temporary copy of the checkout: the working tree is never mutated. See mutation/README.md.
#
#   python3 -m pip install 'mutmut>=3.8,<4'
#   bash mutation/run.sh                          # every file setup.cfg names (hours on two cores)
#   bash mutation/run.sh rtsr/video/color.py      # only these files (globs as in only_mutate)
#   TESTS=tests/test_behaviour.py bash mutation/run.sh rtsr/video/color.py   # and only these tests
#
# Then, in the folder it prints: `mutmut results` (survivors), `mutmut show NAME` (a mutant's diff),
# `mutmut browse` (interactive). JOBS=N runs N mutants at a time (default 2).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${MUTATION_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/rtsr-mutation.XXXXXX")}
mkdir -p "$work/train"
cp -r "$repo/rtsr" "$repo/tests" "$repo/samples" "$repo/benchmarks" "$repo/pytest.ini" "$work/"
cp "$repo"/train/*.py "$work/train/"
cp -r "$repo/train/configs" "$work/train/"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
cp "$repo/mutation/setup.cfg" "$work/setup.cfg"
# only_mutate: the files given instead of setup.cfg's; TESTS: these tests instead of all of tests/
python3 - "$work/setup.cfg" "${TESTS:-}" "$@" <<'PY'
import re, sys
path, tests, globs = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
text = open(path).read()
for key, values in (("only_mutate", globs), ("pytest_add_cli_args_test_selection", tests)):
    if values:
        text = re.sub(key + r" =\n(    .*\n)+", key + " =\n" + "".join(f"    {v}\n" for v in values), text)
open(path, "w").write(text)
PY
echo "mutation run in $work"
cd "$work"
# the shipped weights (rtsr.weights) still come from the checkout's editable install
mutmut run --max-children "${JOBS:-2}" || true
mutmut results --all true > results.txt || true
# the score: killed (a test failed or timed out) out of those checked
awk -F': ' '{n[$2]++} END {for (s in n) print n[s], s; k = n["killed"] + n["timeout"];
  t = k + n["survived"] + n["no tests"]; if (t) printf "score: %d of %d killed (%.1f%%)\n", k, t, 100 * k / t}' results.txt
echo "every mutant's status: $work/results.txt; a survivor's diff: cd $work && mutmut show NAME"
