"""Read-only mode (``readonlymode.enabled``) through kazoo, as kazoo's own
``TestReadOnlyMode`` exercises it: a member cut off from its quorum serves a
client started with ``read_only=True`` (state CONNECTED_RO), answers its
reads, refuses its writes with NotReadOnlyCallError, keeps the session
alive through pings, and once the quorum is back the client ends up
connected read-write. Runs against a 3-member zoocore ensemble and a
3-member Apache ZooKeeper ensemble, each started for this test alone (it
stops members)."""

import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NotReadOnlyCallError
from kazoo.protocol.states import KeeperState

from conftest import Cluster, four_letter_word, running

WAIT = 60.0


@pytest.fixture(params=["zoocore-ensemble", "zookeeper-ensemble"])
def ro_cluster(request):
    with running(Cluster(request.param, read_only=True)) as c:
        yield c


def wait_for(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_read_only_mode(ro_cluster):
    writer = KazooClient(hosts=ro_cluster.hosts, timeout=10.0)
    writer.start(timeout=15.0)
    writer.ensure_path("/ro-test/kid")
    # Written through every member's view before two of them go.
    writer.sync("/ro-test")
    writer.stop()
    writer.close()

    states = []
    connected_ro = threading.Event()
    client = KazooClient(hosts=ro_cluster.hosts, timeout=10.0, read_only=True, connection_retry=None)

    def listen(state):
        states.append(state)
        if client.client_state == KeeperState.CONNECTED_RO:
            connected_ro.set()

    client.add_listener(listen)
    client.start(timeout=15.0)
    try:
        ro_cluster.kill(1)
        ro_cluster.kill(2)
        wait_for(lambda: four_letter_word(ro_cluster.ports[0], "isro") == "ro", "the last member to go read-only")
        # As kazoo's test: restart the client so it connects afresh.
        client.stop()
        client.start(timeout=30.0)
        assert connected_ro.wait(30.0), f"never CONNECTED_RO; states {states}"
        assert client.client_state == KeeperState.CONNECTED_RO
        assert client.get_children("/ro-test") == ["kid"]
        with pytest.raises(NotReadOnlyCallError):
            client.create("/ro-test/fred")
        # Two ping intervals (a third of the session timeout each) later the
        # session is still there and still read-only.
        time.sleep(8.0)
        assert client.client_state == KeeperState.CONNECTED_RO
        assert client.exists("/ro-test/kid") is not None

        ro_cluster.start(1)
        ro_cluster.start(2)
        ro_cluster.wait_ready()
        wait_for(
            lambda: client.client_state == KeeperState.CONNECTED,
            f"the client to come back read-write (states {states})",
            timeout=90.0,
        )
        client.create("/ro-test/after", b"", makepath=True)
        assert sorted(client.get_children("/ro-test")) == ["after", "kid"]
    finally:
        client.stop()
        client.close()

