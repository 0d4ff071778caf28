#!/usr/bin/env bash
# End-to-end demo against a real FHIR R4 server on 127.0.0.1 with a fresh database: SEKMET by
# default, HAPI FHIR with SERVER=hapi (`make demo SERVER=hapi`):
#   convert the example case to a transaction Bundle, validate it, push the case to the server,
#   pull it back by patient id and compare it with the original ("round-trip verdict: identical").
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

step "fhir-plao push $CASE --server $URL"
"$CLI" push "$CASE" --server "$URL" | tee "$OUT/push.txt"

# The patient's server id: as printed by push ("Patient/<id>"), else from the bundle's Patient
# entry when it is written with a client id (request.url "Patient/<id>").
PATIENT_ID="$("$PY" - "$OUT/push.txt" "$OUT/plao-bundle.json" <<'EOF'
import json, re, sys

ID = r"[A-Za-z0-9\-.]{1,64}"
text = open(sys.argv[1], encoding="utf-8").read()
m = re.search(rf"\bPatient/({ID})\b", text)
if m:
    print(m.group(1))
    sys.exit(0)
bundle = json.load(open(sys.argv[2], encoding="utf-8"))
for entry in bundle.get("entry", []):
    if (entry.get("resource") or {}).get("resourceType") != "Patient":
        continue
    url = (entry.get("request") or {}).get("url", "")
    m = re.fullmatch(rf"Patient/({ID})", url)
    if m:
        print(m.group(1))
        sys.exit(0)
sys.exit("demo: no patient id in push's output nor in the bundle's Patient entry")
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
