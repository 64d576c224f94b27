//! TLS on `secureClientPort`, beyond kazoo's comparison with ZooKeeper
//! (`server/tests/kazoo/test_tls.py`): a client that stalls its handshake
//! is dropped after `ssl.handshakeDetectionTimeoutMillis` while others are
//! served, and settings zoocore cannot honour stop it with the key named.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::records::PathWatchRequest;
use zoocore_net::Request;
use zoocore_testkit::zk::free_port;
use zoocore_testkit::zoocore::ZoocoreProcess;

/// A CA and a server key store made by openssl, in a directory removed on drop.
struct Pki(PathBuf);

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "zoocore-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("run openssl (scripts/install-deps.sh installs it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        let store = std::fs::read_to_string(dir.join("server.key")).expect("key")
            + &std::fs::read_to_string(dir.join("server.pem")).expect("cert");
        std::fs::write(dir.join("store.pem"), store).expect("store");
        Pki(dir)
    }

    fn keys(&self, secure_port: u16) -> String {
        format!(
            "secureClientPort={secure_port}\nssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
             ssl.trustStore.location={}\nssl.clientAuth=want\nssl.handshakeDetectionTimeoutMillis=500",
            self.0.join("store.pem").display(),
            self.0.join("ca.pem").display()
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
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
