#!/usr/bin/env bash
# Runs every `go test -fuzz` target of the module for the given time each (default 5s).
# Targets are discovered with `go test -list`, so a new Fuzz function is picked up without
# editing this script. A crash leaves its input under the package's testdata/fuzz/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
pkgs=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
for pkg in $pkgs; do
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" > "$log" 2>&1 || { cat "$log"; exit 1; }
  done
done
echo "fuzz: all targets passed"
