#!/usr/bin/env bash
# The container image's entrypoint. It takes the environment variables users
# of the official ZooKeeper image already set (ZOO_MY_ID, ZOO_SERVERS,
# ZOO_TICK_TIME, ...), writes $ZOO_CONF_DIR/zoo.cfg and $ZOO_DATA_DIR/myid
# from them unless they exist (a mounted zoo.cfg or an earlier start wins),
# and then runs its arguments: `zoocore --config $ZOO_CONF_DIR/zoo.cfg` by
# default (the Dockerfile's CMD). Run as root, it hands the data and log
# dirs to the `zookeeper` user and drops to it, when that user exists.
#
# server/tests/it/docker.rs runs this script without Docker: a standalone
# server and a three-member ensemble from the configs it writes.
set -euo pipefail

: "${ZOO_CONF_DIR:=/conf}"
: "${ZOO_DATA_DIR:=/data}"
: "${ZOO_DATA_LOG_DIR:=/datalog}"
: "${ZOO_TICK_TIME:=2000}"
: "${ZOO_INIT_LIMIT:=5}"
: "${ZOO_SYNC_LIMIT:=2}"
: "${ZOO_AUTOPURGE_PURGEINTERVAL:=0}"
: "${ZOO_AUTOPURGE_SNAPRETAINCOUNT:=3}"
: "${ZOO_MAX_CLIENT_CNXNS:=60}"
: "${ZOO_STANDALONE_ENABLED:=true}"
: "${ZOO_ADMINSERVER_ENABLED:=true}"
: "${ZOO_MY_ID:=1}"
: "${ZOO_SERVERS:=server.1=localhost:2888:3888;2181}"
: "${ZOO_USER:=zookeeper}"

if [[ $# -eq 0 ]]; then
    set -- zoocore --config "$ZOO_CONF_DIR/zoo.cfg"
fi

mkdir -p "$ZOO_CONF_DIR" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"

config="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f $config ]]; then
    {
        echo "dataDir=$ZOO_DATA_DIR"
        echo "dataLogDir=$ZOO_DATA_LOG_DIR"
        echo "tickTime=$ZOO_TICK_TIME"
        echo "initLimit=$ZOO_INIT_LIMIT"
        echo "syncLimit=$ZOO_SYNC_LIMIT"
        echo "autopurge.snapRetainCount=$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
        echo "autopurge.purgeInterval=$ZOO_AUTOPURGE_PURGEINTERVAL"
        echo "maxClientCnxns=$ZOO_MAX_CLIENT_CNXNS"
        echo "standaloneEnabled=$ZOO_STANDALONE_ENABLED"
        echo "admin.enableServer=$ZOO_ADMINSERVER_ENABLED"
        if [[ -n ${ZOO_4LW_COMMANDS_WHITELIST:-} ]]; then
            echo "4lw.commands.whitelist=$ZOO_4LW_COMMANDS_WHITELIST"
        fi
        # Both lists are separated by spaces, as the official image reads them.
        for server in $ZOO_SERVERS; do
            echo "$server"
        done
        for line in ${ZOO_CFG_EXTRA:-}; do
            echo "$line"
        done
    } > "$config.tmp"
    mv "$config.tmp" "$config"
fi

if [[ ! -f $ZOO_DATA_DIR/myid ]]; then
    echo "$ZOO_MY_ID" > "$ZOO_DATA_DIR/myid"
fi

if [[ $(id -u) -eq 0 ]] && id -u "$ZOO_USER" > /dev/null 2>&1; then
    chown -R "$ZOO_USER:$ZOO_USER" "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR"
    exec setpriv --reuid="$ZOO_USER" --regid="$ZOO_USER" --init-groups "$@"
fi
exec "$@"
