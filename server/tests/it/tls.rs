//! TLS on `secureClientPort`, beyond kazoo's comparison with ZooKeeper
//! (`server/tests/kazoo/test_tls.py`): a client that stalls its handshake
//! is dropped after `ssl.handshakeDetectionTimeoutMillis` while others are
//! served, a renewed certificate is served without a restart, settings
//! zoocore cannot honour stop it with the key named, and members with
//! `sslQuorum` replicate over TLS and refuse a plaintext peer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::{perms, CreateMode};
use zoocore_net::records::{CreateRequest, PathWatchRequest};
use zoocore_net::{Acl, Request};
use zoocore_testkit::ensemble::Ensemble;
use zoocore_testkit::pki::Pki;
use zoocore_testkit::zk::free_port;
use zoocore_testkit::zoocore::ZoocoreProcess;

/// The server certificate the key store holds now.
fn server_cert(pki: &Pki) -> Vec<u8> {
    CertificateDer::pem_file_iter(pki.0.join("server.pem"))
        .expect("server.pem")
        .next()
        .expect("a certificate")
        .expect("parses")
        .to_vec()
}

/// The certificate the server at `port` presents in a handshake.
#[allow(deprecated)]
fn presented(port: u16, pki: &Pki) -> Vec<u8> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.0.join("ca.pem")).expect("ca.pem") {
        roots.add(cert.expect("parses")).expect("a CA");
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let conn = ClientConnection::new(Arc::new(config), name).expect("client");
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    tls.conn.peer_certificates().expect("a certificate")[0].to_vec()
}

#[test]
fn a_renewed_server_certificate_is_used_without_a_restart() {
    let pki = Pki::new();
    let secure = free_port();
    let _server = ZoocoreProcess::start(binary(), &pki.keys(secure));
    assert_eq!(presented(secure, &pki), server_cert(&pki));
    pki.issue_server("/CN=renewed");
    let renewed = server_cert(&pki);
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(secure, &pki) != renewed {
        assert!(
            Instant::now() < deadline,
            "still the old certificate after 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zoocore"))
}

#[test]
fn a_stalled_tls_handshake_is_dropped_while_others_are_served() {
    let pki = Pki::new();
    let secure = free_port();
    let server = ZoocoreProcess::start(binary(), &pki.keys(secure));
    let mut stalled =
        TcpStream::connect(("127.0.0.1", secure)).expect("connect to the secure port");
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // Half a ClientHello, and then nothing.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .expect("write");
    let mut other = Client::connect(server.addr, &ConnectOptions::default()).expect("connect");
    let reply = other
        .call(&Request::Exists(PathWatchRequest {
            path: "/".into(),
            watch: false,
        }))
        .expect("served meanwhile");
    assert_eq!(reply.header.err, 0);
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the stalled connection got {:?}", &buf[..n]);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "dropped only after {:?}",
        started.elapsed()
    );
    assert!(
        server.log().contains("TLS handshake not finished in time"),
        "{}",
        server.log()
    );
}

#[test]
fn tls_settings_zoocore_cannot_honour_stop_it_with_the_key_named() {
    let pki = Pki::new();
    let server = ZoocoreProcess::start(binary(), &pki.keys(free_port()));
    let cfg = server.dir.join("zoo.cfg");
    let original = std::fs::read_to_string(&cfg).expect("zoo.cfg");
    for (line, named) in [
        ("ssl.keyStore.type=PKCS12", "ssl.keyStore.type=PKCS12"),
        (
            "ssl.keyStore.location=/nonexistent/store.pem",
            "ssl.keyStore.location /nonexistent/store.pem",
        ),
        ("ssl.enabledProtocols=TLSv1.1", "TLSv1.1 is not supported"),
        (
            "ssl.ciphersuites=TLS_RSA_WITH_RC4_128_MD5",
            "TLS_RSA_WITH_RC4_128_MD5 is not supported",
        ),
        (
            "ssl.clientAuth=sometimes",
            "ssl.clientAuth must be none, want or need",
        ),
    ] {
        std::fs::write(&cfg, format!("{original}\n{line}\n")).expect("write zoo.cfg");
        let stderr = server.refused_start();
        assert!(stderr.contains(named), "{line}: {stderr}");
    }
}

#[test]
fn members_with_ssl_quorum_replicate_over_tls_and_refuse_a_plaintext_peer() {
    let pki = Pki::new();
    let keys = format!(
        "sslQuorum=true\nssl.quorum.keyStore.location={}\nssl.quorum.keyStore.type=PEM\n\
         ssl.quorum.trustStore.location={}\nssl.quorum.trustStore.type=PEM\n",
        pki.0.join("server-store.pem").display(),
        pki.0.join("ca.pem").display()
    );
    let e = Ensemble::start(binary(), 3, &keys);
    let leader = e.wait_leader(Duration::from_secs(30));
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let mut c = Client::connect(e.member(follower).client, &ConnectOptions::default())
        .expect("connect to a follower");
    let reply = c
        .call(&Request::Create(CreateRequest {
            path: "/over-quorum-tls".into(),
            data: Some(b"replicated".to_vec()),
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            flags: CreateMode::Persistent as i32,
        }))
        .expect("create through a follower");
    assert_eq!(reply.header.err, 0, "a write through a follower commits");
    for id in 1..=3 {
        let log = e.log(id);
        assert!(
            log.contains("connected to peer over TLS"),
            "member {id}: {log}"
        );
    }
    // A plaintext peer hello is a failed handshake: that connection only.
    let mut plain =
        TcpStream::connect(("127.0.0.1", e.member(leader).peer_port)).expect("peer port");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"\0\0\0\x10not a tls hello!")
        .expect("write");
    let mut buf = [0u8; 256];
    let mut read_all = 0;
    while let Ok(n) = plain.read(&mut buf) {
        if n == 0 {
            break;
        }
        read_all += n;
        assert!(read_all < 4096, "the peer port kept talking");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.log(leader).contains("TLS handshake with a peer failed") {
        assert!(Instant::now() < deadline, "{}", e.log(leader));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(e.wait_leader(Duration::from_secs(30)), leader);
}

#[test]
fn a_tls_handshake_holds_its_place_under_max_client_cnxns() {
    let pki = Pki::new();
    let secure = free_port();
    let server =
        ZoocoreProcess::start(binary(), &format!("{}\nmaxClientCnxns=1", pki.keys(secure)));
    let mut stalled =
        TcpStream::connect(("127.0.0.1", secure)).expect("connect to the secure port");
    stalled.write_all(&[0x16, 0x03, 0x01]).expect("write");
    // Until the handshake is dropped, this address has no connection left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Client::connect(server.addr, &ConnectOptions::default()).is_ok() {
        assert!(
            Instant::now() < deadline,
            "a second connection was admitted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server
        .log()
        .contains("too many connections from one address"));
    // The handshake times out (500 ms) and gives its place back.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Client::connect(server.addr, &ConnectOptions::default()).is_err() {
        assert!(Instant::now() < deadline, "the place was never given back");
        std::thread::sleep(Duration::from_millis(50));
    }
}
