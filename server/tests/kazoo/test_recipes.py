"""kazoo recipes and the basic API, each against zoocore and Apache ZooKeeper.

Concurrency is real: every participant is its own KazooClient (its own
session and connection) in its own thread. Waiting is event-driven (kazoo's
blocking recipe calls, watches, threading.Event) and always bounded; polling
with a deadline is used only where nothing can signal.

ZooKeeper guarantees a client an up-to-date view of writes made by *other*
sessions only after ``sync``; where a test reads another client's writes
without having waited on a watch for them, it syncs first, as a correct
ZooKeeper application must.
"""

import queue as pyqueue
import threading
import time

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    LockTimeout,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    RolledBackError,
    RuntimeInconsistency,
)
from kazoo.protocol.states import EventType
from kazoo.recipe.cache import TreeCache, TreeEvent
from kazoo.retry import KazooRetry
from kazoo.security import make_acl, make_digest_acl

from support import SCALE, WAIT, Gate, Recorder, run_concurrently, wait_until


# ====================================================================== basic API


def test_create_get_set_delete_with_versions(zk, base):
    path = base + "/node"
    assert zk.create(path, b"v0") == path
    data, stat = zk.get(path)
    assert data == b"v0"
    assert (stat.version, stat.dataLength, stat.numChildren, stat.ephemeralOwner) == (0, 2, 0, 0)
    assert stat.czxid == stat.mzxid

    with pytest.raises(NodeExistsError):
        zk.create(path, b"again")

    stat1 = zk.set(path, b"v1", version=0)
    assert stat1.version == 1
    assert stat1.czxid == stat.czxid
    assert stat1.mzxid > stat.mzxid
    with pytest.raises(BadVersionError):
        zk.set(path, b"lost", version=0)
    assert zk.get(path)[0] == b"v1"
    assert zk.set(path, b"v2").version == 2  # version -1: unconditional

    child = zk.create(path + "/child", b"")
    parent_stat = zk.exists(path)
    assert parent_stat.numChildren == 1
    assert parent_stat.cversion == 1
    assert parent_stat.pzxid == zk.exists(child).czxid
    with pytest.raises(NotEmptyError):
        zk.delete(path)
    with pytest.raises(BadVersionError):
        zk.delete(child, version=5)
    zk.delete(child, version=0)
    with pytest.raises(BadVersionError):
        zk.delete(path, version=1)
    zk.delete(path, version=2)
    assert zk.exists(path) is None

    with pytest.raises(NoNodeError):
        zk.get(path)
    with pytest.raises(NoNodeError):
        zk.set(path, b"x")
    with pytest.raises(NoNodeError):
        zk.delete(path)
    with pytest.raises(NoNodeError):
        zk.create(base + "/missing/child")

    deep = zk.create(base + "/a/b/c", b"deep", makepath=True)
    assert zk.get(deep)[0] == b"deep"
    assert zk.get_children(base + "/a") == ["b"]
    assert sorted(zk.get_children(base)) == ["a"]


def test_create2_large_data_many_children_and_unicode(zk, base):
    path, stat = zk.create(base + "/c2", b"x" * 1000, include_data=True)
    assert path == base + "/c2"
    assert (stat.version, stat.dataLength, stat.numChildren) == (0, 1000, 0)
    assert stat.czxid == stat.mzxid == stat.pzxid

    # Close to jute.maxbuffer (1 MiB): framing must cope with a big payload.
    big = bytes(range(256)) * 3900  # 998,400 bytes
    zk.create(base + "/big", big)
    data, stat = zk.get(base + "/big")
    assert data == big and stat.dataLength == len(big)
    assert zk.set(base + "/big", big[::-1]).dataLength == len(big)
    assert zk.get(base + "/big")[0] == big[::-1]

    # 500 creates in one multi, then one big getChildren reply.
    parent = base + "/many"
    zk.create(parent)
    txn = zk.transaction()
    for k in range(500):
        txn.create(f"{parent}/child-{k:04d}", str(k).encode())
    results = txn.commit()
    assert results == [f"{parent}/child-{k:04d}" for k in range(500)]
    children, stat = zk.get_children(parent, include_data=True)
    assert sorted(children) == [f"child-{k:04d}" for k in range(500)]
    assert stat.numChildren == 500 and stat.cversion == 500

    uni = base + "/ünïcödé-節点"
    zk.create(uni, "données".encode())
    assert zk.get(uni)[0] == "données".encode()
    assert "ünïcödé-節点" in zk.get_children(base)
    assert zk.sync(uni) == uni
    assert "Mode:" in zk.command(b"srvr")
    assert zk.server_version() >= (3, 5)


def test_ephemeral_removed_when_owner_stops(make_client, base):
    owner = make_client()
    observer = make_client()
    path = owner.create(base + "/eph", b"mine", ephemeral=True)
    assert owner.exists(path).ephemeralOwner == owner.client_id[0]
    with pytest.raises(NoChildrenForEphemeralsError):
        owner.create(path + "/child")

    gone = threading.Event()

    def on_change(event):
        if event.type == EventType.DELETED:
            gone.set()

    observer.sync(path)
    assert observer.exists(path, watch=on_change) is not None
    owner.stop()  # closes the session: its ephemerals go with it
    assert gone.wait(WAIT), "observer never saw the ephemeral deleted"
    assert observer.exists(path) is None
    assert observer.get_children(base) == []


def test_sequential_suffixes_under_concurrent_creators(make_client, base):
    clients = [make_client() for _ in range(6)]
    per_client = 30 * SCALE
    parents = [base + "/p1", base + "/p2"]
    for p in parents:
        clients[0].create(p)

    def creator(client):
        def run():
            created = {p: [] for p in parents}
            for _ in range(per_client):
                for p in parents:
                    name = client.create(p + "/n-", b"", sequence=True)
                    created[p].append(name)
            return created

        return run

    results = run_concurrently([creator(c) for c in clients])
    total = per_client * len(clients)
    for p in parents:
        suffixes = []
        for created in results:
            mine = [int(name[len(p) + 3 :]) for name in created[p]]
            for name in created[p]:
                assert name.startswith(p + "/n-") and len(name) == len(p) + 3 + 10, name
            # One client's creates are sequential in time: increasing suffixes.
            assert mine == sorted(mine) and len(set(mine)) == len(mine), mine
            suffixes.extend(mine)
        # Unique across clients, and a fresh parent numbers its children 0..n-1.
        assert sorted(suffixes) == list(range(total))

        zk = clients[0]
        zk.sync(p)
        children = sorted(zk.get_children(p))
        assert len(children) == total
        # Suffix order is creation (zxid) order.
        czxids = [zk.exists(p + "/" + c).czxid for c in children]
        assert czxids == sorted(czxids) and len(set(czxids)) == total
        assert zk.exists(p).cversion == total


