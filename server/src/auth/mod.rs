//! Client authentication beyond `addauth`, configured as ZooKeeper
//! operators configure it: SASL DIGEST-MD5 with users from a JAAS file's
//! `Server` section, or SASL GSSAPI (Kerberos) when that section logs in
//! with `Krb5LoginModule` (`gssapi.rs`, behind the `kerberos` feature), the
//! principal canonicalisation of
//! `kerberos.removeHostFromPrincipal`/`removeRealmFromPrincipal`, the SASL
//! super user, ZooKeeper 3.8's enforced authentication, and whether the
//! audit log (`audit.rs`) is on.
//!
//! The settings come from zoo.cfg keys and, as zkEnv.sh passes them to
//! ZooKeeper's JVM, from `-D` flags in `SERVER_JVMFLAGS` or `JVMFLAGS`
//! (`-Djava.security.auth.login.config=FILE`, `-Dzookeeper.superUser=...`);
//! a key in zoo.cfg wins over the same flag, as ZooKeeper sets its system
//! properties from the file.

pub mod digest_md5;
#[cfg(feature = "kerberos")]
pub mod gssapi;
pub mod jaas;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use zoocore_engine::acl::Identity;

/// ZooKeeper's class names for the providers `authProvider.N` may name,
/// and the scheme each serves.
const PROVIDERS: [(&str, &str); 4] = [
    (
        "org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        "sasl",
    ),
    (
        "org.apache.zookeeper.server.auth.DigestAuthenticationProvider",
        "digest",
    ),
    (
        "org.apache.zookeeper.server.auth.IPAuthenticationProvider",
        "ip",
    ),
    (
        "org.apache.zookeeper.server.auth.X509AuthenticationProvider",
        "x509",
    ),
];

/// The JAAS login module whose `user_NAME="password"` options are the
/// DIGEST-MD5 users.
const DIGEST_LOGIN_MODULE: &str = "org.apache.zookeeper.server.auth.DigestLoginModule";

/// The JAAS login module of a Kerberos service: with it in the server's
/// section, ZooKeeper's SASL mechanism is GSSAPI.
const KERBEROS_LOGIN_MODULE: &str = "com.sun.security.auth.module.Krb5LoginModule";

/// The service principal and keytab of the JAAS section's `Krb5LoginModule`.
struct KerberosLogin {
    principal: String,
    keytab: PathBuf,
}

/// The security settings of zoo.cfg and the JVM flags.
#[derive(Debug, Clone)]
pub struct Security {
    /// `zoocore.jaasConfig`, or `-Djava.security.auth.login.config`.
    pub jaas_file: Option<PathBuf>,
    /// The JAAS section the server logs in with (`sasl.serverconfig`).
    pub jaas_section: String,
    /// `superUser`: a SASL user who is also `super`.
    pub super_user: Option<String>,
    /// `X509AuthenticationProvider.superUser`: the certificate subject that
    /// is also `super`.
    pub x509_super_user: Option<String>,
    pub remove_host_from_principal: bool,
    pub remove_realm_from_principal: bool,
    /// The schemes `authProvider.N` registered beyond ip and digest.
    pub providers: Vec<String>,
    /// `enforce.auth.enabled` and `enforce.auth.schemes`.
    pub enforce_auth: bool,
    pub enforce_auth_schemes: Vec<String>,
    /// The DIGEST-MD5 users, once the JAAS file is read; `None` when it has
    /// no such section (SASL is then refused, as ZooKeeper without a login).
    pub sasl_users: Option<SaslUsers>,
    /// The service key of the JAAS section's Kerberos login, taken from the
    /// keytab when the config is loaded: SASL is then GSSAPI, as in
    /// ZooKeeper, and DIGEST-MD5 clients are refused.
    #[cfg(feature = "kerberos")]
    pub acceptor: Option<gssapi::Acceptor>,
    /// `-Djava.security.krb5.conf`: the Kerberos configuration, given to
    /// the system library as `KRB5_CONFIG` unless that is set.
    pub krb5_conf: Option<PathBuf>,
    /// `audit.enable`, and where the lines go (`zoocore.auditLogFile`;
    /// `None`: `zookeeper_audit.log` in dataDir).
    pub audit: bool,
    pub audit_file: Option<PathBuf>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            jaas_file: None,
            jaas_section: "Server".into(),
            super_user: None,
            x509_super_user: None,
            remove_host_from_principal: false,
            remove_realm_from_principal: false,
            providers: Vec::new(),
            enforce_auth: false,
            enforce_auth_schemes: Vec::new(),
            sasl_users: None,
            #[cfg(feature = "kerberos")]
            acceptor: None,
            krb5_conf: None,
            audit: false,
            audit_file: None,
        }
    }
}

/// User names and passwords; `Debug` does not print the passwords.
#[derive(Clone, Default)]
pub struct SaslUsers(HashMap<String, String>);

