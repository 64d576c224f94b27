"""TLS on ``secureClientPort`` through kazoo, against Apache ZooKeeper (its
Netty connection factory) and zoocore configured from the same zoo.cfg keys
and the same PEM files, which openssl makes here: a CA, a server key store
(key and certificate in one PEM file, ZooKeeper 3.8's PEM type) and a client
certificate whose subject becomes the connection's ``x509`` identity."""

import contextlib
import socket
import subprocess

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import make_acl

from conftest import Cluster, free_port, running

CLIENT_SUBJECT = "CN=kazoo-client,O=zoocore-tests"
ADMIN_SUBJECT = "CN=kazoo-admin,O=zoocore-tests"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=zoocore-test-ca", cwd=d)
    # Version 3 certificates (an extension each): rustls, like every current
    # TLS stack but Java's, refuses the version 1 that openssl makes without.
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    (d / "admin.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in [
        ("server", "/CN=localhost"),
        ("client", "/O=zoocore-tests/CN=kazoo-client"),
        ("admin", "/O=zoocore-tests/CN=kazoo-admin"),
    ]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    # A client certificate from a CA the servers do not trust.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem",
            "-days", "2", "-subj", "/CN=untrusted-ca", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out", "stranger.csr",
            "-subj", "/CN=stranger", cwd=d)
    openssl("x509", "-req", "-in", "stranger.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
            "-CAcreateserial", "-out", "stranger.pem", "-days", "2", "-extfile", "client.ext", cwd=d)
    # A client certificate of the trusted CA that expired in 2020: `openssl
    # ca` can date a certificate in the past, `openssl x509` cannot.
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test_ca\n[test_ca]\ndatabase = index.txt\nnew_certs_dir = .\n"
        "serial = serial\ndefault_md = sha256\npolicy = anything\n[anything]\ncommonName = supplied\n"
    )
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "expired.key", "-out", "expired.csr",
            "-subj", "/CN=expired", cwd=d)
    openssl("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "expired.csr",
            "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
            "-extfile", "client.ext", "-notext", cwd=d)
    # The server's key store: its key and certificate in one PEM file.
    (d / "server-store.pem").write_text((d / "server.key").read_text() + (d / "server.pem").read_text())
    return d


@pytest.fixture(scope="module", params=["zoocore", "zookeeper"])
def tls_server(request, pki):
    secure = free_port()
    extra = (
        f"secureClientPort={secure}\n"
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
        f"ssl.keyStore.location={pki / 'server-store.pem'}\n"
        "ssl.keyStore.type=PEM\n"
        f"ssl.trustStore.location={pki / 'ca.pem'}\n"
        "ssl.trustStore.type=PEM\n"
        "ssl.clientAuth=need\n"
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n"
    )
    # The x509 super user, as a JVM flag (zoocore: in SERVER_JVMFLAGS).
    flags = [f"-Dzookeeper.X509AuthenticationProvider.superUser={ADMIN_SUBJECT}"]
    with running(Cluster(request.param, extra=extra, jvm_flags=flags)) as c:
        yield c.hosts, f"127.0.0.1:{secure}"


def tls_client(hosts, pki, name="client", **kwargs):
    return KazooClient(
        hosts=hosts,
        use_ssl=True,
        ca=str(pki / "ca.pem"),
        certfile=str(pki / f"{name}.pem"),
        keyfile=str(pki / f"{name}.key"),
        verify_certs=True,
        timeout=10.0,
        **kwargs,
    )


@contextlib.contextmanager
def tls_and_plain(secure_hosts, plain_hosts, pki):
    """A started TLS client and a started plaintext one, stopped after."""
    clients = (tls_client(secure_hosts, pki), KazooClient(hosts=plain_hosts, timeout=10.0))
    try:
        for k in clients:
            k.start(timeout=15)
        yield clients
    finally:
        for k in clients:
            k.stop()
            k.close()