def test_transaction_commit_and_rollback(zk, base):
    t1 = base + "/t1"
    txn = zk.transaction()
    txn.create(t1, b"a")
    txn.create(t1 + "/c", b"b")
    txn.set_data(t1, b"a2")
    txn.check(t1, 1)
    txn.delete(t1 + "/c")
    results = txn.commit()
    assert results[0] == t1
    assert results[1] == t1 + "/c"
    assert results[2].version == 1
    assert results[3:] == [True, True]
    data, stat = zk.get(t1)
    assert (data, stat.version, stat.numChildren) == (b"a2", 1, 0)

    # A failing check rolls back everything before it; nothing is applied.
    txn = zk.transaction()
    txn.create(base + "/t2", b"")
    txn.set_data(t1, b"never")
    txn.check(t1, 99)
    txn.delete(t1)
    results = txn.commit()
    assert isinstance(results[0], RolledBackError), results
    assert isinstance(results[1], RolledBackError), results
    assert isinstance(results[2], BadVersionError), results
    assert isinstance(results[3], RuntimeInconsistency), results
    assert zk.exists(base + "/t2") is None
    assert zk.get(t1)[0] == b"a2"
    assert zk.exists(t1).version == 1

    # The first failing op decides: a create under a missing parent.
    txn = zk.transaction()
    txn.set_data(t1, b"never")
    txn.create(base + "/missing/x", b"")
    results = txn.commit()
    assert isinstance(results[0], RolledBackError), results
    assert isinstance(results[1], NoNodeError), results
    assert zk.get(t1)[0] == b"a2"


def test_transactions_compare_and_set_under_contention(make_client, base):
    """Each client repeatedly commits [check(version), set, create seq child];
    the check makes the multi a compare-and-set, so no update is lost and
    every child belongs to exactly one successful transaction."""
    path = base + "/cas"
    clients = [make_client() for _ in range(5)]
    clients[0].create(path, b"0")
    per_client = 20 * SCALE

    def worker(client, name):
        def run():
            done = conflicts = 0
            client.sync(path)  # another session created it
            while done < per_client:
                data, stat = client.get(path)
                txn = client.transaction()
                txn.check(path, stat.version)
                txn.set_data(path, str(int(data) + 1).encode())
                txn.create(path + "/" + name + "-", b"", sequence=True)
                results = txn.commit()
                if isinstance(results[0], BadVersionError):
                    assert all(isinstance(r, RuntimeInconsistency) for r in results[1:]), results
                    conflicts += 1
                    continue
                assert results[0] is True and results[1].version == stat.version + 1, results
                done += 1
            return conflicts

        return run

    run_concurrently([worker(c, f"c{i}") for i, c in enumerate(clients)])
    total = per_client * len(clients)
    zk = clients[0]
    zk.sync(path)
    data, stat = zk.get(path)
    assert int(data) == total
    assert stat.version == total
    assert stat.numChildren == total


def test_digest_acl_and_add_auth(make_client, base, cluster):
    owner = make_client(auth_data=[("digest", "alice:secret")])
    private = owner.create(base + "/private", b"secret", acl=[make_digest_acl("alice", "secret", all=True)])
    shared = owner.create(
        base + "/shared",
        b"public",
        acl=[make_digest_acl("alice", "secret", all=True), make_acl("world", "anyone", read=True)],
    )
    acls, acl_stat = owner.get_acls(private)
    assert [(a.id.scheme, a.id.id, a.perms) for a in acls] == [
        ("digest", make_digest_acl("alice", "secret").id.id, 31)
    ]
    assert acl_stat.aversion == 0

    other = make_client()
    other.sync(base)
    assert other.exists(private) is not None  # exists needs no permission
    with pytest.raises(NoAuthError):
        other.get(private)
    with pytest.raises(NoAuthError):
        other.set(private, b"x")
    with pytest.raises(NoAuthError):
        other.create(private + "/child")
    assert other.get(shared)[0] == b"public"
    with pytest.raises(NoAuthError):
        other.set(shared, b"x")

    impostor = make_client(auth_data=[("digest", "alice:wrong")])
    with pytest.raises(NoAuthError):
        impostor.get(private)

    other.add_auth("digest", "alice:secret")
    assert other.get(private)[0] == b"secret"
    assert other.set(private, b"changed").version == 1
    owner.sync(private)
    assert owner.get(private)[0] == b"changed"

    # The "auth" scheme stands for every identity the creator has proven.
    byauth = owner.create(base + "/byauth", b"x", acl=[make_acl("auth", "", all=True)])
    other.sync(byauth)
    assert other.get(byauth)[0] == b"x"
    impostor.sync(byauth)
    with pytest.raises(NoAuthError):
        impostor.get(byauth)

    # setACL is versioned by aversion and needs ADMIN.
    with pytest.raises(BadVersionError):
        owner.set_acls(shared, [make_acl("world", "anyone", all=True)], version=7)
    with pytest.raises(NoAuthError):
        impostor.set_acls(shared, [make_acl("world", "anyone", all=True)])
    assert owner.set_acls(shared, [make_acl("world", "anyone", all=True)], version=0).aversion == 1
    if cluster.kind == "zookeeper-ensemble":
        # Apache ZooKeeper's leader checks a write against its pending change
        # record of the node, and the record a setACL leaves keeps the old
        # ACL until the leader has applied it; the owner's follower may have
        # answered before that. Nothing signals it, so poll with a deadline.
        deadline = time.monotonic() + 10
        while True:
            try:
                impostor.set(shared, b"anyone")
                break
            except NoAuthError:
                assert time.monotonic() < deadline, "the new ACL never took effect"
                time.sleep(0.05)
        assert impostor.exists(shared).version == 1
    else:
        assert impostor.set(shared, b"anyone").version == 1


