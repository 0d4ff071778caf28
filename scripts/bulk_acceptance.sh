#!/usr/bin/env bash
# Issue 5's acceptance check, by hand (minutes, so not part of `make test`):
#   push N synthetic cases, then the same N again: exactly N Patients, no duplicate resources;
#   then, on an empty server, a push killed halfway and restarted with --resume: the same counts.
# Usage: scripts/bulk_acceptance.sh [N]   (default 1000; needs `make install server-install`)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
PY=.venv/bin/python
CLI=.venv/bin/fhir-plao
STATE=.fhir-server/acceptance
WORK="$(mktemp -d)"
trap '"$PY" scripts/fhir_server.py stop --state-dir "$STATE" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT

URL="$("$PY" scripts/fhir_server.py start --port auto --state-dir "$STATE" --fresh)"
echo "server: $URL; cases: $N"
"$CLI" synth "$N" --seed 1000 -o "$WORK/cases.ndjson"

counts() {
    "$PY" - "$URL" <<'PY'
import sys
from fhir_plao.client import FhirClient
types = ["Patient", "Observation", "Condition", "DiagnosticReport", "MedicationStatement",
         "Procedure", "CarePlan"]
with FhirClient(sys.argv[1]) as fhir:
    print(" ".join(f"{t}={fhir.count(t)}" for t in types))
PY
}
expected() {
    "$PY" - "$WORK/cases.ndjson" <<'PY'
import collections, sys
from fhir_plao.case import case_from_json
from fhir_plao.mapping import to_fhir
c = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    for e in to_fhir(case_from_json(line))["entry"]:
        c[e["resource"]["resourceType"]] += 1
types = ["Patient", "Observation", "Condition", "DiagnosticReport", "MedicationStatement",
         "Procedure", "CarePlan"]
print(" ".join(f"{t}={c[t]}" for t in types))
PY
}

want="$(expected)"
echo "expected:            $want"
start=$(date +%s)
"$CLI" push "$WORK/cases.ndjson" --server "$URL" --concurrency 4 --no-progress \
    --journal "$WORK/one.journal.ndjson" --dead-letter "$WORK/one.dead.ndjson"
first="$(counts)"; echo "after the 1st push:  $first   ($(( $(date +%s) - start )) s)"
start=$(date +%s)
"$CLI" push "$WORK/cases.ndjson" --server "$URL" --concurrency 4 --no-progress \
    --journal "$WORK/two.journal.ndjson" --dead-letter "$WORK/two.dead.ndjson"
second="$(counts)"; echo "after the 2nd push:  $second   ($(( $(date +%s) - start )) s)"

"$PY" scripts/fhir_server.py reset --state-dir "$STATE" >/dev/null
"$CLI" push "$WORK/cases.ndjson" --server "$URL" --concurrency 4 --no-progress \
    --journal "$WORK/kill.journal.ndjson" --dead-letter "$WORK/kill.dead.ndjson" &
pid=$!
lines() { if [ -f "$1" ]; then wc -l < "$1"; else echo 0; fi; }
while [ "$(lines "$WORK/kill.journal.ndjson")" -lt $(( N / 2 )) ]; do
    sleep 0.2
done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
echo "killed after $(wc -l < "$WORK/kill.journal.ndjson") confirmed cases: $(counts)"
"$CLI" push "$WORK/cases.ndjson" --server "$URL" --concurrency 4 --no-progress --resume \
    --journal "$WORK/kill.journal.ndjson" --dead-letter "$WORK/kill.dead.ndjson"
resumed="$(counts)"; echo "after --resume:      $resumed"

status=0
for got in "$first" "$second" "$resumed"; do
    [ "$got" = "$want" ] || { echo "MISMATCH: $got != $want"; status=1; }
done
[ $status -eq 0 ] && echo "acceptance: OK ($N cases; counts as expected after each run)"
exit $status
