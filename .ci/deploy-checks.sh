#!/usr/bin/env bash
# Offline checks for deploy/: the systemd unit, the Kubernetes manifests (and
# overlays) and the container recipe. Installs what it needs on a fresh Debian/Ubuntu machine
# (apt-get, as root) and is quick when it is already there.
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

echo "systemd-analyze: $(systemd-analyze --version | head -n1)"
echo "kubernetes-validate: $("$KV" --version) ($KV)"

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

# Each overlay: every file it names exists, and, when kustomize (or kubectl,
# which embeds it) is installed, its rendered output validates strictly, so
# the partial patches are checked in the objects they produce.
check_k8s_overlays() {
    local dir name refs ref missing render out rc kv_args=(--strict)
    [[ -n ${KUBERNETES_VERSION:-} ]] && kv_args+=(-k "$KUBERNETES_VERSION")
    if command -v kustomize >/dev/null 2>&1; then
        render=(kustomize build)
    elif command -v kubectl >/dev/null 2>&1; then
        render=(kubectl kustomize)
    else
        render=()
    fi
    shopt -s nullglob
    for dir in "$K8S_DIR"/overlays/*/; do
        dir=${dir%/}
        name=$(basename "$dir")
        missing=()
        refs=$(sed -nE 's/^[[:space:]]*-[[:space:]]*(path:[[:space:]]*)?([^[:space:]#]+).*/\2/p' "$dir/kustomization.yaml")
        while read -r ref; do
            [[ -z $ref || -e $dir/$ref ]] || missing+=("$ref")
        done <<<"$refs"
        if [[ ${#missing[@]} -gt 0 ]]; then
            fail k8s-overlay "$name: kustomization.yaml names missing ${missing[*]}"
            continue
        fi
        if [[ ${#render[@]} -eq 0 ]]; then
            pass k8s-overlay "$name: files present (render skipped: no kustomize or kubectl)"
            continue
        fi
        rc=0
        out=$("${render[@]}" "$dir" 2>&1 >"$tmp/overlay-$name.yaml") || rc=$?
        if [[ $rc -ne 0 ]]; then
            fail k8s-overlay "$name: ${render[*]} failed (exit $rc)"
            show "$out"
            continue
        fi
        rc=0
        out=$("$KV" "${kv_args[@]}" "$tmp/overlay-$name.yaml" 2>&1) || rc=$?
        if [[ $rc -eq 0 ]] && ! grep -qE '^(WARN|ERROR)' <<<"$out"; then
            pass k8s-overlay "$name: rendered with ${render[*]}, $(grep -c '^kind:' "$tmp/overlay-$name.yaml") objects valid"
        else
            fail k8s-overlay "$name: rendered output (exit $rc)"
            show "$out"
        fi
    done
    shopt -u nullglob
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
check_k8s_overlays
check_no_subpath
check_toml
check_dockerfile

if [[ $failures -gt 0 ]]; then
    echo "deploy-checks: $failures check(s) FAILED"
    exit 1
fi
echo "deploy-checks: all checks passed"