def test_session_expiry_loses_ephemerals(server, make_client, base):
    """kazoo's own way to expire a session: attach a second connection to it
    and close that; the first connection must then learn its session is gone."""
    # Reconnect slowly so the second connection can close the session before
    # the victim takes it back.
    victim = make_client(connection_retry=KazooRetry(max_tries=-1, delay=0.5, backoff=1, max_jitter=0))
    observer = make_client()
    states = Recorder()
    victim.add_listener(states.append)
    path = victim.create(base + "/eph", b"", ephemeral=True)
    old_session = victim.client_id[0]

    gone = threading.Event()
    observer.sync(path)
    assert observer.exists(path, watch=lambda e: e.type == EventType.DELETED and gone.set())

    session_id, password = victim.client_id
    thief = KazooClient(hosts=server, client_id=(session_id, password), timeout=10.0)
    try:
        thief.start(timeout=15)
        assert thief.client_id[0] == session_id
    finally:
        thief.stop()
        thief.close()

    assert gone.wait(WAIT), "ephemeral of the closed session not deleted"
    states.wait_for(lambda s: KazooState.LOST in s, what="LOST on the victim")
    # kazoo then opens a fresh session by itself.
    wait_until(lambda: victim.connected and victim.client_id[0] != old_session, what="a new session")
    assert victim.exists(path) is None


def _reconnecting_fast():
    return KazooRetry(max_tries=-1, delay=0.05, backoff=1, max_jitter=0)


def test_session_survives_disconnect(proxy, make_client, base):
    """The connection drops but the session lives: kazoo reconnects with its
    session id and password (here through a new connection, possibly to the
    other zoocore shard), keeps its ephemerals, and its watch recipes catch up
    with what changed meanwhile. (kazoo 2.11 drops one-shot watches on a
    disconnect, firing them with a NONE event, rather than sending
    SetWatches; DataWatch/ChildrenWatch then re-read and re-register.)"""
    observer = make_client()
    client = make_client(hosts=proxy.address, connection_retry=_reconnecting_fast())
    states = Recorder()
    client.add_listener(states.append)
    session = client.client_id
    eph = client.create(base + "/eph", b"", ephemeral=True)
    # Auth belongs to a connection: kazoo proves it again on the new one.
    client.add_auth("digest", "bob:pw")
    private = client.create(base + "/private", b"bob's", acl=[make_digest_acl("bob", "pw", all=True)])
    observer.create(base + "/data", b"0")
    observer.create(base + "/parent")
    client.sync(base)
    one_shot = Recorder()
    client.get(base + "/data", watch=one_shot.append)
    data, missing, children = Recorder(), Recorder(), Recorder()
    client.DataWatch(base + "/data", lambda d, st: data.append((d, st and st.version)))
    client.DataWatch(base + "/missing", lambda d, st: missing.append((d, st and st.version)))
    client.ChildrenWatch(base + "/parent", lambda ch: children.append(sorted(ch)))
    data.wait_for(lambda s: s == [(b"0", 0)], what="initial data")
    missing.wait_for(lambda s: s == [(None, None)], what="initial missing")
    children.wait_for(lambda s: s == [[]], what="initial children")

    proxy.pause()
    states.wait_for(lambda s: KazooState.SUSPENDED in s, what="SUSPENDED")
    observer.set(base + "/data", b"1")
    observer.create(base + "/missing", b"here")
    observer.create(base + "/parent/kid")
    proxy.resume()
    states.wait_for(lambda s: s[-1] == KazooState.CONNECTED, what="CONNECTED again")
    assert KazooState.LOST not in states.items()
    assert client.client_id == session

    # Checked only now: kazoo runs watch callbacks on one thread, and the
    # recipes' callbacks block there until the connection is back.
    assert [e.type for e in one_shot.wait_for(len, what="the NONE event")] == [EventType.NONE]
    data.wait_for(lambda s: s[-1] == (b"1", 1), what="data caught up")
    missing.wait_for(lambda s: s[-1] == (b"here", 0), what="missing node seen")
    children.wait_for(lambda s: s[-1] == ["kid"], what="children caught up")
    assert client.exists(eph).ephemeralOwner == session[0]
    assert client.get(private)[0] == b"bob's"
    with pytest.raises(NoAuthError):
        observer.get(private)
    # The session is fully usable: writes, and watches set anew fire.
    fired = threading.Event()
    client.get(base + "/data", watch=lambda e: e.type == EventType.CHANGED and fired.set())
    observer.set(base + "/data", b"2")
    assert fired.wait(WAIT)
    # Closing the session from its new connection takes its ephemerals.
    gone = threading.Event()
    observer.sync(eph)
    assert observer.exists(eph, watch=lambda e: e.type == EventType.DELETED and gone.set())
    client.stop()
    assert gone.wait(WAIT)


def test_session_expiry_follows_the_connection(make_proxy, make_client, base):
    """A client that stops talking without closing its session loses it (and
    its ephemerals) after the session timeout, not before, and is told so
    when it comes back. Meanwhile a client that reconnected several times
    (each new connection may land on another zoocore shard) and keeps
    pinging must keep its session."""
    observer = make_client()
    proxies = [make_proxy(), make_proxy()]
    try:
        mover = make_client(hosts=proxies[0].address, timeout=4.0, connection_retry=_reconnecting_fast())
        vanisher = make_client(hosts=proxies[1].address, timeout=4.0, connection_retry=_reconnecting_fast())
        mover_states, vanisher_states = Recorder(), Recorder()
        mover.add_listener(mover_states.append)
        vanisher.add_listener(vanisher_states.append)
        mover_session, vanisher_session = mover.client_id, vanisher.client_id
        mover_eph = mover.create(base + "/mover", b"", ephemeral=True)
        vanisher_eph = vanisher.create(base + "/vanisher", b"", ephemeral=True)

        for move in range(8):
            proxies[0].pause()
            mover_states.wait_for(lambda s: s.count(KazooState.SUSPENDED) == move + 1, what="SUSPENDED")
            proxies[0].resume()
            mover_states.wait_for(lambda s: s[-1] == KazooState.CONNECTED, what="CONNECTED")
            assert mover.client_id == mover_session
            assert mover.set(mover_eph, str(move).encode()).version == move + 1
        moved = time.monotonic()

        gone = threading.Event()
        observer.sync(vanisher_eph)
        assert observer.exists(vanisher_eph, watch=lambda e: e.type == EventType.DELETED and gone.set())
        started = time.monotonic()
        proxies[1].pause()
        assert gone.wait(WAIT), "the vanished client's session never expired"
        elapsed = time.monotonic() - started
        # Negotiated timeout is 4 s; the last ping was at most ~1.4 s before the cut.
        assert elapsed >= 2.0, f"session expired {elapsed:.2f} s after the client vanished"
        proxies[1].resume()
        vanisher_states.wait_for(lambda s: KazooState.LOST in s, what="LOST after reconnecting")
        wait_until(lambda: vanisher.connected and vanisher.client_id[0] != vanisher_session[0], what="a new session")
        assert vanisher.exists(vanisher_eph) is None

        # Unavoidably time-based: the mover must outlive any deadline its
        # earlier connections had (timeout 4 s + expiry granularity).
        while time.monotonic() < moved + 7.0:
            assert KazooState.LOST not in mover_states.items(), "the mover's session expired"
            time.sleep(0.25)
        observer.sync(mover_eph)
        stat = observer.exists(mover_eph)
        assert stat is not None and stat.ephemeralOwner == mover_session[0]
        assert mover.client_id == mover_session
        assert KazooState.LOST not in mover_states.items()
    finally:
        for p in proxies:
            p.resume()


