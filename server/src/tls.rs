//! TLS on `secureClientPort` (rustls), configured with ZooKeeper's keys:
//! `ssl.keyStore.location` (a PEM file with the private key and the
//! certificate chain, ZooKeeper 3.8's `PEM` type), `ssl.trustStore.location`
//! (PEM CA certificates), `ssl.clientAuth` (`none`, `want`, `need`: the
//! default, as ZooKeeper's), `ssl.protocol`, `ssl.enabledProtocols`,
//! `ssl.ciphersuites`, `ssl.handshakeDetectionTimeoutMillis`. A verified
//! client certificate makes the connection's `x509` identity: its subject
//! as Java's `X500Principal.getName()` writes it (RFC 2253, most specific
//! first), which ZooKeeper's X509 provider uses.
//!
//! Everything is checked before the server starts: a missing or unreadable
//! file, an encrypted key, a PKCS12 or JKS store, an unknown protocol or
//! cipher suite stop it with the key named.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::ring::ALL_CIPHER_SUITES;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use x509_parser::prelude::{FromDer, X509Certificate};
use zoocore_net::tls::{read_certs, read_roots, ring_provider};

/// The TLS configuration the shards take for each new connection, rebuilt
/// by a watcher thread when the key or trust store file changes (a renewed
/// certificate takes effect without a restart, as ZooKeeper's
/// `client.certReload`); a file that no longer loads keeps the old one.
pub struct ServerTls {
    current: RwLock<Arc<ServerConfig>>,
}

/// How often the watcher looks at the stores' modification times.
const RELOAD_POLL: Duration = Duration::from_secs(1);

impl ServerTls {
    /// The configuration a connection accepted now uses.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Builds the configuration and starts its watcher; `None` without a
    /// TLS port.
    pub fn start(settings: &TlsSettings) -> Result<Option<Arc<ServerTls>>, String> {
        let Some(config) = settings.server_config()? else {
            return Ok(None);
        };
        let tls = Arc::new(ServerTls {
            current: RwLock::new(config),
        });
        let (watched, settings) = (tls.clone(), settings.clone());
        std::thread::Builder::new()
            .name("tls-reload".into())
            .spawn(move || watched.watch(&settings))
            .map_err(|e| format!("cannot start the TLS file watcher: {e}"))?;
        Ok(Some(tls))
    }

    fn watch(&self, settings: &TlsSettings) {
        let files: Vec<PathBuf> = [&settings.key_store, &settings.trust_store]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let stamp = |files: &[PathBuf]| -> Vec<Option<SystemTime>> {
            files
                .iter()
                .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
                .collect()
        };
        let mut seen = stamp(&files);
        loop {
            std::thread::sleep(RELOAD_POLL);
            let now = stamp(&files);
            if now == seen {
                continue;
            }
            seen = now;
            match settings.server_config() {
                Ok(Some(config)) => {
                    match self.current.write() {
                        Ok(mut current) => *current = config,
                        Err(poisoned) => *poisoned.into_inner() = config,
                    }
                    tracing::info!(files = ?files, "TLS key or trust store changed: reloaded");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "TLS key or trust store changed but does not load; keeping the old one")
                }
            }
        }
    }
}

/// zoo.cfg's TLS keys.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub secure_client_port: Option<u16>,
    /// `secureClientPortAddress`; else clientPortAddress's.
    pub secure_client_port_address: Option<std::net::IpAddr>,
    pub key_store: Option<PathBuf>,
    pub key_store_password: Option<String>,
    pub key_store_type: Option<String>,
    pub trust_store: Option<PathBuf>,
    pub trust_store_type: Option<String>,
    pub client_auth: Option<String>,
    pub protocol: Option<String>,
    pub enabled_protocols: Option<String>,
    pub cipher_suites: Option<String>,
    pub handshake_timeout_ms: Option<u64>,
    /// `client.portUnification`: the client port takes TLS too.
    pub port_unification: bool,
}

/// How long a client may take over its handshake (ZooKeeper's
/// `ssl.handshakeDetectionTimeoutMillis` default).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(5000);

