#!/usr/bin/env bash
# Print the java classpath for starting Apache ZooKeeper (Debian package
# `zookeeper` / `libzookeeper-java`) standalone from a plain `java -cp` command.
#
#   java -Dzookeeper.extendedTypesEnabled=true \
#        -Dlog4j.configuration=file:scripts/zk-log4j.properties \
#        -cp "$(scripts/zk-classpath.sh)" \
#        org.apache.zookeeper.server.ZooKeeperServerMain /path/to/zoo.cfg
#
# Debian's zookeeper.jar carries a manifest Class-Path with its runtime deps
# (zookeeper-jute, slf4j-api, netty, jetty, jackson, metrics, commons-*), but
# NOT an slf4j binding; we add slf4j-log4j12 + log4j 1.2 so logging works
# (otherwise slf4j prints a NOP-logger warning and nothing is logged), and
# servlet-api for the AdminServer, and netty-codec and netty-resolver for TLS.
# Set JAVA_DIR to look somewhere other than /usr/share/java.
set -euo pipefail

JAVA_DIR="${JAVA_DIR:-/usr/share/java}"

# find_jar NAME... : first of $JAVA_DIR/NAME.jar, else the highest-versioned
# $JAVA_DIR/NAME-<version>.jar, trying each NAME in turn.
find_jar() {
    local name cand
    for name in "$@"; do
        if [[ -e "$JAVA_DIR/$name.jar" ]]; then
            printf '%s\n' "$JAVA_DIR/$name.jar"
            return 0
        fi
        # version-suffixed: NAME-<digit>...jar
        cand=$(ls -1 "$JAVA_DIR"/"$name"-[0-9]*.jar 2>/dev/null | sort -V | tail -n 1 || true)
        if [[ -n "$cand" ]]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    echo "zk-classpath.sh: cannot find any of [$*] (.jar) in $JAVA_DIR; run scripts/install-deps.sh" >&2
    return 1
}

cp=()
cp+=("$(find_jar zookeeper)")
cp+=("$(find_jar zookeeper-jute)")
cp+=("$(find_jar slf4j-api)")
cp+=("$(find_jar slf4j-log4j12)")
cp+=("$(find_jar log4j-1.2 log4j)")
# The AdminServer (Jetty, from the manifest) also needs the servlet API,
# which the manifest leaves out; without it ZooKeeper turns it off.
cp+=("$(find_jar servlet-api)")
# The Netty connection factory (TLS on secureClientPort) needs netty-codec,
# and the Netty client socket (zkCli over TLS) netty-resolver, which the
# manifest leaves out too.
cp+=("$(find_jar netty-codec)")
cp+=("$(find_jar netty-resolver)")

(IFS=:; printf '%s\n' "${cp[*]}")