# ====================================================================== Lock


def test_lock_mutual_exclusion_counter(make_client, base):
    n_clients, increments = 6, 30 * SCALE
    clients = [make_client() for _ in range(n_clients)]
    counter = base + "/counter"
    lock_path = base + "/lock"
    clients[0].create(counter, b"0")
    holders = [0]
    overlaps = []
    mu = threading.Lock()

    def worker(client, ident):
        def run():
            lock = client.Lock(lock_path, ident)
            for _ in range(increments):
                assert lock.acquire(timeout=WAIT)
                try:
                    with mu:
                        holders[0] += 1
                        if holders[0] != 1:
                            overlaps.append(ident)
                    data, stat = client.get(counter)
                    # Conditional: an overlapping holder would surface as BadVersion.
                    client.set(counter, str(int(data) + 1).encode(), version=stat.version)
                    with mu:
                        holders[0] -= 1
                finally:
                    lock.release()

        return run

    run_concurrently([worker(c, f"worker-{i}") for i, c in enumerate(clients)], timeout=90)
    assert overlaps == []
    clients[0].sync(counter)
    data, stat = clients[0].get(counter)
    assert int(data) == n_clients * increments
    assert stat.version == n_clients * increments
    assert clients[0].get_children(lock_path) == []


def test_lock_contenders_and_handoff(make_client, base):
    a, b, c = make_client(), make_client(), make_client()
    path = base + "/lock"
    la, lb, lc = a.Lock(path, "a"), b.Lock(path, "b"), c.Lock(path, "c")
    assert la.acquire(timeout=WAIT)
    assert la.is_acquired
    assert lb.acquire(blocking=False) is False
    with pytest.raises(LockTimeout):
        lb.acquire(timeout=0.3)
    gate = Gate(a, path)
    gate.wait_for(lambda ch: len(ch) == 1, what="failed attempts to clean up")

    got = {"b": threading.Event(), "c": threading.Event()}
    errors = []

    def contend(lock, name):
        try:
            if lock.acquire(timeout=WAIT):
                got[name].set()
        except Exception as e:  # reported below
            errors.append(e)

    tb = threading.Thread(target=contend, args=(lb, "b"), daemon=True)
    tb.start()
    gate.wait_for(lambda ch: len(ch) == 2, what="b queued")
    tc = threading.Thread(target=contend, args=(lc, "c"), daemon=True)
    tc.start()
    gate.wait_for(lambda ch: len(ch) == 3, what="c queued")

    assert la.contenders() == ["a", "b", "c"]
    assert c.Lock(path).contenders() == ["a", "b", "c"]
    assert not got["b"].is_set() and not got["c"].is_set()

    la.release()
    assert got["b"].wait(WAIT), errors
    assert not got["c"].is_set()
    assert lb.contenders() == ["b", "c"]

    lb.release()
    assert got["c"].wait(WAIT), errors
    assert lc.contenders() == ["c"]
    lc.release()
    gate.wait_for(lambda ch: ch == [], what="lock released")
    tb.join(WAIT)
    tc.join(WAIT)
    assert errors == []


def test_lock_passes_when_holder_session_ends(make_client, base):
    a, b = make_client(), make_client()
    path = base + "/lock"
    la, lb = a.Lock(path, "a"), b.Lock(path, "b")
    assert la.acquire(timeout=WAIT)
    got = threading.Event()
    t = threading.Thread(target=lambda: lb.acquire(timeout=WAIT) and got.set(), daemon=True)
    t.start()
    Gate(b, path).wait_for(lambda ch: len(ch) == 2, what="b queued")
    assert not got.is_set()
    a.stop()  # the holder's session ends: its ephemeral lock node goes
    assert got.wait(WAIT), "b never got the lock after a's session ended"
    assert lb.contenders() == ["b"]
    lb.release()
    t.join(WAIT)


def test_read_write_lock(make_client, base):
    path = base + "/rw"
    r1, r2, w, r3 = make_client(), make_client(), make_client(), make_client()
    read1, read2 = r1.ReadLock(path, "r1"), r2.ReadLock(path, "r2")
    write = w.WriteLock(path, "w")
    assert read1.acquire(timeout=WAIT)
    assert read2.acquire(timeout=WAIT)  # readers share
    assert write.acquire(blocking=False) is False
    got_write = threading.Event()
    t = threading.Thread(target=lambda: write.acquire(timeout=WAIT) and got_write.set(), daemon=True)
    t.start()
    gate = Gate(r1, path)
    gate.wait_for(lambda ch: len(ch) == 3, what="writer queued")
    # A reader behind a queued writer must wait for it.
    assert r3.ReadLock(path, "r3").acquire(blocking=False) is False
    read1.release()
    gate.wait_for(lambda ch: len(ch) == 2, what="r1 released")
    assert not got_write.is_set()
    read2.release()
    assert got_write.wait(WAIT)
    assert r3.ReadLock(path, "r3").acquire(blocking=False) is False
    write.release()
    read3 = r3.ReadLock(path, "r3")
    assert read3.acquire(timeout=WAIT)
    read3.release()
    t.join(WAIT)


