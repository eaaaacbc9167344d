#!/usr/bin/env bash
# Offline checks for deploy/: the systemd unit, the Kubernetes manifests (and
# overlays, rendered), the container recipe and the alerting pack (Prometheus
# rules and their unit tests, the Grafana dashboard, the monitoring
# component). Installs what it needs on a fresh Debian/Ubuntu machine
# (apt-get, pip download, as root) and is quick when it is already there; a
# failed install fails the run.
#
#   .ci/deploy-checks.sh            # from anywhere; exits non-zero on any FAIL
#
# Prints one line per check: "PASS <check>: detail" or "FAIL <check>: detail".
#
# Knobs (environment):
#   DEPLOY_CHECKS_CACHE   where the Python venv lives
#                         (default: ${XDG_CACHE_HOME:-$HOME/.cache}/linkfresh-deploy-checks)
#   MAX_EXPOSURE          highest allowed `systemd-analyze security` score (default 2.0)
#   KUBERNETES_VERSION    schema version for kubernetes-validate (default: its own)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

UNIT=deploy/systemd/linkfresh.service
K8S_DIR=deploy/kubernetes
RULES=deploy/monitoring/prometheus/linkfresh.rules.yml
RULE_TESTS=deploy/monitoring/prometheus/linkfresh.rules.test.yml
DASHBOARD=deploy/monitoring/grafana/linkfresh.json
PROMETHEUS_RULE=$K8S_DIR/components/monitoring/prometheusrule.yaml
DOCKERFILE=deploy/container/Dockerfile
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
KV_VERSION=1.37.0
CACHE=${DEPLOY_CHECKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/linkfresh-deploy-checks}