impl TlsSettings {
    /// Takes a zoo.cfg key; `None` when it is not a TLS key.
    pub fn apply(&mut self, key: &str, value: &str) -> Option<Result<(), String>> {
        let key = key.strip_prefix("zookeeper.").unwrap_or(key);
        let text = || Some(value.trim().to_owned());
        match key {
            "secureClientPort" => match value.trim().parse() {
                Ok(port) => self.secure_client_port = Some(port),
                Err(_) => return Some(Err(format!("secureClientPort {value:?} is not a port"))),
            },
            "secureClientPortAddress" => match value.trim().parse() {
                Ok(ip) => self.secure_client_port_address = Some(ip),
                Err(_) => {
                    return Some(Err(format!(
                        "secureClientPortAddress {value:?} is not an address"
                    )))
                }
            },
            "ssl.keyStore.location" => self.key_store = Some(PathBuf::from(value.trim())),
            "ssl.keyStore.password" => self.key_store_password = text(),
            "ssl.keyStore.type" => self.key_store_type = text(),
            "ssl.trustStore.location" => self.trust_store = Some(PathBuf::from(value.trim())),
            "ssl.trustStore.type" => self.trust_store_type = text(),
            "ssl.clientAuth" => self.client_auth = text(),
            "ssl.protocol" => self.protocol = text(),
            "ssl.enabledProtocols" => self.enabled_protocols = text(),
            "ssl.ciphersuites" => self.cipher_suites = text(),
            "client.portUnification" => {
                self.port_unification = value.trim().eq_ignore_ascii_case("true");
            }
            "ssl.handshakeDetectionTimeoutMillis" => match value.trim().parse() {
                Ok(ms) => self.handshake_timeout_ms = Some(ms),
                Err(_) => return Some(Err(format!("{key} must be milliseconds"))),
            },
            // Accepted as ZooKeeper configurations carry them; the trust
            // store has no password in PEM, and zoocore has one factory.
            "ssl.trustStore.password" | "serverCnxnFactory" | "ssl.hostnameVerification" => {}
            _ => return None,
        }
        Some(Ok(()))
    }

    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout_ms
            .map_or(HANDSHAKE_TIMEOUT, Duration::from_millis)
    }

    /// The rustls configuration for the secure port (or the unified client
    /// port); `None` without either.
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, String> {
        if self.secure_client_port.is_none() && !self.port_unification {
            return Ok(None);
        }
        self.build_server_config(self.client_auth.as_deref().unwrap_or("need"))
            .map(Some)
    }

    /// Both ends of a peer connection (`sslQuorum` with these settings read
    /// from the `ssl.quorum.*` keys): members present their key store's
    /// certificate each way and check the other's against the trust store,
    /// the dialed one's against the address dialed.
    pub fn peer_configs(&self) -> Result<(Arc<ServerConfig>, Arc<rustls::ClientConfig>), String> {
        let server = self
            .build_server_config("need")
            .map_err(|e| e.replace("ssl.", "ssl.quorum."))?;
        let key_store = self
            .key_store
            .as_ref()
            .ok_or("sslQuorum needs ssl.quorum.keyStore.location")?;
        let trust = self
            .trust_store
            .as_ref()
            .ok_or("sslQuorum needs ssl.quorum.trustStore.location")?;
        let roots = read_roots(trust, "ssl.quorum.trustStore.location")?;
        let chain = read_certs(key_store, "ssl.quorum.keyStore.location")?;
        let key = PrivateKeyDer::from_pem_file(key_store).map_err(|e| {
            format!(
                "ssl.quorum.keyStore.location {}: no private key: {e}",
                key_store.display()
            )
        })?;
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(self.provider()?))
            .with_protocol_versions(&self.protocol_versions()?)
            .map_err(|e| format!("ssl.quorum.ciphersuites and ssl.quorum.enabledProtocols: {e}"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("ssl.quorum.keyStore.location {}: {e}", key_store.display()))?;
        Ok((server, Arc::new(client)))
    }

    fn provider(&self) -> Result<CryptoProvider, String> {
        let mut provider = ring_provider();
        if let Some(names) = &self.cipher_suites {
            provider.cipher_suites = cipher_suites(names)?;
        }
        Ok(provider)
    }

    fn build_server_config(&self, client_auth: &str) -> Result<Arc<ServerConfig>, String> {
        for (key, kind) in [
            ("ssl.keyStore.type", &self.key_store_type),
            ("ssl.trustStore.type", &self.trust_store_type),
        ] {
            if let Some(kind) = kind.as_deref().filter(|k| !k.eq_ignore_ascii_case("PEM")) {
                return Err(format!(
                    "{key}={kind}: zoocore reads PEM stores only (ZooKeeper 3.8's PEM type); convert with openssl"
                ));
            }
        }
        let key_store = self
            .key_store
            .as_ref()
            .ok_or("secureClientPort and client.portUnification need ssl.keyStore.location")?;
        let chain = read_certs(key_store, "ssl.keyStore.location")?;
        let text = std::fs::read(key_store)
            .map_err(|e| format!("ssl.keyStore.location {}: {e}", key_store.display()))?;
        // PKCS#8 `ENCRYPTED PRIVATE KEY` blocks and OpenSSL's legacy
        // `Proc-Type: 4,ENCRYPTED` headers.
        let encrypted = [&b"ENCRYPTED PRIVATE KEY"[..], b"Proc-Type: 4,ENCRYPTED"]
            .iter()
            .any(|marker| text.windows(marker.len()).any(|w| w == *marker));
        if encrypted {
            return Err(format!(
                "ssl.keyStore.location {}: an encrypted private key is not supported; decrypt it with openssl",
                key_store.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&text).map_err(|e| {
            format!(
                "ssl.keyStore.location {}: no private key: {e}",
                key_store.display()
            )
        })?;
        let builder = ServerConfig::builder_with_provider(Arc::new(self.provider()?))
            .with_protocol_versions(&self.protocol_versions()?)
            .map_err(|e| format!("ssl.ciphersuites and ssl.enabledProtocols: {e}"))?;
        let client_auth = client_auth.to_ascii_lowercase();
        let builder = match client_auth.as_str() {
            "none" => builder.with_no_client_auth(),
            "want" | "need" => {
                let trust = self
                    .trust_store
                    .as_ref()
                    .ok_or("ssl.clientAuth want or need requires ssl.trustStore.location")?;
                let roots = read_roots(trust, "ssl.trustStore.location")?;
                let verifier = WebPkiClientVerifier::builder(Arc::new(roots));
                let verifier = if client_auth == "want" {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| format!("ssl.trustStore.location {}: {e}", trust.display()))?,
                )
            }
            other => {
                return Err(format!(
                    "ssl.clientAuth must be none, want or need, got {other}"
                ))
            }
        };
        let config = builder
            .with_single_cert(chain, key)
            .map_err(|e| format!("ssl.keyStore.location {}: {e}", key_store.display()))?;
        Ok(Arc::new(config))
    }

    /// `ssl.enabledProtocols`, else `ssl.protocol` and what it implies
    /// (TLSv1.3 allows 1.2 too, as Java's default context does).
    fn protocol_versions(&self) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
        let list = match (&self.enabled_protocols, &self.protocol) {
            (Some(list), _) => list.clone(),
            (None, Some(p)) if p.eq_ignore_ascii_case("TLSv1.2") => "TLSv1.2".into(),
            _ => "TLSv1.3,TLSv1.2".into(),
        };
        let mut versions = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            versions.push(match name {
                "TLSv1.3" => &rustls::version::TLS13,
                "TLSv1.2" => &rustls::version::TLS12,
                other => {
                    return Err(format!(
                        "ssl.enabledProtocols: {other} is not supported (TLSv1.2 and TLSv1.3 are)"
                    ))
                }
            });
        }
        if versions.is_empty() {
            return Err("ssl.enabledProtocols names no protocol".into());
        }
        Ok(versions)
    }
}