def test_semaphore_bounds_holders(make_client, base):
    path = base + "/sem"
    n_clients, rounds, leases = 5, 5, 2
    clients = [make_client() for _ in range(n_clients)]
    # Full semaphore: a third non-blocking acquire fails.
    s0, s1 = clients[0].Semaphore(path, "s0", max_leases=leases), clients[1].Semaphore(path, "s1", max_leases=leases)
    assert s0.acquire(timeout=WAIT) and s1.acquire(timeout=WAIT)
    assert clients[2].Semaphore(path, "s2", max_leases=leases).acquire(blocking=False) is False
    assert sorted(s0.lease_holders()) == ["s0", "s1"]
    s0.release()
    s1.release()

    mu = threading.Lock()
    holders = [0]
    peak = [0]

    def worker(i, client):
        def run():
            sem = client.Semaphore(path, f"w{i}", max_leases=leases)
            for _ in range(rounds):
                assert sem.acquire(timeout=WAIT)
                try:
                    with mu:
                        holders[0] += 1
                        peak[0] = max(peak[0], holders[0])
                    assert len(sem.lease_holders()) <= leases
                    with mu:
                        holders[0] -= 1
                finally:
                    sem.release()

        return run

    run_concurrently([worker(i, c) for i, c in enumerate(clients)], timeout=90)
    assert peak[0] <= leases


# ====================================================================== Election


def test_election_one_leader_and_handoff(make_client, base):
    path = base + "/election"
    n = 3
    clients = [make_client() for _ in range(n)]
    observer = make_client()
    observer.ensure_path(path)
    leaders = set()
    violations = []
    mu = threading.Lock()
    elected = pyqueue.Queue()
    step_down = [threading.Event() for _ in range(n)]

    def lead(i):
        with mu:
            leaders.add(i)
            if len(leaders) != 1:
                violations.append(sorted(leaders))
        elected.put(i)
        assert step_down[i].wait(WAIT)
        with mu:
            leaders.discard(i)

    def candidate(i):
        return lambda: clients[i].Election(path, f"cand-{i}").run(lead, i)

    threads_result = {}

    def run_all():
        threads_result["r"] = run_concurrently([candidate(i) for i in range(n)], timeout=90)

    runner = threading.Thread(target=run_all, daemon=True)
    runner.start()
    gate = Gate(observer, path)
    order = []
    for round_ in range(n):
        leader = elected.get(timeout=WAIT)
        assert leader not in order
        if round_ == 0:
            gate.wait_for(lambda ch: len(ch) == n, what="all candidates queued")
        observer.sync(path)
        contenders = observer.Election(path).contenders()
        assert contenders[0] == f"cand-{leader}", contenders
        assert len(contenders) == n - round_, contenders
        order.append(leader)
        step_down[leader].set()
    runner.join(WAIT)
    assert not runner.is_alive()
    assert "r" in threads_result
    assert sorted(order) == list(range(n))
    assert violations == []
    gate.wait_for(lambda ch: ch == [], what="election empty")


def test_election_passes_when_leader_session_ends(make_client, base):
    path = base + "/election"
    clients = [make_client() for _ in range(2)]
    elected = pyqueue.Queue()
    release = threading.Event()

    def lead(i):
        elected.put(i)
        release.wait(WAIT)

    def candidate(i):
        def run():
            try:
                clients[i].Election(path, f"cand-{i}").run(lead, i)
            except Exception:
                pass  # the stopped leader's release fails: expected

        return run

    threads = [threading.Thread(target=candidate(i), daemon=True) for i in range(2)]
    threads[0].start()
    first = elected.get(timeout=WAIT)
    assert first == 0
    threads[1].start()
    gate = Gate(clients[1], path)
    gate.wait_for(lambda ch: len(ch) == 2, what="second candidate queued")
    assert elected.empty()
    clients[0].stop()  # the leader's session ends; its ephemeral node goes
    assert elected.get(timeout=WAIT) == 1
    release.set()
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()


# ====================================================================== barriers


def test_barrier_blocks_until_removed(make_client, base):
    path = base + "/barrier"
    coordinator = make_client()
    waiters = [make_client() for _ in range(3)]
    coordinator.Barrier(path).create()
    # With the barrier up, a bounded wait must time out.
    waiters[0].sync(path)
    assert waiters[0].Barrier(path).wait(timeout=0.3) is False

    # Barrier.wait() is exists(path, watch) and then a wait on that watch.
    # Wrap each waiter's exists() to learn when its watch is registered on
    # the existing node: from then on only the removal may release it.
    registered = [threading.Event() for _ in waiters]
    for client, event in zip(waiters, registered):
        original = client.exists

        def exists(p, watch=None, _original=original, _event=event):
            stat = _original(p, watch=watch)
            if stat is not None and watch is not None:
                _event.set()
            return stat

        client.exists = exists

    removed = threading.Event()
    early = []

    def waiter(client):
        def run():
            client.sync(path)
            passed = client.Barrier(path).wait(timeout=WAIT)
            if not removed.is_set():
                early.append(client.client_id)
            return passed

        return run

    results = {}
    runner = threading.Thread(
        target=lambda: results.setdefault("w", run_concurrently([waiter(c) for c in waiters])),
        daemon=True,
    )
    runner.start()
    for event in registered:
        assert event.wait(WAIT), "a waiter never registered its watch"
    assert early == []
    removed.set()
    assert coordinator.Barrier(path).remove() is True
    runner.join(WAIT + 5)
    assert not runner.is_alive()
    assert results.get("w") == [True] * len(waiters)
    assert early == []
    assert coordinator.exists(path) is None


