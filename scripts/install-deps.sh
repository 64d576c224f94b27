#!/usr/bin/env bash
# Install what zoocore's tests and tools need besides the Rust toolchain:
#   * Apache ZooKeeper 3.8.0 (Debian `zookeeper`, pulls OpenJDK 17) as the
#     reference server, plus the jars to start it from a plain `java -cp`
#     (slf4j-api + slf4j-log4j12 binding + log4j 1.2; see scripts/zk-classpath.sh).
#     Netty (libnetty-java, which libzookeeper-java pulls in) for its Netty
#     connection factory: the TLS tests run ZooKeeper's secureClientPort.
#     openssl makes the TLS tests' certificates.
#     libservlet-api-java's servlet-api.jar lets its AdminServer start (the
#     admin tests compare zoocore's admin commands with it).
#   * Apache Curator (libcurator-framework-java, with Guava) and a JDK's
#     javac (openjdk-17-jdk-headless): server/tests/it/curator.rs compiles a
#     small check of Curator's ensemble tracker and runs it against both
#     servers.
#   * systemd (systemd-analyze verifies tuning/zoocore.service) and
#     util-linux (setpriv, prlimit: the tune check's memlock test)
#   * netcat-openbsd (4-letter-word checks: `echo ruok | nc 127.0.0.1 PORT`)
#   * MIT Kerberos: libkrb5-dev and libclang-dev to build zoocore's
#     `kerberos` feature (libgssapi's bindgen), krb5-kdc, krb5-admin-server
#     (kadmin.local) and krb5-user (kinit) for the test KDC the GSSAPI tests
#     start on loopback, gcc and python3-dev to build the `kerberos` module.
#   * Debian's Chromium and chromedriver, with a font for its pages: the web
#     UI's tests (server/tests/kazoo/test_ui.py) drive it headless.
#   * a Python venv at <repo>/.venv with kazoo (a real ZooKeeper client),
#     pytest (runs server/tests/kazoo, the kazoo recipe suite), pure-sasl
#     (kazoo's SASL client), kerberos (pure-sasl's GSSAPI) and selenium
#     (the WebDriver client of the UI tests).
#
# Idempotent: when everything is present it only checks and exits (~1 s).
# Runs as root, or via sudo when not root.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="$REPO_ROOT/.venv"
JAVA_DIR=/usr/share/java

# Debian packages and, for the jars, the files they must provide.
APT_PACKAGES=(zookeeper libnetty-java openssl netcat-openbsd libslf4j-java liblog4j1.2-java libservlet-api-java libcurator-framework-java openjdk-17-jdk-headless python3 python3-venv python3-dev gcc libkrb5-dev libclang-dev krb5-kdc krb5-admin-server krb5-user chromium chromium-driver fonts-dejavu-core systemd util-linux iproute2)
PY_PACKAGES=(kazoo pytest pure-sasl kerberos selenium)

log() { printf 'install-deps: %s\n' "$*"; }

if [[ ${EUID:-$(id -u)} -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=()   # may still succeed if everything is already present
fi

# ---------------------------------------------------------------- apt
pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# glob_exists PATTERN... : true if any of the glob patterns match a file.
glob_exists() {
    local p f
    for p in "$@"; do
        for f in $p; do [[ -e "$f" ]] && return 0; done
    done
    return 1
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    pkg_installed "$p" || missing+=("$p")
done
# Also verify the files we rely on really exist (a package can be half-removed).
if ! command -v java >/dev/null 2>&1 \
   || ! glob_exists "$JAVA_DIR/zookeeper.jar" "$JAVA_DIR/zookeeper-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/zookeeper-jute.jar" "$JAVA_DIR/zookeeper-jute-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/slf4j-log4j12.jar" "$JAVA_DIR/slf4j-log4j12-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/log4j-1.2.jar" "$JAVA_DIR/log4j-1.2-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/servlet-api.jar" "$JAVA_DIR/servlet-api-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/netty-codec.jar" "$JAVA_DIR/netty-codec-[0-9]*.jar" \
   || ! glob_exists "$JAVA_DIR/netty-resolver.jar" "$JAVA_DIR/netty-resolver-[0-9]*.jar"; then
    # reinstall the whole set; apt skips what is already fine
    for p in zookeeper libzookeeper-java libnetty-java libslf4j-java liblog4j1.2-java libservlet-api-java; do
        [[ " ${missing[*]-} " == *" $p "* ]] || missing+=("$p")
    done
    reinstall=1
else
    reinstall=0
fi
if ! command -v javac >/dev/null 2>&1; then
    [[ " ${missing[*]-} " == *" openjdk-17-jdk-headless "* ]] || missing+=(openjdk-17-jdk-headless)
fi
if ! glob_exists "$JAVA_DIR/curator-framework.jar" || ! glob_exists "$JAVA_DIR/guava.jar"; then
    [[ " ${missing[*]-} " == *" libcurator-framework-java "* ]] || missing+=(libcurator-framework-java)
fi
if ! command -v nc >/dev/null 2>&1; then
    [[ " ${missing[*]-} " == *" netcat-openbsd "* ]] || missing+=(netcat-openbsd)
fi

if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    extra=()
    ((reinstall)) && extra=(--reinstall)
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${extra[@]}" "${missing[@]}"
    log "apt: done"
else
    log "apt: all present (${APT_PACKAGES[*]})"
fi

# ---------------------------------------------------------------- venv
# Prefer Debian's python3 (python3-venv is installed above); fall back to PATH.
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY="$(command -v python3)"

venv_ok() {
    [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import kazoo, pytest, puresasl, kerberos, selenium' >/dev/null 2>&1
}

if venv_ok; then
    log "venv: $VENV already has kazoo $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kazoo"))' 2>/dev/null || echo '?'), pytest $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("pytest"))' 2>/dev/null || echo '?')"
else
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "venv: creating $VENV with $PY"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
    fi
    log "venv: pip installing ${PY_PACKAGES[*]}"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
    venv_ok || { log "venv: kazoo, pytest, puresasl, kerberos or selenium still not importable"; exit 1; }
    log "venv: kazoo $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("kazoo"))'), pytest $("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("pytest"))') installed"
fi

log "zookeeper classpath: $("$SCRIPT_DIR/zk-classpath.sh")"
log "ok"
