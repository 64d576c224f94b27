"""Dynamic reconfig through kazoo, as kazoo's own ``TestReconfig`` runs it
(``kazoo/tests/test_client.py``): without the super user a reconfig is
refused with NoAuth; an observer is added and removed again (the reply is
the new ``/zookeeper/config``); a config version that is not the current
one is refused with BadVersion; a joining server string without ``=`` is
BadArguments. Also what Curator's ensemble tracker relies on: a data watch
on ``/zookeeper/config`` fires on a reconfig, and the node's ``version=``
is the reconfig's zxid in hex. Runs against a 3-member zoocore ensemble
and a 3-member Apache ZooKeeper ensemble with ``reconfigEnabled=true``,
each started for this module."""

import base64
import hashlib
import socket
import threading

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import BadArgumentsError, BadVersionError, NoAuthError

from conftest import Cluster, running

SUPER = "super:test"
DIGEST = base64.b64encode(hashlib.sha1(SUPER.encode()).digest()).decode()


@pytest.fixture(scope="module", params=["zoocore-ensemble", "zookeeper-ensemble"])
def rc_cluster(request):
    keys = f"reconfigEnabled=true\nDigestAuthenticationProvider.superDigest=super:{DIGEST}\n"
    with running(Cluster(request.param, extra=keys)) as c:
        yield c


@pytest.fixture
def client(rc_cluster):
    c = KazooClient(hosts=rc_cluster.hosts, timeout=30)
    c.start(timeout=30)
    yield c
    c.stop()
    c.close()


@pytest.fixture
def super_client(rc_cluster):
    c = KazooClient(hosts=rc_cluster.hosts, timeout=30, auth_data=[("digest", SUPER)])
    c.start(timeout=30)
    yield c
    c.stop()
    c.close()


def free_sock_port():
    s = socket.socket()
    s.bind(("", 0))
    return s, s.getsockname()[1]


def config_version(data):
    return int(data.decode().split("\n")[-1].split("=")[1], base=16)


def test_no_super_auth(client):
    with pytest.raises(NoAuthError):
        client.reconfig(joining="server.999=0.0.0.0:1234:2345:observer;3456", leaving=None, new_members=None)


def test_add_remove_observer(client, super_client):
    # Ports that refuse connections at once, so nobody waits on the absent
    # observer (ZOOKEEPER-2202); the sockets stay bound for the test.
    s1, port1 = free_sock_port()
    s2, port2 = free_sock_port()
    s3, port3 = free_sock_port()
    try:
        joining = "server.100=0.0.0.0:%d:%d:observer;0.0.0.0:%d" % (port1, port2, port3)
        data, _ = super_client.reconfig(joining=joining, leaving=None, new_members=None)
        assert joining.encode("utf8") in data

        data, _ = super_client.reconfig(joining=None, leaving="100", new_members=None)
        assert joining.encode("utf8") not in data

        # Adding it again from a configuration version in the future fails.
        curver = config_version(data)
        with pytest.raises(BadVersionError):
            client.reconfig(joining=joining, leaving=None, new_members=None, from_config=curver + 1)
    finally:
        for s in (s1, s2, s3):
            s.close()


def test_bad_input(client):
    with pytest.raises(BadArgumentsError):
        client.reconfig(joining="some thing", leaving=None, new_members=None)


def test_the_config_node_is_watched_and_versioned_by_the_reconfig_zxid(client, super_client):
    fired = threading.Event()
    before, _ = client.get("/zookeeper/config", watch=lambda event: fired.set())
    s1, port1 = free_sock_port()
    s2, port2 = free_sock_port()
    s3, port3 = free_sock_port()
    try:
        joining = "server.101=127.0.0.1:%d:%d:observer;127.0.0.1:%d" % (port1, port2, port3)
        data, stat = super_client.reconfig(joining=joining, leaving=None, new_members=None, from_config=config_version(before))
        assert fired.wait(30), "the watch on /zookeeper/config fired"
        assert config_version(data) == stat.mzxid
        after, after_stat = client.get("/zookeeper/config")
        client.sync("/zookeeper/config")
        assert after.split(b"\n")[:-1] == data.split(b"\n")[:-1] or after == data
        assert after_stat.version == stat.version
        assert [line for line in data.decode().split("\n") if line.startswith("server.")][-1] == joining
        super_client.reconfig(joining=None, leaving="101", new_members=None, from_config=config_version(data))
    finally:
        for s in (s1, s2, s3):
            s.close()