def test_double_barrier_enter_and_leave_together(make_client, base):
    n = 4
    path = base + "/double"
    clients = [make_client() for _ in range(n)]
    observer = make_client()
    observer.ensure_path(path)
    barriers = [c.DoubleBarrier(path, n, identifier=f"m{i}") for i, c in enumerate(clients)]
    mu = threading.Lock()
    state = {"arrived": 0, "leaving": 0}
    entered, left, violations = [], [], []
    go_last_enter = threading.Event()
    go_last_leave = threading.Event()
    all_entered = threading.Barrier(n)

    def member(i):
        def run():
            if i == n - 1:
                assert go_last_enter.wait(WAIT)
            with mu:
                state["arrived"] += 1
            barriers[i].enter()
            assert barriers[i].participating
            with mu:
                if state["arrived"] != n:
                    violations.append(("entered early", i, state["arrived"]))
                entered.append(i)
            # kazoo's DoubleBarrier races if a member starts leaving (deleting
            # /ready) before a slow member has seen /ready appear; line up
            # in-process so the test exercises the server, not that race.
            all_entered.wait(WAIT)
            if i == n - 1:
                assert go_last_leave.wait(WAIT)
            with mu:
                state["leaving"] += 1
            barriers[i].leave()
            with mu:
                if state["leaving"] != n:
                    violations.append(("left early", i, state["leaving"]))
                left.append(i)

        return run

    gate = Gate(observer, path)
    results = {}
    runner = threading.Thread(
        target=lambda: results.setdefault("r", run_concurrently([member(i) for i in range(n)], timeout=90)),
        daemon=True,
    )
    runner.start()
    gate.wait_for(lambda ch: len(ch) == n - 1, what="n-1 members entering")
    assert entered == [], "a member passed enter() before everyone arrived"
    go_last_enter.set()

    # Everyone but the last leaves. The lowest-named member waits for the
    # others; the rest delete their nodes and wait for the lowest.
    lowest = min(b.node_name for b in barriers)
    remaining = sorted({lowest, barriers[n - 1].node_name})
    gate.wait_for(lambda ch: sorted(entered) == list(range(n)) and ch == remaining, what="all but the last leaving")
    assert left == [], "a member passed leave() before everyone left"
    go_last_leave.set()
    runner.join(90)
    assert not runner.is_alive()
    assert "r" in results
    assert violations == []
    assert sorted(left) == list(range(n))
    gate.wait_for(lambda ch: ch == [], what="barrier empty")


# ====================================================================== Counter


def test_counter_concurrent_increments(make_client, base):
    path = base + "/counter"
    n_clients, increments = 6, 30 * SCALE
    clients = [make_client() for _ in range(n_clients)]

    def worker(client):
        def run():
            counter = client.Counter(path)
            for _ in range(increments):
                counter += 1
                assert counter.post_value == counter.pre_value + 1
            return counter.post_value

        return run

    last_values = run_concurrently([worker(c) for c in clients], timeout=90)
    total = n_clients * increments
    assert max(last_values) == total
    zk = clients[0]
    zk.sync(path)
    counter = zk.Counter(path)
    assert counter.value == total
    counter -= 5
    assert (counter.pre_value, counter.post_value, counter.value) == (total, total - 5, total - 5)
    assert zk.exists(path).version == total + 1


# ====================================================================== queues


def test_queue_every_item_consumed_once(make_client, base):
    path = base + "/queue"
    producers = [make_client() for _ in range(3)]
    consumers = [make_client() for _ in range(4)]
    per_producer = 40 * SCALE

    def producer(i):
        def run():
            q = producers[i].Queue(path)
            for k in range(per_producer):
                q.put(f"{i}-{k}".encode())

        return run

    run_concurrently([producer(i) for i in range(len(producers))])
    expected = sorted(f"{i}-{k}".encode() for i in range(len(producers)) for k in range(per_producer))

    def consumer(client):
        def run():
            client.sync(path)
            q = client.Queue(path)
            got = []
            while True:
                item = q.get()  # None only when the queue is empty
                if item is None:
                    return got
                got.append(item)

        return run

    consumed = run_concurrently([consumer(c) for c in consumers], timeout=90)
    flat = [item for got in consumed for item in got]
    assert sorted(flat) == expected, "an item was lost or consumed twice"
    # Entries are taken in sequence order: per consumer, each producer's items
    # appear in the order they were put.
    for got in consumed:
        for i in range(len(producers)):
            ks = [int(x.split(b"-")[1]) for x in got if x.startswith(f"{i}-".encode())]
            assert ks == sorted(ks), got
    zk = consumers[0]
    assert len(zk.Queue(path)) == 0


def test_queue_priority_order(zk, base):
    q = zk.Queue(base + "/pq")
    q.put(b"low", priority=200)
    q.put(b"high-1", priority=10)
    q.put(b"mid", priority=100)
    q.put(b"high-2", priority=10)
    q.put(b"mid-2", priority=100)
    q.put(b"mid-3", priority=100)
    assert len(q) == 6
    assert [q.get() for _ in range(6)] == [b"high-1", b"high-2", b"mid", b"mid-2", b"mid-3", b"low"]
    assert q.get() is None


def test_locking_queue_get_consume_release(make_client, base):
    path = base + "/lq"
    a, b, c = make_client(), make_client(), make_client()
    qa, qb, qc = a.LockingQueue(path), b.LockingQueue(path), c.LockingQueue(path)
    qa.put_all([b"one", b"two", b"three"])
    assert len(qa) == 3

    assert qa.get(timeout=WAIT) == b"one"
    assert qa.holds_lock()
    assert qa.get(timeout=WAIT) == b"one"  # unconsumed: the same entry again
    b.sync(path)
    assert qb.get(timeout=WAIT) == b"two"  # "one" is locked by a
    assert qa.release()
    assert not qa.holds_lock()
    c.sync(path)
    assert qc.get(timeout=WAIT) == b"one"  # released: available again, lowest first
    assert qb.consume()
    assert not qb.consume()  # nothing held any more
    a.sync(path)
    assert len(qa) == 2
    assert qc.consume()
    a.sync(path)
    assert len(qa) == 1
    assert qa.get(timeout=WAIT) == b"three"
    assert qa.consume()
    assert len(qa) == 0
    b.sync(path)
    assert qb.get(timeout=0.3) is None  # empty: a bounded get times out

    # A holder's lock is ephemeral: when its session ends the entry is free.
    qa.put(b"four")
    assert qa.get(timeout=WAIT) == b"four"
    a.stop()
    assert qb.get(timeout=WAIT) == b"four"
    assert qb.consume()
    assert len(qb) == 0


