//! Certificates for TLS tests and benchmarks, made by openssl: a CA, a
//! server key store for 127.0.0.1 and client key stores, each key store
//! the key and its certificate in one PEM file (ZooKeeper 3.8's `PEM`
//! type). Version 3 certificates (an extension each), as rustls requires.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::zk::free_port;

/// A CA and a server key store in a directory removed on drop.
pub struct Pki(pub PathBuf);

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "zoocore-tls-{}-{}",
            std::process::id(),
            free_port()
        ));
        Pki::in_dir(&dir)
    }

    /// As `new`, in `dir` (emptied first).
    pub fn in_dir(dir: &Path) -> Pki {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("pki dir");
        let pki = Pki(dir.to_owned());
        pki.openssl(&[
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
        std::fs::write(pki.0.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        pki.issue_server("/CN=localhost");
        pki
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("run openssl (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key and a certificate for `name` signed by the CA, with the
    /// extensions of `name.ext`, and its key store, `name-store.pem`,
    /// replaced in one rename as a certificate renewal tool would.
    fn issue(&self, name: &str, subject: &str) {
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
        let store = std::fs::read_to_string(self.0.join(&key)).expect("key")
            + &std::fs::read_to_string(self.0.join(&cert)).expect("cert");
        std::fs::write(self.0.join("store.tmp"), store).expect("store");
        std::fs::rename(
            self.0.join("store.tmp"),
            self.0.join(format!("{name}-store.pem")),
        )
        .expect("rename");
    }

    /// A new server key and certificate (`server-store.pem`, `server.pem`).
    pub fn issue_server(&self, subject: &str) {
        self.issue("server", subject);
    }

    /// A client key store: `client-store.pem`.
    pub fn issue_client(&self, subject: &str) {
        std::fs::write(self.0.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        self.issue("client", subject);
    }

    /// zoo.cfg keys for a `secureClientPort` with these stores, asking
    /// clients for a certificate as `client_auth` says (none, want, need).
    pub fn keys_with(&self, secure_port: u16, client_auth: &str) -> String {
        format!(
            "secureClientPort={secure_port}\nssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
             ssl.trustStore.location={}\nssl.trustStore.type=PEM\nssl.clientAuth={client_auth}\n\
             ssl.handshakeDetectionTimeoutMillis=500",
            self.0.join("server-store.pem").display(),
            self.0.join("ca.pem").display()
        )
    }

    /// `keys_with(secure_port, "want")`.
    pub fn keys(&self, secure_port: u16) -> String {
        self.keys_with(secure_port, "want")
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
