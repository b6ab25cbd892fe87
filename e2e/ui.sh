#!/usr/bin/env bash
# Browser check of the Web UI's Start Workflow page against a real `posttrain dev`:
# build posttrain, start `posttrain dev` on free ports in a throw-away data directory
# (private PostgreSQL, Temporal + UI, worker), start a PostTraining run from the UI in
# headless Chromium with input {}, check it is running, then stop dev (Ctrl-C).
# Needs node >= 20 and Debian's chromium (apt-get install -y chromium).
# Env: OUT (screenshots, default e2e/out), CHROMIUM (default /usr/bin/chromium),
#      WORKFLOW_TYPE / TASK_QUEUE / INPUT to start something else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=${OUT:-$here/out}
work=$(mktemp -d)
chmod 755 "$work" # the private PostgreSQL runs as the postgres account under root

(cd "$repo" && go build -o "$work/posttrain" ./cmd/posttrain)
if [ ! -d "$here/node_modules/playwright-core" ]; then
	(cd "$here" && npm ci --no-audit --no-fund >/dev/null)
fi

POSTTRAIN_DATABASE_URL= "$work/posttrain" dev --json --data-dir "$work/data" --port 0 >"$work/dev.json" 2>"$work/dev.log" &
pid=$!
cleanup() {
	kill -INT "$pid" 2>/dev/null && wait "$pid" || true
	rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 360); do
	[ -s "$work/dev.json" ] && break
	kill -0 "$pid" 2>/dev/null || { cat "$work/dev.log" >&2; exit 1; }
	sleep 0.5
done
[ -s "$work/dev.json" ] || { echo "posttrain dev did not come up; its log:" >&2; cat "$work/dev.log" >&2; exit 1; }
ui=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).ui_url)' "$work/dev.json")
echo "posttrain dev is up: $ui ($(grep 'ready in' "$work/dev.log"))" >&2

cd "$here"
node start_workflow_ui.mjs --ui "$ui" \
	--workflow-type "${WORKFLOW_TYPE:-PostTraining}" --task-queue "${TASK_QUEUE:-posttrain}" \
	--input "${INPUT:-{\}}" --out "$out" --chromium "${CHROMIUM:-/usr/bin/chromium}"