def test_locking_queue_concurrent_consumers(make_client, base):
    path = base + "/lq"
    producer = make_client()
    consumers = [make_client() for _ in range(4)]
    items = [f"item-{k:04d}".encode() for k in range(60 * SCALE)]
    producer.LockingQueue(path).put_all(items)
    mu = threading.Lock()
    consumed = []
    released = []

    def consumer(idx, client):
        def run():
            q = client.LockingQueue(path)
            gets = 0
            while True:
                with mu:
                    if len(consumed) == len(items):
                        return
                item = q.get(timeout=0.5)  # bounded; re-checks the total
                if item is None:
                    continue
                gets += 1
                if gets % 4 == 0:
                    # Give every fourth entry back: someone must still consume it.
                    assert q.release()
                    with mu:
                        released.append(item)
                    continue
                assert q.consume()
                with mu:
                    consumed.append(item)

        return run

    run_concurrently([consumer(i, c) for i, c in enumerate(consumers)], timeout=90)
    assert sorted(consumed) == items, "an entry was lost or consumed twice"
    assert released, "the test never exercised release()"
    producer.sync(path)
    assert len(producer.LockingQueue(path)) == 0


# ====================================================================== Party


@pytest.mark.parametrize("kind", ["Party", "ShallowParty"])
def test_party_membership(make_client, base, kind):
    path = base + "/party"
    members = [make_client() for _ in range(3)]
    observer = make_client()
    parties = [getattr(m, kind)(path, f"member-{i}") for i, m in enumerate(members)]
    run_concurrently([p.join for p in parties])
    watched = getattr(observer, kind)(path)
    gate = Gate(observer, path)
    gate.wait_for(lambda ch: len(ch) == 3, what="three members")
    assert sorted(watched) == ["member-0", "member-1", "member-2"]
    assert len(watched) == 3

    parties[0].leave()
    gate.wait_for(lambda ch: len(ch) == 2, what="member-0 leaving")
    assert sorted(watched) == ["member-1", "member-2"]

    members[1].stop()  # session ends: its ephemeral membership goes
    gate.wait_for(lambda ch: len(ch) == 1, what="member-1's session ending")
    assert list(watched) == ["member-2"]
    parties[2].leave()
    gate.wait_for(lambda ch: ch == [], what="empty party")
    assert len(watched) == 0


# ====================================================================== watches


def test_children_watch_sees_final_membership(make_client, base):
    parent = base + "/cw"
    watcher = make_client()
    writers = [make_client() for _ in range(3)]
    watcher.create(parent)
    seen = Recorder()
    watcher.ChildrenWatch(parent, lambda children: seen.append(sorted(children)))
    seen.wait_for(lambda s: s and s[-1] == [], what="the initial empty list")

    per_writer = 10 * SCALE

    def creator(i, client):
        def run():
            # writer 2's children are ephemeral: they go with its session.
            for k in range(per_writer):
                client.create(f"{parent}/w{i}-{k:04d}", b"", ephemeral=(i == 2))

        return run

    run_concurrently([creator(i, c) for i, c in enumerate(writers)])
    everyone = sorted(f"w{i}-{k:04d}" for i in range(3) for k in range(per_writer))
    snapshots = seen.wait_for(lambda s: s[-1] == everyone, what="all children")
    sizes = [len(s) for s in snapshots]
    assert sizes == sorted(sizes), "children appeared and then vanished while only creating"
    assert all(set(s) <= set(everyone) for s in snapshots)
    mark = len(snapshots)

    def deleter(i, client):
        def run():
            for k in range(0, per_writer, 2):
                client.delete(f"{parent}/w{i}-{k:04d}")

        return run

    run_concurrently([deleter(i, c) for i, c in enumerate(writers[:2])])
    after_delete = sorted(c for c in everyone if not (c[1] in "01" and int(c[3:]) % 2 == 0))
    snapshots = seen.wait_for(lambda s: s[-1] == after_delete, what="children after deletes")
    sizes = [len(s) for s in snapshots[mark:]]
    assert sizes == sorted(sizes, reverse=True)
    writers[2].stop()
    final = [c for c in after_delete if not c.startswith("w2-")]
    seen.wait_for(lambda s: s[-1] == final, what="ephemeral children gone with their session")


def test_data_watch_sees_every_version_in_order(make_client, base):
    path = base + "/dw"
    writer = make_client()
    watcher = make_client()
    seen = Recorder()

    @watcher.DataWatch(path)
    def on_data(data, stat):
        seen.append((data, stat.version if stat else None))

    seen.wait_for(lambda s: s == [(None, None)], what="the missing node")
    writer.create(path, b"v0")
    seen.wait_for(lambda s: s[-1] == (b"v0", 0), what="creation")

    # Lock-step: each version is seen before the next write, so none may be missed.
    for v in range(1, 11):
        writer.set(path, f"v{v}".encode())
        seen.wait_for(lambda s: s[-1] == (f"v{v}".encode(), v), what=f"version {v}")
    assert seen.items() == [(None, None)] + [(f"v{v}".encode(), v) for v in range(11)]

    # Back to back: versions may coalesce, but never go backwards or mismatch.
    for v in range(11, 41):
        writer.set(path, f"v{v}".encode())
    seen.wait_for(lambda s: s[-1] == (b"v40", 40), what="version 40")
    versions = [v for _, v in seen.items()[1:]]
    assert versions == sorted(set(versions)), versions
    assert all(data == f"v{v}".encode() for data, v in seen.items()[1:])

    writer.delete(path)
    seen.wait_for(lambda s: s[-1] == (None, None), what="deletion")
    writer.create(path, b"again")
    seen.wait_for(lambda s: s[-1] == (b"again", 0), what="re-creation")


def test_watch_events_arrive_in_zxid_order_for_every_client(make_client, base):
    """Each watcher holds a one-shot data watch on every node; two writers
    change the nodes concurrently, each node once. Every watcher must get
    the events in zxid (mzxid) order, hence all in the same order."""
    nodes = [f"{base}/n{k:04d}" for k in range(20 * SCALE)]
    writers = [make_client() for _ in range(2)]
    watchers = [make_client() for _ in range(3)]
    for node in nodes:
        writers[0].create(node, b"0")
    recorders = []
    for w in watchers:
        rec = Recorder()
        w.sync(base)
        for node in nodes:
            w.get(node, watch=lambda event, rec=rec: rec.append((event.type, event.path)))
        recorders.append(rec)

    def writer(i, client):
        def run():
            for node in nodes[i::2]:
                client.set(node, b"1")

        return run

    run_concurrently([writer(i, c) for i, c in enumerate(writers)])
    writers[0].sync(base)
    expected = [(EventType.CHANGED, n) for n in sorted(nodes, key=lambda n: writers[0].exists(n).mzxid)]
    for rec in recorders:
        assert rec.wait_for(lambda e: len(e) == len(nodes), what="every event") == expected


