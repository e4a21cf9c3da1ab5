#!/bin/bash
# npm run demo: set-up as the tests do, then the end-to-end demo (test/demo/demo.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/setup.sh
export PATH="$PATH:/usr/sbin:/sbin"
exec node dist/test/demo/demo.js
