"""SASL DIGEST-MD5 through kazoo (with pure-sasl), the four cases of kazoo's own
``kazoo/tests/test_sasl.py`` and more, against Apache ZooKeeper and zoocore
configured from the same files: one JAAS file with a ``Server`` section (given
as ``-Djava.security.auth.login.config``: on ZooKeeper's java command line, in
zoocore's ``SERVER_JVMFLAGS`` as zkEnv.sh passes it), the same zoo.cfg keys and
the same ``-Dzookeeper.superUser``; standalone and as 3-member ensembles."""

import socket

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError, SessionClosedRequireSaslError
from kazoo.protocol.serialization import SASL, Connect, ReplyHeader, int_int_struct, int_struct
from kazoo.security import make_acl
from puresasl.client import SASLClient

from conftest import Cluster, running

JAAS = """
// As kazoo's harness writes it for ZOOKEEPER_JAAS_AUTH=digest.
Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="super_secret"
    user_jaasuser="jaas_password"
    user_admin="admin_password";
};
"""
SASL_PROVIDER = "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n"
KINDS = ["zoocore", "zookeeper"]
# SASL identities travel with the requests a member forwards to its leader.
ENSEMBLE_KINDS = KINDS + ["zoocore-ensemble", "zookeeper-ensemble"]


def _cluster(kind, tmp_path_factory, extra=""):
    jaas = tmp_path_factory.mktemp("jaas") / "jaas.conf"
    jaas.write_text(JAAS)
    flags = [f"-Djava.security.auth.login.config={jaas}", "-Dzookeeper.superUser=admin"]
    return Cluster(kind, extra=SASL_PROVIDER + extra, jvm_flags=flags)


@pytest.fixture(scope="module", params=ENSEMBLE_KINDS)
def sasl_server(request, tmp_path_factory):
    with running(_cluster(request.param, tmp_path_factory)) as c:
        yield c.hosts


def client(hosts, **kwargs):
    return KazooClient(hosts=hosts, timeout=10.0, **kwargs)


def digest(user, password):
    return {"mechanism": "DIGEST-MD5", "username": user, "password": password}


def test_connect_sasl_auth(sasl_server):
    """kazoo's test: a node only the SASL user may touch."""
    acl = make_acl("sasl", credential="jaasuser", all=True)
    authed = client(sasl_server, sasl_options=digest("jaasuser", "jaas_password"))
    anonymous = client(sasl_server)
    authed.start(timeout=15)
    anonymous.start(timeout=15)
    try:
        authed.create("/sasl-1", b"secret", acl=(acl,))
        assert authed.get("/sasl-1")[0] == b"secret"
        # Another connection may be on a member that has not applied the
        # create yet: sync first, as any ZooKeeper client must.
        anonymous.sync("/sasl-1")
        with pytest.raises(NoAuthError):
            anonymous.get("/sasl-1")
        assert authed.get_acls("/sasl-1")[0] == [acl]
    finally:
        authed.delete("/sasl-1")
        for c in (authed, anonymous):
            c.stop()
            c.close()


LEGACY = pytest.mark.filterwarnings("ignore:Passing SASL configuration:DeprecationWarning")


@LEGACY
def test_legacy_connect_sasl_auth(sasl_server):
    """kazoo's legacy form: ("sasl", "user:password") in auth_data."""
    acl = make_acl("sasl", credential="jaasuser", all=True)
    legacy = client(sasl_server, auth_data=[("sasl", "jaasuser:jaas_password")])
    legacy.start(timeout=15)
    try:
        legacy.create("/sasl-legacy", acl=(acl,))
        # The "auth" scheme takes the SASL identity too.
        legacy.create("/sasl-auth", acl=(make_acl("auth", "", all=True),))
        assert legacy.get_acls("/sasl-auth")[0] == [acl]
    finally:
        legacy.delete("/sasl-legacy")
        legacy.delete("/sasl-auth")
        legacy.stop()
        legacy.close()


def _recv_frame(sock):
    """One length-prefixed frame, or None when the server closed."""
    header = b""
    while len(header) < 4:
        chunk = sock.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    (length,) = int_struct.unpack(header)
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body