impl fmt::Debug for SaslUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        f.debug_tuple("SaslUsers").field(&names).finish()
    }
}

impl SaslUsers {
    pub fn password(&self, user: &str) -> Option<String> {
        self.0.get(user).cloned()
    }
}

impl Security {
    /// Takes a zoo.cfg key (or a `-Dzookeeper.` flag without the prefix);
    /// `None` when it is not one of these, else whether it was valid. A
    /// provider class this server does not have is a warning, as ZooKeeper
    /// logs one and goes on without it.
    pub fn apply(
        &mut self,
        key: &str,
        value: &str,
        warnings: &mut Vec<String>,
    ) -> Option<Result<(), String>> {
        let flag = |v: &str| v.trim().eq_ignore_ascii_case("true");
        match key {
            "zoocore.jaasConfig" | "java.security.auth.login.config" => {
                self.jaas_file = Some(PathBuf::from(value));
            }
            "sasl.serverconfig" => self.jaas_section = value.to_owned(),
            "java.security.krb5.conf" => self.krb5_conf = Some(PathBuf::from(value)),
            "superUser" => self.super_user = Some(value.to_owned()),
            "X509AuthenticationProvider.superUser" => self.x509_super_user = Some(value.to_owned()),
            "kerberos.removeHostFromPrincipal" => self.remove_host_from_principal = flag(value),
            "kerberos.removeRealmFromPrincipal" => self.remove_realm_from_principal = flag(value),
            "enforce.auth.enabled" => self.enforce_auth = flag(value),
            "audit.enable" => self.audit = flag(value),
            "zoocore.auditLogFile" => self.audit_file = Some(PathBuf::from(value)),
            "enforce.auth.schemes" => {
                self.enforce_auth_schemes = value
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            _ if key.starts_with("authProvider.") => {
                let class = value.trim();
                let Some((_, scheme)) = PROVIDERS.iter().find(|(c, _)| *c == class) else {
                    warnings.push(format!(
                        "{key}: unknown authentication provider {class} ignored"
                    ));
                    return Some(Ok(()));
                };
                if !self.providers.iter().any(|p| p == scheme) {
                    self.providers.push((*scheme).to_owned());
                }
            }
            _ => return None,
        }
        Some(Ok(()))
    }

    /// Takes the `-D` flags of `SERVER_JVMFLAGS` or `JVMFLAGS` that this
    /// module knows; the others are ZooKeeper's JVM's business.
    pub fn apply_jvm_flags(
        &mut self,
        flags: &str,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        for flag in flags.split_whitespace() {
            let Some((key, value)) = flag.strip_prefix("-D").and_then(|f| f.split_once('=')) else {
                continue;
            };
            let key = key.strip_prefix("zookeeper.").unwrap_or(key);
            if let Some(Err(e)) = self.apply(key, value, warnings) {
                return Err(format!("JVM flag {flag}: {e}"));
            }
        }
        Ok(())
    }

    /// Reads the JAAS file and checks the enforced schemes; a server that
    /// fails here does not start.
    pub fn load(&mut self) -> Result<(), String> {
        if let Some(path) = &self.jaas_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the JAAS file {}: {e}", path.display()))?;
            let sections = jaas::parse(&text)
                .map_err(|e| format!("the JAAS file {} does not parse: {e}", path.display()))?;
            let Some(section) = sections.iter().find(|s| s.name == self.jaas_section) else {
                return self.check_enforcement();
            };
            let users = section
                .modules
                .iter()
                .filter(|m| m.class == DIGEST_LOGIN_MODULE)
                .flat_map(|m| m.options.iter())
                .filter_map(|(k, v)| Some((k.strip_prefix("user_")?.to_owned(), v.clone())))
                .collect();
            self.sasl_users = Some(SaslUsers(users));
            if let Some(module) = section
                .modules
                .iter()
                .find(|m| m.class == KERBEROS_LOGIN_MODULE)
            {
                let option = |key: &str| {
                    module
                        .options
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.as_str())
                };
                let login = match (option("useKeyTab"), option("keyTab"), option("principal")) {
                    (Some(use_keytab), Some(keytab), Some(principal))
                        if use_keytab.eq_ignore_ascii_case("true") =>
                    {
                        KerberosLogin {
                            principal: principal.to_owned(),
                            keytab: PathBuf::from(keytab),
                        }
                    }
                    _ => {
                        return Err(format!(
                            "the JAAS file {}: section {}: {KERBEROS_LOGIN_MODULE} needs useKeyTab=true, keyTab and principal (zoocore takes the service key from a keytab only)",
                            path.display(),
                            self.jaas_section
                        ))
                    }
                };
                self.login_kerberos(login)?;
            }
        }
        self.check_enforcement()
    }

    #[cfg(feature = "kerberos")]
    fn login_kerberos(&mut self, login: KerberosLogin) -> Result<(), String> {
        if let Some(conf) = &self.krb5_conf {
            if std::env::var_os("KRB5_CONFIG").is_none() {
                // The config is loaded once, in main, before any thread.
                std::env::set_var("KRB5_CONFIG", conf);
            }
        }
        let acceptor = gssapi::Acceptor::new(&login.principal, &login.keytab)?;
        tracing::info!(principal = acceptor.principal(), keytab = %login.keytab.display(), "SASL is GSSAPI (Kerberos)");
        self.acceptor = Some(acceptor);
        Ok(())
    }

    #[cfg(not(feature = "kerberos"))]
    fn login_kerberos(&mut self, login: KerberosLogin) -> Result<(), String> {
        Err(format!(
            "the JAAS section {} logs in with Kerberos as {} from {}, but this zoocore was built without Kerberos (cargo feature `kerberos`)",
            self.jaas_section,
            login.principal,
            login.keytab.display()
        ))
    }

    fn check_enforcement(&self) -> Result<(), String> {
        if self.enforce_auth {
            if self.enforce_auth_schemes.is_empty() {
                return Err(
                    "enforce.auth.enabled is true but enforce.auth.schemes is empty".into(),
                );
            }
            for scheme in &self.enforce_auth_schemes {
                let known = matches!(scheme.as_str(), "ip" | "digest")
                    || self.providers.iter().any(|p| p == scheme);
                if !known {
                    return Err(format!(
                        "enforce.auth.schemes: authentication scheme {scheme} is not available (add its authProvider)"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The id a SASL-authenticated principal gets, as ZooKeeper's server
    /// callback canonicalises it: `primary[/instance][@REALM]`, with the
    /// instance and realm dropped when configured so.
    pub fn canonical_user(&self, principal: &str) -> String {
        let (name, realm) = match principal.split_once('@') {
            Some((name, realm)) => (name, Some(realm)),
            None => (principal, None),
        };
        let (primary, host) = match (name.split_once('/'), realm) {
            // Without a realm the whole name is the primary, as Kerberos'
            // name parser takes it.
            (Some((primary, host)), Some(_)) => (primary, Some(host)),
            _ => (name, None),
        };
        let mut out = primary.to_owned();
        if let Some(host) = host.filter(|_| !self.remove_host_from_principal) {
            out.push('/');
            out.push_str(host);
        }
        if let Some(realm) = realm.filter(|_| !self.remove_realm_from_principal) {
            out.push('@');
            out.push_str(realm);
        }
        out
    }

    pub fn is_super_user(&self, user: &str) -> bool {
        self.super_user.as_deref() == Some(user)
    }

    /// Whether a connection with these identities may send requests when
    /// authentication is enforced.
    pub fn admits(&self, identity: &Identity) -> bool {
        !self.enforce_auth
            || identity
                .ids()
                .iter()
                .any(|id| self.enforce_auth_schemes.contains(&id.scheme))
    }
}

/// One connection's SASL exchange, in the mechanism the server's login
/// chose.
pub enum SaslServer {
    DigestMd5(digest_md5::DigestMd5Server),
    #[cfg(feature = "kerberos")]
    Gssapi(gssapi::GssapiServer),
}

impl SaslServer {
    /// Whether the exchange has ended, proven or failed.
    pub fn is_over(&self) -> bool {
        match self {
            SaslServer::DigestMd5(exchange) => exchange.is_over(),
            #[cfg(feature = "kerberos")]
            SaslServer::Gssapi(exchange) => exchange.is_over(),
        }
    }
}

/// A client's SASL credentials, as ZooKeeper's Java client finds them: the
/// JAAS file of `-Djava.security.auth.login.config` in `flags`, its
/// `Client` section (`-Dzookeeper.sasl.clientconfig`) and that section's
/// `username` and `password`; `None` without a file, with
/// `-Dzookeeper.sasl.client=false`, or without such a section.
pub fn client_credentials(flags: &str) -> Result<Option<(String, String)>, String> {
    let mut file = None;
    let mut section = "Client".to_owned();
    let mut enabled = true;
    for flag in flags.split_whitespace() {
        let Some((key, value)) = flag.strip_prefix("-D").and_then(|f| f.split_once('=')) else {
            continue;
        };
        match key {
            "java.security.auth.login.config" => file = Some(PathBuf::from(value)),
            "zookeeper.sasl.clientconfig" => section = value.to_owned(),
            "zookeeper.sasl.client" => enabled = value.trim().eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let Some(path) = file.filter(|_| enabled) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the JAAS file {}: {e}", path.display()))?;
    let sections = jaas::parse(&text)
        .map_err(|e| format!("the JAAS file {} does not parse: {e}", path.display()))?;
    let Some(found) = sections.iter().find(|s| s.name == section) else {
        return Ok(None);
    };
    let option = |key: &str| {
        found
            .modules
            .iter()
            .flat_map(|m| m.options.iter())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    match (option("username"), option("password")) {
        (Some(user), Some(password)) => Ok(Some((user, password))),
        _ => Err(format!(
            "the JAAS file {}: section {section} has no username and password",
            path.display()
        )),
    }
}

/// A fresh, unpredictable DIGEST-MD5 nonce.
pub fn new_nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_canonicalised_as_zookeeper_does() {
        let mut s = Security::default();
        assert_eq!(s.canonical_user("jaasuser"), "jaasuser");
        assert_eq!(s.canonical_user("zk/host@REALM"), "zk/host@REALM");
        s.remove_host_from_principal = true;
        assert_eq!(s.canonical_user("zk/host@REALM"), "zk@REALM");
        s.remove_realm_from_principal = true;
        assert_eq!(s.canonical_user("zk/host@REALM"), "zk");
        assert_eq!(s.canonical_user("a/b"), "a/b");
    }

    #[test]
    fn jvm_flags_and_keys_configure_sasl_and_enforcement() {
        let dir = std::env::temp_dir().join(format!("zoocore-jaas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let jaas = dir.join("jaas.conf");
        std::fs::write(
            &jaas,
            "Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_bob=\"pw\"; };",
        )
        .expect("write");
        let mut s = Security::default();
        let mut warnings = Vec::new();
        s.apply_jvm_flags(
            &format!(
                "-Xmx1g -Djava.security.auth.login.config={} -Dzookeeper.superUser=bob",
                jaas.display()
            ),
            &mut warnings,
        )
        .expect("flags");
        let mut apply = |k: &str, v: &str| s.apply(k, v, &mut warnings);
        assert_eq!(
            apply(
                "authProvider.1",
                "org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
            ),
            Some(Ok(()))
        );
        assert_eq!(apply("authProvider.2", "com.example.Custom"), Some(Ok(())));
        assert_eq!(apply("enforce.auth.enabled", "true"), Some(Ok(())));
        assert_eq!(apply("enforce.auth.schemes", "sasl, digest"), Some(Ok(())));
        assert_eq!(apply("clientPort", "2181"), None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        s.load().expect("loads");
        let users = s.sasl_users.as_ref().expect("users");
        assert_eq!(users.password("bob").as_deref(), Some("pw"));
        assert!(!format!("{users:?}").contains("pw\""), "{users:?}");
        assert!(s.is_super_user("bob"));
        let mut who = Identity::from_ip("127.0.0.1");
        assert!(!s.admits(&who));
        who.add_sasl("bob", false);
        assert!(s.admits(&who));

        let mut bad = Security::default();
        bad.apply("enforce.auth.enabled", "true", &mut warnings);
        bad.apply("enforce.auth.schemes", "sasl", &mut warnings);
        assert!(bad.load().is_err(), "sasl without its provider");
        std::fs::write(&jaas, "Server {\n  Module required user_a=\"x\"\n};").expect("write");
        let mut broken = Security::default();
        broken.apply(
            "zoocore.jaasConfig",
            &jaas.display().to_string(),
            &mut warnings,
        );
        let e = broken.load().expect_err("does not parse");
        assert!(e.contains("line 3, column 1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kerberos_login_needs_a_keytab_and_a_principal() {
        let dir = std::env::temp_dir().join(format!("zoocore-krb-jaas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let jaas = dir.join("jaas.conf");
        let load = |text: &str| {
            std::fs::write(&jaas, text).expect("write");
            let mut s = Security::default();
            let mut warnings = Vec::new();
            s.apply(
                "zoocore.jaasConfig",
                &jaas.display().to_string(),
                &mut warnings,
            );
            s.load().map(|()| s)
        };
        let e = load(
            "Server { com.sun.security.auth.module.Krb5LoginModule required useTicketCache=true principal=\"zk/h@R\"; };",
        )
        .expect_err("no keytab");
        assert!(
            e.contains("needs useKeyTab=true, keyTab and principal"),
            "{e}"
        );
        let missing = dir.join("missing.keytab");
        let e = load(&format!(
            "Server {{ com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true keyTab=\"{}\" principal=\"zk/h@R\"; }};",
            missing.display()
        ))
        .expect_err("no such keytab");
        // Built with Kerberos, the keytab is read at start; without, the
        // server says it cannot do Kerberos. Either way it does not start.
        assert!(
            e.contains("cannot take the service key") || e.contains("built without Kerberos"),
            "{e}"
        );
        let s = load(
            "Server { org.apache.zookeeper.server.auth.DigestLoginModule required user_a=\"b\"; };",
        )
        .expect("digest only");
        assert!(s.sasl_users.is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
