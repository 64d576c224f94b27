"""SASL GSSAPI (Kerberos) through kazoo (pure-sasl over the ``kerberos``
module, MIT's client library), against Apache ZooKeeper and zoocore
configured from the same files: a realm of Debian's MIT KDC started on
loopback (kdc.py), one JAAS file whose ``Server`` section logs in with
``Krb5LoginModule`` from a keytab, and the same ``-D`` flags
(``java.security.auth.login.config``, ``java.security.krb5.conf``,
``zookeeper.superUser``): on ZooKeeper's java command line, in zoocore's
``SERVER_JVMFLAGS``."""

import base64
import os
import socket

import kerberos
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.protocol.serialization import SASL, Connect, ReplyHeader, int_int_struct, int_struct
from kazoo.security import make_acl

from conftest import Cluster, running
from kdc import REALM, SERVICE, kdc
from test_sasl import AUTH_FAILED, SASL_PROVIDER, _recv_frame, assert_refused

KINDS = ["zoocore", "zookeeper"]
ENSEMBLE_KINDS = KINDS + ["zoocore-ensemble", "zookeeper-ensemble"]
CLIENT = f"client@{REALM}"
ADMIN = f"admin@{REALM}"
# A client whose principal has an instance, as services' principals do.
HOST_CLIENT = f"worker/127.0.0.1@{REALM}"


@pytest.fixture(scope="module")
def realm():
    """The realm, its principals, and the clients' tickets in one cache
    collection, this process's KRB5CCNAME: a client names the principal it
    logs in as."""
    with kdc() as r:
        r.service_keytab = r.principal(SERVICE)
        for name in (CLIENT, ADMIN, HOST_CLIENT):
            r.login(name, r.principal(name))
        saved = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")}
        os.environ["KRB5_CONFIG"] = str(r.krb5_conf)
        os.environ["KRB5CCNAME"] = r.caches
        try:
            yield r
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _cluster(kind, realm, tmp_path_factory, extra="", flags=()):
    jaas = tmp_path_factory.mktemp("jaas") / "jaas.conf"
    jaas.write_text(
        f"""Server {{
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{realm.service_keytab}"
    storeKey=true
    useTicketCache=false
    isInitiator=false
    principal="{SERVICE}";
}};
"""
    )
    jvm_flags = [
        f"-Djava.security.auth.login.config={jaas}",
        f"-Djava.security.krb5.conf={realm.krb5_conf}",
        f"-Dzookeeper.superUser={ADMIN}",
        *flags,
    ]
    return Cluster(kind, extra=SASL_PROVIDER + extra, jvm_flags=jvm_flags)


@pytest.fixture(scope="module", params=ENSEMBLE_KINDS)
def kerberos_server(request, realm, tmp_path_factory):
    with running(_cluster(request.param, realm, tmp_path_factory)) as c:
        yield c.hosts


def client(hosts, principal=CLIENT, **kwargs):
    """A started kazoo client logged in with GSSAPI as `principal`."""
    c = KazooClient(hosts=hosts, timeout=10.0, sasl_options={"mechanism": "GSSAPI", "principal": principal}, **kwargs)
    c.start(timeout=15)
    return c


def stop(*clients):
    for c in clients:
        c.stop()
        c.close()


def test_a_kerberos_principal_is_a_sasl_identity(kerberos_server, realm):
    authed = client(kerberos_server)
    anonymous = KazooClient(hosts=kerberos_server, timeout=10.0)
    anonymous.start(timeout=15)
    try:
        acl = make_acl("sasl", credential=CLIENT, all=True)
        authed.create("/krb-1", b"secret", acl=(acl,))
        assert authed.get("/krb-1")[0] == b"secret"
        # Another connection may be on a member that has not applied the
        # create yet: sync first, as any ZooKeeper client must.
        anonymous.sync("/krb-1")
        with pytest.raises(NoAuthError):
            anonymous.get("/krb-1")
        # The "auth" scheme takes the authenticated principal, realm and all.
        authed.create("/krb-auth", acl=(make_acl("auth", "", all=True),))
        assert authed.get_acls("/krb-auth")[0] == [acl]
    finally:
        authed.delete("/krb-1")
        authed.delete("/krb-auth")
        stop(authed, anonymous)


def test_the_super_user_principal_passes_every_acl(kerberos_server, realm):
    owner = client(kerberos_server)
    admin = client(kerberos_server, ADMIN)
    other = client(kerberos_server, HOST_CLIENT)
    try:
        owner.create("/krb-private", b"mine", acl=(make_acl("sasl", CLIENT, all=True),))
        other.sync("/krb-private")
        admin.sync("/krb-private")
        with pytest.raises(NoAuthError):
            other.get("/krb-private")
        assert admin.get("/krb-private")[0] == b"mine"
        admin.delete("/krb-private")
    finally:
        stop(owner, admin, other)