def test_a_tls_client_gets_its_certificate_s_x509_identity(tls_server, pki):
    plain_hosts, secure_hosts = tls_server
    with tls_and_plain(secure_hosts, plain_hosts, pki) as (c, plain):
        acl = make_acl("x509", CLIENT_SUBJECT, all=True)
        c.create("/tls-mine", b"over tls", acl=(acl,))
        assert c.get("/tls-mine")[0] == b"over tls"
        with pytest.raises(NoAuthError):
            plain.get("/tls-mine")
        # The "auth" scheme takes the x509 identity as it takes digest ones.
        c.create("/tls-auth", acl=(make_acl("auth", "", all=True),))
        assert c.get_acls("/tls-auth")[0] == [acl]
        c.delete("/tls-mine")
        c.delete("/tls-auth")


def test_the_x509_super_user_passes_every_acl(tls_server, pki):
    _, secure_hosts = tls_server
    owner = tls_client(secure_hosts, pki)
    admin = tls_client(secure_hosts, pki, name="admin")
    owner.start(timeout=15)
    admin.start(timeout=15)
    try:
        owner.create("/tls-private", b"mine", acl=(make_acl("x509", CLIENT_SUBJECT, all=True),))
        admin.sync("/tls-private")
        assert admin.get("/tls-private")[0] == b"mine"
        admin.delete("/tls-private")
    finally:
        for k in (owner, admin):
            k.stop()
            k.close()


def test_a_client_without_a_certificate_is_refused_when_auth_is_needed(tls_server, pki):
    _, secure_hosts = tls_server
    c = KazooClient(hosts=secure_hosts, use_ssl=True, ca=str(pki / "ca.pem"), verify_certs=True,
                    timeout=5.0, connection_retry={"max_tries": 0})
    try:
        with pytest.raises(Exception):
            c.start(timeout=5)
    finally:
        c.stop()
        c.close()


@pytest.mark.parametrize("name", ["stranger", "expired"])
def test_a_certificate_from_an_untrusted_ca_or_expired_is_refused(tls_server, pki, name):
    """`stranger`: signed by a CA the servers do not trust; `expired`: by
    the trusted CA, expired in 2020. That connection only is refused."""
    plain_hosts, secure_hosts = tls_server
    c = tls_client(secure_hosts, pki, name=name, connection_retry={"max_tries": 0})
    try:
        with pytest.raises(Exception):
            c.start(timeout=5)
        assert not c.connected
    finally:
        c.stop()
        c.close()
    with tls_and_plain(secure_hosts, plain_hosts, pki) as (ok, _):
        assert ok.exists("/") is not None


def test_plaintext_on_the_tls_port_closes_that_connection_only(tls_server, pki):
    plain_hosts, secure_hosts = tls_server
    host, port = secure_hosts.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        # A ZooKeeper connect request, in the clear.
        s.sendall(b"\x00\x00\x00\x2c" + b"\x00" * 44)
        s.settimeout(10)
        try:
            answer = s.recv(4096)
        except (ConnectionResetError, socket.timeout):
            answer = b""
        # Whatever a TLS stack answers (an alert or nothing), never a
        # ZooKeeper connect response, and then the connection is over.
        assert not answer.startswith(b"\x00\x00\x00"), answer
    c = tls_client(secure_hosts, pki)
    c.start(timeout=15)
    try:
        assert c.exists("/") is not None
    finally:
        c.stop()
        c.close()


@pytest.fixture(scope="module", params=["zoocore", "zookeeper"])
def unified_server(request, pki):
    extra = (
        "client.portUnification=true\n"
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n"
        f"ssl.keyStore.location={pki / 'server-store.pem'}\n"
        "ssl.keyStore.type=PEM\n"
        f"ssl.trustStore.location={pki / 'ca.pem'}\n"
        "ssl.trustStore.type=PEM\n"
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n"
    )
    with running(Cluster(request.param, extra=extra)) as c:
        yield c.hosts


def test_port_unification_serves_tls_and_plaintext_on_the_client_port(unified_server, pki):
    with tls_and_plain(unified_server, unified_server, pki) as (secure, plain):
        acl = make_acl("x509", CLIENT_SUBJECT, all=True)
        secure.create("/unified", b"tls", acl=(acl,))
        with pytest.raises(NoAuthError):
            plain.get("/unified")
        plain.create("/unified-plain", b"clear")
        assert secure.get("/unified-plain")[0] == b"clear"
        secure.delete("/unified")
        secure.delete("/unified-plain")
