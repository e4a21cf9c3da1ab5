#!/bin/bash
# npm run bench [-- --json] [-- --quick] [-- --only merge,pull,cli,shim]: set-up as the tests do, then the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash test/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"
exec node --expose-gc dist/test/bench/bench.js "$@"