def test_a_principal_with_an_instance_keeps_it(kerberos_server, realm):
    worker = client(kerberos_server, HOST_CLIENT)
    try:
        worker.create("/krb-worker", acl=(make_acl("auth", "", all=True),))
        assert worker.get_acls("/krb-worker")[0] == [make_acl("sasl", HOST_CLIENT, all=True)]
        worker.delete("/krb-worker")
    finally:
        stop(worker)


@pytest.fixture(scope="module", params=KINDS)
def canonicalising_server(request, realm, tmp_path_factory):
    flags = ["-Dzookeeper.kerberos.removeHostFromPrincipal=true", "-Dzookeeper.kerberos.removeRealmFromPrincipal=true"]
    with running(_cluster(request.param, realm, tmp_path_factory, flags=flags)) as c:
        yield c.hosts


def test_host_and_realm_are_removed_when_configured(canonicalising_server, realm):
    worker = client(canonicalising_server, HOST_CLIENT)
    try:
        worker.create("/krb-short", acl=(make_acl("auth", "", all=True),))
        assert worker.get_acls("/krb-short")[0] == [make_acl("sasl", "worker", all=True)]
        worker.delete("/krb-short")
    finally:
        stop(worker)


def exchange(hosts, tokens):
    """A session, then SASL requests carrying `tokens` over a socket of its
    own: each reply's (error, token) until the first error, and whether the
    server then closed the connection. A token may be a function of the
    previous reply's token."""
    host, port = hosts.split(",")[0].rsplit(":", 1)
    replies = []
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        connect = Connect(0, 0, 10000, 0, b"\x00" * 16, False).serialize()
        sock.sendall(int_struct.pack(len(connect)) + connect)
        assert _recv_frame(sock) is not None, "no session"
        last = None
        for xid, token in enumerate(tokens, start=1):
            if callable(token):
                token = token(last)
            body = int_int_struct.pack(xid, SASL.type) + SASL(token).serialize()
            sock.sendall(int_struct.pack(len(body)) + body)
            reply = _recv_frame(sock)
            assert reply is not None, "the connection closed without an answer"
            header, offset = ReplyHeader.deserialize(reply, 0)
            assert header.xid == xid
            if header.err:
                replies.append((header.err, None))
                sock.settimeout(5)
                try:
                    closed = _recv_frame(sock) is None
                except OSError:
                    closed = True
                return replies, closed
            last, _ = SASL.deserialize(reply, offset)
            replies.append((0, last))
        return replies, False


def first_token():
    """The client's first GSSAPI token (an AP-REQ) for the service."""
    _, ctx = kerberos.authGSSClientInit("zookeeper@127.0.0.1", principal=CLIENT)
    kerberos.authGSSClientStep(ctx, "")
    return ctx, base64.b64decode(kerberos.authGSSClientResponse(ctx))


def test_garbage_and_empty_tokens_fail_that_connection_only(kerberos_server, realm):
    assert exchange(kerberos_server, [b"\x60\x05garbage"]) == ([(AUTH_FAILED, None)], True)
    # A DIGEST-MD5 client starts with an empty token: not a GSSAPI context.
    assert exchange(kerberos_server, [b""]) == ([(AUTH_FAILED, None)], True)
    ok = client(kerberos_server)
    try:
        assert ok.exists("/") is not None
    finally:
        stop(ok)


def test_a_replayed_ap_req_is_refused(kerberos_server, realm):
    _, token = first_token()
    replies, closed = exchange(kerberos_server, [token])
    assert replies[0][0] == 0 and not closed
    assert exchange(kerberos_server, [token]) == ([(AUTH_FAILED, None)], True)


def test_the_whole_exchange_on_the_wire(kerberos_server, realm):
    """AP-REQ, AP-REP; an empty acknowledgement, the wrapped offer (no
    security layer, 64 KiB); the wrapped choice, then a null token."""
    ctx, token = first_token()

    def acknowledge(ap_rep):
        assert kerberos.authGSSClientStep(ctx, base64.b64encode(ap_rep).decode()) == kerberos.AUTH_GSS_COMPLETE
        return b""

    offer = {}

    def choose(wrapped):
        kerberos.authGSSClientUnwrap(ctx, base64.b64encode(wrapped).decode())
        offer["plain"] = base64.b64decode(kerberos.authGSSClientResponse(ctx))
        kerberos.authGSSClientWrap(ctx, base64.b64encode(b"\x01\x00\x00\x00" + CLIENT.encode()).decode())
        return base64.b64decode(kerberos.authGSSClientResponse(ctx))

    replies, closed = exchange(kerberos_server, [token, acknowledge, choose])
    assert not closed
    assert [err for err, _ in replies] == [0, 0, 0]
    assert replies[0][1], "no AP-REP"
    assert offer["plain"] == b"\x01\x01\x00\x00"
    assert replies[2][1] is None


def test_a_digest_client_is_refused_by_a_kerberos_server(kerberos_server, realm):
    assert_refused(
        KazooClient(
            hosts=kerberos_server,
            timeout=10.0,
            sasl_options={"mechanism": "DIGEST-MD5", "username": "u", "password": "p"},
            connection_retry={"max_tries": 0},
        )
    )