/// A client's TLS configuration from ZooKeeper client flags, as zkCli.sh
/// takes them from `CLIENT_JVMFLAGS`: `-Dzookeeper.client.secure=true`,
/// `-Dzookeeper.ssl.trustStore.location` (PEM CAs, required) and
/// `-Dzookeeper.ssl.keyStore.location` (a PEM key and certificate, for
/// servers that want one); `None` unless secure. The server's certificate
/// must name the address connected to (hostname verification, ZooKeeper's
/// default).
pub fn client_config(flags: &str) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let mut secure = false;
    let (mut key_store, mut trust_store) = (None, None);
    for flag in flags.split_whitespace() {
        let Some((key, value)) = flag.strip_prefix("-D").and_then(|f| f.split_once('=')) else {
            continue;
        };
        match key {
            "zookeeper.client.secure" => secure = value.eq_ignore_ascii_case("true"),
            "zookeeper.ssl.keyStore.location" => key_store = Some(PathBuf::from(value)),
            "zookeeper.ssl.trustStore.location" => trust_store = Some(PathBuf::from(value)),
            "zookeeper.ssl.keyStore.type" | "zookeeper.ssl.trustStore.type"
                if !value.eq_ignore_ascii_case("PEM") =>
            {
                return Err(format!("{key}={value}: zoocore reads PEM stores only"));
            }
            _ => {}
        }
    }
    if !secure {
        return Ok(None);
    }
    let trust =
        trust_store.ok_or("zookeeper.client.secure needs zookeeper.ssl.trustStore.location")?;
    let key_store = key_store
        .as_ref()
        .map(|p| (p.as_path(), "zookeeper.ssl.keyStore.location"));
    zoocore_net::tls::client_config((&trust, "zookeeper.ssl.trustStore.location"), key_store)
        .map(Some)
}