def sasl_exchange(hosts, user, password):
    """A session, then the DIGEST-MD5 exchange as kazoo runs it, over a socket
    of its own (kazoo's client hides what the server answered): the error code
    of the last reply (0 when the exchange completed) and whether the server
    then closed the connection."""
    host, port = hosts.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        connect = Connect(0, 0, 10000, 0, b"\x00" * 16, False).serialize()
        sock.sendall(int_struct.pack(len(connect)) + connect)
        assert _recv_frame(sock) is not None, "no session"
        sasl = SASLClient("zk-sasl-md5", service="zookeeper", mechanism="DIGEST-MD5", username=user, password=password)
        challenge, xid = None, 0
        while not sasl.complete:
            response = sasl.process(challenge) or b""
            if sasl.complete and not response:
                break
            xid += 1
            body = int_int_struct.pack(xid, SASL.type) + SASL(response).serialize()
            sock.sendall(int_struct.pack(len(body)) + body)
            reply = _recv_frame(sock)
            assert reply is not None, "the connection closed without an answer"
            header, offset = ReplyHeader.deserialize(reply, 0)
            assert header.xid == xid
            if header.err:
                sock.settimeout(5)
                try:
                    closed = _recv_frame(sock) is None
                except OSError:
                    closed = True
                return header.err, closed
            challenge, _ = SASL.deserialize(reply, offset)
        return 0, False


AUTH_FAILED = -115
SESSION_CLOSED_REQUIRE_SASL_AUTH = -124


@pytest.mark.parametrize("user, password", [("baduser", "badpassword"), ("jaasuser", "wrong")])
def test_invalid_sasl_auth(sasl_server, user, password):
    """kazoo's test (a failed exchange is AuthFailed, kazoo's AUTH_FAILED),
    on the wire: the server answers AuthFailed and closes the connection."""
    assert sasl_exchange(sasl_server, user, password) == (AUTH_FAILED, True)
    assert sasl_exchange(sasl_server, "jaasuser", "jaas_password") == (0, False)


@LEGACY
@pytest.mark.parametrize("options", [{"sasl_options": digest("baduser", "x")}, {"auth_data": [("sasl", "baduser:x")]}])
def test_kazoo_stops_connecting_after_a_failed_exchange(sasl_server, options):
    assert_refused(client(sasl_server, **options))


def assert_refused(c):
    """kazoo's start() returns once the session is open, before the SASL
    exchange fails (or reports the failure itself, depending on timing);
    either way no request gets an answer. The wire-level tests pin the
    exact error code."""
    try:
        try:
            c.start(timeout=15)
        except Exception:  # noqa: BLE001 - any report of the refusal will do
            pass
        with pytest.raises(Exception):
            c.exists("/")
    finally:
        c.stop()
        c.close()


def test_super_user_from_the_jvm_flags_passes_every_acl(sasl_server):
    owner = client(sasl_server, sasl_options=digest("jaasuser", "jaas_password"))
    admin = client(sasl_server, sasl_options=digest("admin", "admin_password"))
    owner.start(timeout=15)
    admin.start(timeout=15)
    try:
        owner.create("/sasl-private", b"mine", acl=(make_acl("sasl", "jaasuser", all=True),))
        admin.sync("/sasl-private")
        assert admin.get("/sasl-private")[0] == b"mine"
        admin.delete("/sasl-private")
    finally:
        for c in (owner, admin):
            c.stop()
            c.close()


@pytest.fixture(scope="module", params=KINDS)
def enforcing_server(request, tmp_path_factory):
    extra = "enforce.auth.enabled=true\nenforce.auth.schemes=sasl\n"
    with running(_cluster(request.param, tmp_path_factory, extra)) as c:
        yield c.hosts


def _refused(hosts, call, **kwargs):
    """A client the enforced scheme does not admit: ``call`` on it fails."""
    c = client(hosts, connection_retry={"max_tries": 0}, **kwargs)
    c.start(timeout=15)
    try:
        with pytest.raises(SessionClosedRequireSaslError):
            call(c)
    finally:
        c.stop()
        c.close()


def test_enforced_authentication_refuses_sessions_without_sasl(enforcing_server):
    _refused(enforcing_server, lambda c: c.exists("/"))
    # A digest identity is not the scheme enforced either.
    _refused(enforcing_server, lambda c: c.get_children("/"), auth_data=[("digest", "u:p")])
    authed = client(enforcing_server, sasl_options=digest("jaasuser", "jaas_password"))
    authed.start(timeout=15)
    try:
        assert "zookeeper" in authed.get_children("/")
    finally:
        authed.stop()
        authed.close()


def test_enforced_authentication_with_a_wrong_password(enforcing_server):
    """With SASL enforced, a failed exchange is answered with
    SessionClosedRequireSaslAuth instead of AuthFailed."""
    assert sasl_exchange(enforcing_server, "jaasuser", "wrong") == (SESSION_CLOSED_REQUIRE_SASL_AUTH, True)
