//! PEM stores for rustls (with ring), shared by the server's TLS settings,
//! `zoocore cli` and loadgen: ZooKeeper 3.8's `PEM` store type, a trust
//! store of CA certificates and a key store holding a private key and its
//! certificate chain. Errors name the setting the file came from.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// rustls with ring, which builds without cmake or a C toolchain beyond
/// cc. rustls 0.23.48 marks it deprecated for lacking post-quantum key
/// exchange, which no ZooKeeper client offers either. Its key exchange
/// groups come in the order OpenSSL and the JDK prefer, X25519 first: the
/// provider's own order puts P-384 first, which costs a TLS handshake
/// (full or resumed) several times the CPU in ring.
#[allow(deprecated)]
pub fn ring_provider() -> CryptoProvider {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    provider
}

/// The CA certificates of a PEM trust store; `key` names its setting.
pub fn read_roots(path: &Path, key: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, key)? {
        roots
            .add(cert)
            .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The certificates of a PEM file, at least one.
pub fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// A client configuration trusting the CAs of `trust` and, with a key
/// store, presenting its key and chain to servers that ask; each file comes
/// with the name of its setting. Server names are verified, as ZooKeeper's
/// client verifies host names by default.
pub fn client_config(
    trust: (&Path, &str),
    key_store: Option<(&Path, &str)>,
) -> Result<Arc<ClientConfig>, String> {
    let roots = read_roots(trust.0, trust.1)?;
    let builder = ClientConfig::builder_with_provider(Arc::new(ring_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match key_store {
        None => builder.with_no_client_auth(),
        Some((path, key)) => {
            let chain = read_certs(path, key)?;
            let private = PrivateKeyDer::from_pem_file(path)
                .map_err(|e| format!("{key} {}: no private key: {e}", path.display()))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("{key} {}: {e}", path.display()))?
        }
    };
    Ok(Arc::new(config))
}
