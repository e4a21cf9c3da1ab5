#!/bin/bash
# The test command (README, .ci/run): set-up, typecheck, lint, import direction, then every test.
# `test/run.sh unit` or `test/run.sh integration` (npm run test:unit, test:integration): set-up,
# then that half only.
set -euo pipefail
cd "$(dirname "$0")/.."
only="${1:-all}"
case "$only" in
  all | unit | integration) ;;
  *) echo "usage: test/run.sh [unit|integration]" >&2; exit 2 ;;
esac
bash test/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$only" = all ]; then
  echo "== typecheck";  npx tsc -p tsconfig.json --noEmit
  echo "== lint";       npx eslint src test
  echo "== imports";    npx depcruise src --config .dependency-cruiser.cjs --output-type err
fi

unit=$(find dist/test/unit -name '*.test.js' | sort)
# Tests that read or change the kernel log and its printk rate limit (global to the machine)
# run one file at a time after the others; they say so in their first line.
kernel_log=$(grep -l '^// test-group: kernel-log' test/integration/*.test.ts | sed 's#^test/#dist/test/#; s#\.ts$#.js#' | sort)
integration=$(find dist/test/integration -name '*.test.js' | sort | grep -vxF "$kernel_log")
if [ "$only" != integration ]; then
  echo "== unit tests"
  # shellcheck disable=SC2086
  node --test --test-concurrency=2 --test-reporter=spec $unit
fi
if [ "$only" != unit ]; then
  echo "== integration tests (real registry, containerd, runc)"
  # shellcheck disable=SC2086
  node --test --test-concurrency=2 --test-reporter=spec $integration
  echo "== integration tests that share the kernel log (one at a time)"
  # shellcheck disable=SC2086
  node --test --test-concurrency=1 --test-reporter=spec $kernel_log
fi