/// Java's (IANA) suite names, comma-separated.
fn cipher_suites(names: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let mut out = Vec::new();
    for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let suite = ALL_CIPHER_SUITES
            .iter()
            .find(|s| {
                let ours = format!("{:?}", s.suite());
                ours == name || ours.replacen("TLS13_", "TLS_", 1) == name
            })
            .ok_or_else(|| format!("ssl.ciphersuites: {name} is not supported"))?;
        out.push(*suite);
    }
    if out.is_empty() {
        return Err("ssl.ciphersuites names no suite".into());
    }
    Ok(out)
}

/// The `x509` id of a verified client certificate: its subject as Java's
/// `X500Principal.getName()` writes it.
pub fn x509_id(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let name = match x509_parser::objects::oid2abbrev(oid, registry) {
                        Ok(n @ ("CN" | "C" | "L" | "ST" | "O" | "OU" | "DC" | "UID")) => {
                            n.to_owned()
                        }
                        Ok("street") => "STREET".to_owned(),
                        _ => oid.to_id_string(),
                    };
                    let value = attr.as_str().map(rfc2253_escape).unwrap_or_else(|_| {
                        format!(
                            "#{}",
                            attr.attr_value()
                                .data
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        )
                    });
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

fn rfc2253_escape(value: &str) -> String {
    let mut out = String::new();
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_refusals() {
        let mut t = TlsSettings::default();
        assert_eq!(t.apply("secureClientPort", "2281"), Some(Ok(())));
        assert_eq!(t.apply("ssl.clientAuth", "none"), Some(Ok(())));
        assert_eq!(t.apply("clientPort", "2181"), None);
        assert!(t.server_config().is_err(), "no key store");
        t.key_store_type = Some("PKCS12".into());
        let e = t.server_config().expect_err("PKCS12");
        assert!(e.contains("PEM"), "{e}");
        t.key_store_type = None;
        t.enabled_protocols = Some("TLSv1.1".into());
        assert!(t.protocol_versions().is_err());
        assert!(
            cipher_suites("TLS_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").is_ok()
        );
        assert!(cipher_suites("TLS_RSA_WITH_RC4_128_MD5").is_err());
        assert_eq!(rfc2253_escape(" a,b "), "\\ a\\,b\\ ");
    }
}