# ====================================================================== TreeCache


def _walk(client, path, out):
    data, stat = client.get(path)
    out[path] = (data, stat.version)
    for child in client.get_children(path):
        _walk(client, path + "/" + child, out)
    return out


def _cache_snapshot(cache, path, out):
    node = cache.get_data(path)
    if node is None:
        return out
    out[path] = (node.data, node.stat.version)
    for child in cache.get_children(path) or ():
        _cache_snapshot(cache, path + "/" + child, out)
    return out


def test_tree_cache_reflects_subtree(make_client, base):
    root = base + "/tree"
    writer = make_client()
    reader = make_client()
    writer.create(root + "/a", b"a0", makepath=True)
    writer.create(root + "/a/x", b"ax")
    writer.create(root + "/b", b"b0")

    events = Recorder()
    reader.sync(root)
    cache = TreeCache(reader, root)
    cache.listen(lambda ev: events.append((ev.event_type, ev.event_data.path if ev.event_data else None)))
    cache.start()
    try:
        events.wait_for(lambda e: (TreeEvent.INITIALIZED, None) in e, what="INITIALIZED")
        assert _cache_snapshot(cache, root, {}) == _walk(writer, root, {})
        assert cache.get_children(root) == frozenset({"a", "b"})
        assert cache.get_data(root + "/a/x").data == b"ax"

        def has(kind, path):
            return lambda e: (kind, path) in e

        writer.create(root + "/b/y", b"by")
        events.wait_for(has(TreeEvent.NODE_ADDED, root + "/b/y"), what="b/y added")
        writer.create(root + "/c/d/e", b"deep", makepath=True)
        events.wait_for(has(TreeEvent.NODE_ADDED, root + "/c/d/e"), what="c/d/e added")
        for v in range(1, 6):
            writer.set(root + "/a", f"a{v}".encode())
        events.wait_for(has(TreeEvent.NODE_UPDATED, root + "/a"), what="a updated")
        wait_until(lambda: cache.get_data(root + "/a").stat.version == 5, what="a at version 5")
        assert cache.get_data(root + "/a").data == b"a5"
        writer.delete(root + "/a/x")
        events.wait_for(has(TreeEvent.NODE_REMOVED, root + "/a/x"), what="a/x removed")
        assert cache.get_children(root + "/a") == frozenset()
        writer.delete(root + "/c", recursive=True)
        events.wait_for(
            lambda e: all((TreeEvent.NODE_REMOVED, root + p) in e for p in ("/c", "/c/d", "/c/d/e")),
            what="c removed",
        )
        assert cache.get_data(root + "/c") is None
        assert _cache_snapshot(cache, root, {}) == _walk(writer, root, {})
    finally:
        cache.close()


# ====================================================================== ensembles

def test_lock_and_election_keep_their_guarantees_while_the_leader_is_killed(cluster, make_client, base):
    """Against 3-member ensembles: lock holders and elected leaders never
    overlap and work goes on while the ensemble's leader is killed (kill -9)
    and replaced; clients ride the failover with their sessions."""
    if not cluster.ensemble:
        pytest.skip("needs an ensemble")
    lock_path, election_path, counter = base + "/lock", base + "/election", base + "/counter"
    workers = [make_client() for _ in range(3)]
    candidates = [make_client() for _ in range(2)]
    workers[0].create(counter, b"0")
    mu = threading.Lock()
    holders, leaders, overlaps, terms = [0], set(), [], []
    stop = threading.Event()

    def locker(client, ident):
        def run():
            lock = client.Lock(lock_path, ident)
            done = 0
            while not stop.is_set():
                if not client.retry(lock.acquire, timeout=WAIT):
                    continue
                try:
                    with mu:
                        holders[0] += 1
                        if holders[0] != 1:
                            overlaps.append(("lock", ident))
                    data, stat = client.retry(client.get, counter)
                    new = str(int(data) + 1).encode()
                    try:
                        client.retry(client.set, counter, new, version=stat.version)
                    except BadVersionError:
                        # A set sent again after its connection was lost in the
                        # failover may have been applied the first time.
                        client.retry(client.sync, counter)
                        assert client.retry(client.get, counter)[0] == new, "the counter moved under our lock"
                    done += 1
                    with mu:
                        holders[0] -= 1
                finally:
                    client.retry(lock.release)
            return done

        return run

    def candidate(client, ident):
        def lead():
            with mu:
                leaders.add(ident)
                if len(leaders) != 1:
                    overlaps.append(("election", sorted(leaders)))
                terms.append(ident)
            time.sleep(0.05)
            with mu:
                leaders.discard(ident)

        def run():
            election = client.Election(election_path, ident)
            while not stop.is_set():
                client.retry(election.run, lead)
            return True

        return run

    results = {}

    def run_all():
        fns = [locker(c, f"locker-{i}") for i, c in enumerate(workers)]
        fns += [candidate(c, f"cand-{i}") for i, c in enumerate(candidates)]
        results["r"] = run_concurrently(fns, timeout=120)

    runner = threading.Thread(target=run_all, daemon=True)
    runner.start()
    observer = make_client()

    def count():
        observer.retry(observer.sync, counter)
        return int(observer.retry(observer.get, counter)[0])

    wait_until(lambda: count() >= 5, what="lock work before the failover")
    leader = cluster.leader()
    assert leader is not None
    cluster.kill(leader)
    before = count()
    wait_until(lambda: count() >= before + 10, what="lock work after the leader was killed")
    elected_before = len(terms)
    wait_until(lambda: len(terms) > elected_before + 2, what="elections after the leader was killed")
    cluster.start(leader)
    cluster.wait_ready()
    stop.set()
    runner.join(WAIT * 4)
    assert not runner.is_alive(), "recipe threads did not stop"
    assert "r" in results
    assert overlaps == []
    done = sum(r for r in results["r"][:3])
    assert count() == done, "every increment under the lock counted once"