failures=0
pass() { printf 'PASS %s: %s\n' "$1" "$2"; }
fail() { printf 'FAIL %s: %s\n' "$1" "$2"; failures=$((failures + 1)); }
# Indent captured tool output under a FAIL line so the log shows why.
# shellcheck disable=SC2001 # prefixes every line; ${var//} cannot anchor at ^
show() { sed 's/^/    | /' <<<"$1"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- Tooling ------------------------------------------------------------------
apt_updated=0
apt_install() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to apt-get install $*" >&2
        return 1
    fi
    if [[ $apt_updated -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "installing systemd (for systemd-analyze)..."
    apt_install systemd
fi

# kubernetes-validate: use one on PATH, else a private venv (Debian's Python is
# "externally managed", so never pip install into it).
if command -v kubernetes-validate >/dev/null 2>&1; then
    KV=$(command -v kubernetes-validate)
elif [[ -x $CACHE/venv/bin/kubernetes-validate ]]; then
    KV=$CACHE/venv/bin/kubernetes-validate
else
    echo "installing kubernetes-validate $KV_VERSION into $CACHE/venv..."
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    mkdir -p "$CACHE"
    python3 -m venv "$CACHE/venv"
    "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
    KV=$CACHE/venv/bin/kubernetes-validate
fi

# promtool and kubectl (kustomize built in): never skipped, installed when missing.
if ! command -v promtool >/dev/null 2>&1 || ! kubectl kustomize --help >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "need root to install promtool and kubectl (.ci/install-monitoring-tools.sh)" >&2
        exit 1
    fi
    bash .ci/install-monitoring-tools.sh
    hash -r
fi
# A Python with PyYAML for splitting and comparing YAML: kubernetes-validate's own.
KV_PY=$(sed -n '1s/^#!//p' "$KV")
if [[ -z $KV_PY ]] || ! $KV_PY -c 'import yaml' 2>/dev/null; then
    KV_PY=python3
fi

echo "systemd-analyze: $(systemd-analyze --version | head -n1)"
echo "kubernetes-validate: $("$KV" --version) ($KV)"
echo "promtool: $(promtool --version 2>&1 | head -n1)"
echo "kubectl: $(kubectl version --client 2>&1 | head -n1) ($(command -v kubectl))"

# --- systemd: verify ----------------------------------------------------------
# `verify` insists that every Exec*= binary exists. Rather than editing the unit
# or planting files on the host, build a throwaway root: the host's own units
# (for sysinit.target & co), our unit, and a stub executable at each absolute
# Exec path the unit names. So the unit is verified byte for byte as shipped.
check_verify() {
    local root=$tmp/root out rc=0
    mkdir -p "$root/etc/systemd/system" "$root/usr/lib/systemd"
    local sysunits
    for sysunits in /usr/lib/systemd/system /lib/systemd/system; do
        if [[ -d $sysunits ]]; then
            cp -a "$sysunits" "$root/usr/lib/systemd/"
            break
        fi
    done
    cp "$UNIT" "$root/etc/systemd/system/"
    local exe
    while read -r exe; do
        mkdir -p "$root$(dirname "$exe")"
        install -m 0755 "$(type -P true)" "$root$exe"
    done < <(sed -nE 's/^Exec[A-Za-z]+=[-@:+!]*(\/[^ ]+).*/\1/p' "$UNIT" | sort -u)

    out=$(systemd-analyze verify --root="$root" "$(basename "$UNIT")" 2>&1) || rc=$?
    if [[ $rc -eq 0 && -z $out ]]; then
        pass systemd-verify "$UNIT: no diagnostics"
    else
        fail systemd-verify "$UNIT: exit $rc, output follows"
        show "$out"
    fi
}

# --- systemd: security exposure -----------------------------------------------
# --threshold is on systemd's internal 0..100 scale (default 100), i.e. ten
# times the printed 0.0..10.0 score: exposure <= 2.0 is --threshold=20. The
# printed score is also parsed and compared, so the check does not depend on it.
check_security() {
    local out rc=0 score threshold
    threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 + 0.5 }')
    out=$(systemd-analyze security --offline=yes --threshold="$threshold" "$UNIT" 2>&1) || rc=$?
    score=$(sed -nE 's/.*Overall exposure level for [^:]+: ([0-9]+\.[0-9]+).*/\1/p' <<<"$out")
    if [[ -z $score ]]; then
        fail systemd-security "$UNIT: no exposure score (exit $rc)"
        show "$out"
    elif [[ $rc -ne 0 ]] || awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
        fail systemd-security "$UNIT: exposure $score > $MAX_EXPOSURE (exit $rc)"
        show "$(grep '✗' <<<"$out" || true)"
    else
        pass systemd-security "$UNIT: exposure $score <= $MAX_EXPOSURE"
    fi
}

# --- Kubernetes ---------------------------------------------------------------
check_k8s_validate() {
    local f out rc kv_args=(--strict)
    [[ -n ${KUBERNETES_VERSION:-} ]] && kv_args+=(-k "$KUBERNETES_VERSION")
    shopt -s nullglob
    # Overlays: their own full objects (kustomization.yaml is no object; the
    # strategic-merge patches under patches/ are partial by nature and are
    # checked in the rendered output by check_k8s_overlays).
    local files=("$K8S_DIR"/manifests/*.yaml "$K8S_DIR"/manifests/*.yml
        "$K8S_DIR"/overlays/*/*.yaml "$K8S_DIR"/overlays/*/*.yml)
    shopt -u nullglob
    local kept=()
    for f in "${files[@]}"; do
        [[ $(basename "$f") == kustomization.y*ml ]] || kept+=("$f")
    done
    files=("${kept[@]}")
    if [[ ${#files[@]} -eq 0 ]]; then
        fail k8s-validate "no manifests under $K8S_DIR/manifests"
        return
    fi
    for f in "${files[@]}"; do
        rc=0
        out=$("$KV" "${kv_args[@]}" "$f" 2>&1) || rc=$?
        # A manifest with no known schema only warns; strict means fail on it too.
        if [[ $rc -eq 0 ]] && ! grep -qE '^(WARN|ERROR)' <<<"$out"; then
            pass k8s-validate "$f"
        else
            fail k8s-validate "$f (exit $rc)"
            show "$out"
        fi
    done
}

# kustomization.yaml must list exactly the plain manifests, so that
# `kubectl apply -k deploy/kubernetes` == `kubectl apply -f deploy/kubernetes/manifests`.
# manifests/Kustomization (the overlays' base; no .yaml extension so that
# `apply -f manifests` skips it) must list the same files.
check_kustomization() {
    local listed present base
    listed=$(sed -nE 's/^[[:space:]]*-[[:space:]]*(manifests\/[^[:space:]#]+).*/\1/p' "$K8S_DIR/kustomization.yaml" | sort)
    present=$(cd "$K8S_DIR" && find manifests -maxdepth 1 -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
    if [[ $listed == "$present" ]]; then
        pass k8s-kustomization "lists all $(wc -l <<<"$present") manifests"
    else
        fail k8s-kustomization "resources differ from files in $K8S_DIR/manifests"
        show "$(diff <(echo "$listed") <(echo "$present") || true)"
    fi
    if [[ -f $K8S_DIR/manifests/Kustomization ]]; then
        base=$(sed -nE 's/^[[:space:]]*-[[:space:]]*([^[:space:]#]+\.ya?ml).*/manifests\/\1/p' "$K8S_DIR/manifests/Kustomization" | sort)
        if [[ $base == "$present" ]]; then
            pass k8s-kustomization "manifests/Kustomization (overlay base) lists the same manifests"
        else
            fail k8s-kustomization "manifests/Kustomization differs from files in $K8S_DIR/manifests"
            show "$(diff <(echo "$base") <(echo "$present") || true)"
        fi
    fi
}

# Every kustomization renders, and what it renders validates: the base, the
# overlays' base (manifests/Kustomization), every overlay (the monitoring
# component through overlays/monitoring). Core objects go to
# kubernetes-validate --strict, so the partial patches are checked in the
# objects they produce; Prometheus Operator objects have no schema there: a
# PrometheusRule's spec goes to `promtool check rules` instead (the
# ServiceMonitor's selector and port are checked by tests/deploy/kustomize.rs).
check_k8s_render() {
    local dir name refs ref missing out rc kv_args=(--strict) dirs
    [[ -n ${KUBERNETES_VERSION:-} ]] && kv_args+=(-k "$KUBERNETES_VERSION")
    shopt -s nullglob
    dirs=("$K8S_DIR" "$K8S_DIR/manifests" "$K8S_DIR"/overlays/*/)
    shopt -u nullglob
    for dir in "${dirs[@]}"; do
        dir=${dir%/}
        name=${dir#"$K8S_DIR"}
        name=${name#/}
        name=${name:-base}
        missing=()
        if [[ -f $dir/kustomization.yaml ]]; then
            refs=$(sed -nE 's/^[[:space:]]*-[[:space:]]*(path:[[:space:]]*)?([^[:space:]#]+).*/\2/p' "$dir/kustomization.yaml")
            while read -r ref; do
                [[ -z $ref || -e $dir/$ref ]] || missing+=("$ref")
            done <<<"$refs"
        fi
        if [[ ${#missing[@]} -gt 0 ]]; then
            fail k8s-render "$name: kustomization.yaml names missing ${missing[*]}"
            continue
        fi
        local rendered=$tmp/render-${name//\//-}
        rc=0
        out=$(kubectl kustomize "$dir" 2>&1 >"$rendered.yaml") || rc=$?
        if [[ $rc -ne 0 ]]; then
            fail k8s-render "$name: kubectl kustomize failed (exit $rc)"
            show "$out"
            continue
        fi
        # Split: core objects, and each PrometheusRule's spec as a rules file.
        rc=0
        out=$($KV_PY - "$rendered" <<'PY' 2>&1
import sys, yaml
base = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(base + ".yaml")) if d]
core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
rules = [d for d in docs if d["kind"] == "PrometheusRule"]
yaml.safe_dump_all(core, open(base + ".core.yaml", "w"), sort_keys=False)
for i, r in enumerate(rules):
    yaml.safe_dump(r["spec"], open(f"{base}.rules-{i}.yml", "w"), sort_keys=False)
print(len(docs), len(core), len(rules))
PY
) || rc=$?
        if [[ $rc -ne 0 ]]; then
            fail k8s-render "$name: rendered output is not YAML objects"
            show "$out"
            continue
        fi
        local counts problems=0
        read -r -a counts <<<"$out"
        rc=0
        out=$("$KV" "${kv_args[@]}" "$rendered.core.yaml" 2>&1) || rc=$?
        if [[ $rc -ne 0 ]] || grep -qE '^(WARN|ERROR)' <<<"$out"; then
            fail k8s-render "$name: rendered objects do not validate (exit $rc)"
            show "$out"
            problems=1
        fi
        local rules_file
        for rules_file in "$rendered".rules-*.yml; do
            [[ -e $rules_file ]] || continue
            rc=0
            out=$(promtool check rules "$rules_file" 2>&1) || rc=$?
            if [[ $rc -ne 0 ]]; then
                fail k8s-render "$name: rendered PrometheusRule fails promtool check rules"
                show "$out"
                problems=1
            fi
        done
        if [[ $problems -eq 0 ]]; then
            pass k8s-render "$name: ${counts[0]} objects rendered, ${counts[1]} valid, ${counts[2]} PrometheusRule(s) pass promtool"
        fi
    done
}

# --- Alerting pack ------------------------------------------------------------
check_promtool() {
    local out rc=0
    out=$(promtool check rules "$RULES" 2>&1) || rc=$?
    if [[ $rc -eq 0 ]]; then
        pass promtool-check "$RULES: $(grep -oE '[0-9]+ rules found' <<<"$out")"
    else
        fail promtool-check "$RULES (exit $rc)"
        show "$out"
    fi
    rc=0
    # Rule files in the test file are relative to it.
    out=$(cd "$(dirname "$RULE_TESTS")" && promtool test rules "$(basename "$RULE_TESTS")" 2>&1) || rc=$?
    if [[ $rc -eq 0 ]]; then
        pass promtool-test "$RULE_TESTS"
    else
        fail promtool-test "$RULE_TESTS (exit $rc)"
        show "$out"
    fi
}

# The PrometheusRule must hold exactly the rules file's groups.
check_rule_drift() {
    local out rc=0
    out=$($KV_PY - "$RULES" "$PROMETHEUS_RULE" <<'PY' 2>&1
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
pr = yaml.safe_load(open(sys.argv[2]))
sys.exit(0 if pr["kind"] == "PrometheusRule" and pr["spec"] == rules else "groups differ")
PY
) || rc=$?
    if [[ $rc -eq 0 ]]; then
        pass rule-drift "$PROMETHEUS_RULE holds the groups of $RULES"
    else
        fail rule-drift "$PROMETHEUS_RULE differs from $RULES: copy its groups under spec:"
        show "$out"
    fi
}

check_dashboard() {
    local out rc=0
    out=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(sum(len(p.get("targets", [])) for p in d["panels"]))' "$DASHBOARD" 2>&1) || rc=$?
    if [[ $rc -eq 0 ]]; then
        pass dashboard-json "$DASHBOARD: $out queries"
    else
        fail dashboard-json "$DASHBOARD is not dashboard JSON"
        show "$out"
    fi
}

# The config must be mounted as a directory: a subPath mount never sees
# kubelet's `..data` swap, so config edits would silently never arrive.
check_no_subpath() {
    local hits
    hits=$(grep -rnE '^[[:space:]]*(-[[:space:]]*)?subPath(Expr)?:' "$K8S_DIR" || true)
    if [[ -z $hits ]]; then
        pass k8s-no-subpath "config reaches the pod through the ..data swap"
    else
        fail k8s-no-subpath "subPath mounts found"
        show "$hits"
    fi
}

# Both example configs must at least be valid TOML (the daemon's own
# `linkfresh check` is the full test; it needs a built binary). The ConfigMap's
# copy is the block under `linkfresh.toml: |`, un-indented.
check_toml() {
    local py
    py=$(command -v python3 || true)
    if [[ -z $py ]] || ! "$py" -c 'import tomllib' 2>/dev/null; then
        pass toml-syntax "skipped: needs python3 >= 3.11 (tomllib)"
        return
    fi
    awk '/^  linkfresh\.toml: \|/ { on = 1; next }
         on && /^  [^ ]/ { on = 0 }
         on { sub(/^    /, ""); print }' "$K8S_DIR/manifests/configmap.yaml" >"$tmp/configmap.toml"
    local f label out
    for f in deploy/systemd/linkfresh.toml "$tmp/configmap.toml"; do
        label=$f
        [[ $f == "$tmp/configmap.toml" ]] && label="$K8S_DIR/manifests/configmap.yaml (linkfresh.toml)"
        if [[ ! -s $f ]]; then
            fail toml-syntax "$label: empty or missing"
        elif out=$("$py" -c 'import sys, tomllib; tomllib.load(open(sys.argv[1], "rb"))' "$f" 2>&1); then
            pass toml-syntax "$label"
        else
            fail toml-syntax "$label"
            show "$(tail -n1 <<<"$out")"
        fi
    done
}

# --- Container ----------------------------------------------------------------
# No engine here to build it; check the contract the manifests rely on, and run
# hadolint too when it happens to be installed.
check_dockerfile() {
    local problems=()
    grep -qE '^ENTRYPOINT \["/linkfresh"\]$' "$DOCKERFILE" || problems+=('ENTRYPOINT ["/linkfresh"]')
    grep -qE '^CMD \["run", ?"--config", ?"/etc/linkfresh/linkfresh.toml"\]$' "$DOCKERFILE" ||
        problems+=('CMD ["run","--config","/etc/linkfresh/linkfresh.toml"]')
    grep -qE '^USER (65532|nonroot)' "$DOCKERFILE" || problems+=('USER 65532 (non-root)')
    [[ $(grep -cE '^FROM ' "$DOCKERFILE") -ge 2 ]] || problems+=('multi-stage build')
    if [[ ${#problems[@]} -eq 0 ]]; then
        pass dockerfile "$DOCKERFILE: entrypoint, cmd, non-root user, multi-stage"
    else
        fail dockerfile "$DOCKERFILE: missing ${problems[*]}"
    fi
    if command -v hadolint >/dev/null 2>&1; then
        local out rc=0
        out=$(hadolint "$DOCKERFILE" 2>&1) || rc=$?
        if [[ $rc -eq 0 ]]; then pass hadolint "$DOCKERFILE"; else fail hadolint "$DOCKERFILE"; show "$out"; fi
    fi
}

check_verify
check_security
check_k8s_validate
check_kustomization
check_k8s_render
check_no_subpath
check_toml
check_dockerfile
check_promtool
check_rule_drift
check_dashboard

if [[ $failures -gt 0 ]]; then
    echo "deploy-checks: $failures check(s) FAILED"
    exit 1
fi
echo "deploy-checks: all checks passed"
