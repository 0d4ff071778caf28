#!/usr/bin/env bash
# End-to-end demo against a real FHIR R4 server on 127.0.0.1 with a fresh database: SEKMET by
# default, HAPI FHIR with SERVER=hapi (`make demo SERVER=hapi`):
#   convert the example case to a transaction Bundle, validate it, push the case to the server,
#   pull it back by patient id and compare it with the original ("round-trip verdict: identical"),
#   and draw its T- and Z-scores straight from the server (out/bmd.svg).
# The server is always stopped at the end; the script exits non-zero if any step failed.
# Run it with `make demo` (which installs the project venv and the server first).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PY="$ROOT/.venv/bin/python"
CLI="$ROOT/.venv/bin/fhir-plao"
STATE_DIR="$ROOT/.fhir-server/demo"
CASE="examples/plao-case.json"
OUT="out"
FHIR_PORT="${FHIR_PORT:-auto}"
SERVER="${SERVER:-sekmet}"

step() { printf '\n==> %s\n' "$*" >&2; }

for f in "$PY" "$CLI"; do
    [[ -x "$f" ]] || { echo "demo: $f missing: run 'make demo' (or 'make install')" >&2; exit 1; }
done
[[ -f "$CASE" ]] || { echo "demo: $CASE missing" >&2; exit 1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    step "stopping the FHIR server"
    "$PY" scripts/fhir_server.py stop --state-dir "$STATE_DIR" || rc=1
    if [[ $rc -eq 0 ]]; then
        printf '\ndemo: all steps passed\n' >&2
    else
        printf '\ndemo: FAILED (exit %s); server log: %s/server.log\n' "$rc" "$STATE_DIR" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "starting $SERVER (fresh database) in $STATE_DIR"
URL="$("$PY" scripts/fhir_server.py start --server "$SERVER" --port "$FHIR_PORT" \
    --state-dir "$STATE_DIR" --fresh)"
echo "FHIR server: $URL" >&2

mkdir -p "$OUT"

step "fhir-plao convert $CASE -o $OUT/plao-bundle.json"
"$CLI" convert "$CASE" -o "$OUT/plao-bundle.json"

if "$CLI" validate --help >/dev/null 2>&1; then
    step "fhir-plao validate $OUT/plao-bundle.json"
    "$CLI" validate "$OUT/plao-bundle.json"
else
    step "skipping validation: this fhir-plao has no 'validate' subcommand"
fi

step "fhir-plao push $CASE --server $URL --format json > $OUT/push.json"
"$CLI" push "$CASE" --server "$URL" --format json > "$OUT/push.json"

# The patient's server id, and a line for people, from push's JSON result.
PATIENT_ID="$("$PY" - "$OUT/push.json" <<'EOF'
import json, sys

result = json.load(open(sys.argv[1], encoding="utf-8"))
print(
    f"pushed {result['resources']} resources in {result['transactions']} transaction(s): "
    f"{result['created']} created, {result['updated']} updated",
    file=sys.stderr,
)
patient = next((e for e in result["entries"] if e.get("field") == "patient"), None)
if patient is None or "server_id" not in patient:
    sys.exit("demo: push's result names no server id for the patient")
print(patient["server_id"].split("/", 1)[1])
EOF
)"
echo "patient id: $PATIENT_ID" >&2

step "fhir-plao pull --server $URL --patient $PATIENT_ID -o $OUT/pulled-case.json --expect $CASE"
"$CLI" pull --server "$URL" --patient "$PATIENT_ID" -o "$OUT/pulled-case.json" --expect "$CASE" \
    | tee "$OUT/pull.txt"
grep -q "round-trip verdict: identical" "$OUT/pull.txt" || {
    echo "demo: pull did not report 'round-trip verdict: identical'" >&2
    exit 1
}

step "fhir-plao plot --server $URL --patient $PATIENT_ID -o $OUT/bmd.svg"
"$CLI" plot --server "$URL" --patient "$PATIENT_ID" -o "$OUT/bmd.svg"
