//! ACL schemes and checks: world, auth, digest, ip (with CIDR), sasl, super.
//!
//! Semantics follow ZooKeeper's `ZooKeeperServer.checkACL`, `fixupACL` and its
//! digest and ip authentication providers.

use base64::Engine as _;
use sha1::{Digest, Sha1};
use zoocore_net::{consts::perms, Acl, ErrorCode, Id};

/// `world:anyone` with all permissions, ZooKeeper's `OPEN_ACL_UNSAFE`.
pub fn open_acl_unsafe() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

/// The identities a connection has proven: its ip, any digests, and `super`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    ids: Vec<Id>,
}

impl Identity {
    /// A new connection is known by its remote address, as in ZooKeeper.
    pub fn from_ip(ip: &str) -> Self {
        Identity {
            ids: vec![Id {
                scheme: "ip".into(),
                id: ip.into(),
            }],
        }
    }

    /// Identities proven elsewhere: a request forwarded by the server the
    /// client is connected to carries what that server saw.
    pub fn from_ids(ids: Vec<Id>) -> Self {
        Identity { ids }
    }

    pub fn ids(&self) -> &[Id] {
        &self.ids
    }

    fn add(&mut self, id: Id) {
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }

    /// The connection speaks for a client at `ip` (the web UI's sessions,
    /// which this process opens for a browser): its `ip` identity becomes
    /// that address instead of the proxy's own.
    pub fn set_remote_ip(&mut self, ip: &str) {
        self.ids.retain(|id| id.scheme != "ip");
        self.ids.insert(
            0,
            Id {
                scheme: "ip".into(),
                id: ip.into(),
            },
        );
    }

    /// A SASL exchange proved `user` (ZooKeeper's `sasl` scheme);
    /// `is_super` when it is the configured super user.
    pub fn add_sasl(&mut self, user: &str, is_super: bool) {
        self.add(Id {
            scheme: "sasl".into(),
            id: user.into(),
        });
        if is_super {
            self.add(Id {
                scheme: "super".into(),
                id: String::new(),
            });
        }
    }

    /// A verified TLS client certificate's subject (ZooKeeper's `x509`
    /// scheme); `is_super` when it is the configured x509 super user.
    pub fn add_x509(&mut self, subject: &str, is_super: bool) {
        self.add(Id {
            scheme: "x509".into(),
            id: subject.into(),
        });
        if is_super {
            self.add(Id {
                scheme: "super".into(),
                id: String::new(),
            });
        }
    }

    pub fn is_super(&self) -> bool {
        self.ids.iter().any(|id| id.scheme == "super")
    }

    /// Handles an auth packet (`addauth scheme data`). Unknown schemes fail
    /// with `AuthFailed`, after which ZooKeeper closes the connection.
    pub fn authenticate(
        &mut self,
        scheme: &str,
        data: &[u8],
        remote_ip: &str,
        super_digest: Option<&str>,
    ) -> Result<(), ErrorCode> {
        match scheme {
            "digest" => {
                let digest = digest_of(&String::from_utf8_lossy(data));
                if super_digest == Some(digest.as_str()) {
                    self.add(Id {
                        scheme: "super".into(),
                        id: String::new(),
                    });
                }
                self.add(Id {
                    scheme: "digest".into(),
                    id: digest,
                });
                Ok(())
            }
            "ip" => {
                self.add(Id {
                    scheme: "ip".into(),
                    id: remote_ip.into(),
                });
                Ok(())
            }
            _ => Err(ErrorCode::AuthFailed),
        }
    }

    /// The user names `whoAmI` reports for each identity.
    pub fn client_infos(&self) -> Vec<zoocore_net::ClientInfo> {
        self.ids
            .iter()
            .map(|id| zoocore_net::ClientInfo {
                auth_scheme: id.scheme.clone(),
                user: match id.scheme.as_str() {
                    "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                    "ip" | "sasl" | "x509" => id.id.clone(),
                    _ => String::new(),
                },
            })
            .collect()
    }
}

/// `user:base64(sha1("user:password"))` for an `user:password` string.
pub fn digest_of(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Whether the identities may perform `perm` on a node with `acl`.
/// An empty ACL list allows everything, as in ZooKeeper.
pub fn check(acl: &[Acl], perm: i32, who: &Identity) -> bool {
    if acl.is_empty() || who.is_super() {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        (a.id.scheme == "world" && a.id.id == "anyone")
            || who
                .ids
                .iter()
                .filter(|mine| mine.scheme == a.id.scheme)
                .any(|mine| matches(&a.id.scheme, &mine.id, &a.id.id))
    })
}

fn matches(scheme: &str, id: &str, acl_expr: &str) -> bool {
    match scheme {
        "digest" => id == acl_expr,
        "ip" => ip_matches(id, acl_expr),
        // ZooKeeper's SASL provider also lets an id named "super" match.
        "sasl" => id == acl_expr || id == "super",
        "x509" => id == acl_expr,
        _ => false,
    }
}

/// Validates and expands an ACL list for create/setACL: duplicates dropped
/// (first kept), `auth` replaced by the caller's authenticated ids, every
/// other id checked by its scheme. Errors are `InvalidACL`.
pub fn fixup(acl: &[Acl], who: &Identity) -> Result<Vec<Acl>, ErrorCode> {
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    if unique.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => out.push(a.clone()),
            "auth" => {
                let before = out.len();
                // Only schemes whose provider "authenticates" count; ip does not.
                out.extend(
                    who.ids
                        .iter()
                        .filter(|id| matches!(id.scheme.as_str(), "digest" | "sasl" | "x509"))
                        .map(|id| Acl {
                            perms: a.perms,
                            id: id.clone(),
                        }),
                );
                if out.len() == before {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            "digest" if digest_id_is_valid(&a.id.id) => out.push(a.clone()),
            "ip" if ip_expr_is_valid(&a.id.id) => out.push(a.clone()),
            "sasl" if kerberos_name_is_valid(&a.id.id) => out.push(a.clone()),
            "x509" => out.push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(out)
}

/// ZooKeeper's SASL provider takes what its Kerberos name parser takes:
/// `primary[/instance]@REALM`, or anything without an `@`.
fn kerberos_name_is_valid(id: &str) -> bool {
    match id.split_once('@') {
        None => true,
        Some((principal, realm)) => {
            !realm.contains(['/', '@']) && principal.matches('/').count() <= 1
        }
    }
}

/// Java's `id.split(":").length == 2`: trailing empty parts are dropped by split.
fn digest_id_is_valid(id: &str) -> bool {
    java_split_len(id, ':') == 2
}

fn java_split_len(s: &str, sep: char) -> usize {
    let parts: Vec<&str> = s.split(sep).collect();
    let trailing_empty = parts.iter().rev().take_while(|p| p.is_empty()).count();
    if trailing_empty == parts.len() {
        // Java: "".split(":") has one (empty) element; ":::" has none.
        return usize::from(s.is_empty());
    }
    parts.len() - trailing_empty
}

/// Parses a dotted IPv4 address as ZooKeeper's ip provider does (IPv4 only).
fn ipv4_bytes(addr: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = addr.split('.');
    for byte in &mut out {
        let v: i32 = parse_java_int(parts.next()?)?;
        *byte = u8::try_from(v).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// `Integer.parseInt`: optional sign, ASCII digits.
fn parse_java_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn ip_expr_parts(expr: &str) -> Option<([u8; 4], u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (expr, None),
    };
    let addr = ipv4_bytes(addr)?;
    let bits = match bits {
        None => 32,
        Some(b) => u32::try_from(parse_java_int(b)?)
            .ok()
            .filter(|&b| b <= 32)?,
    };
    Some((addr, bits))
}

fn ip_expr_is_valid(expr: &str) -> bool {
    ip_expr_parts(expr).is_some()
}

fn ip_matches(remote: &str, expr: &str) -> bool {
    let (Some((acl_addr, bits)), Some(remote)) = (ip_expr_parts(expr), ipv4_bytes(remote)) else {
        return false;
    };
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from_be_bytes(acl_addr) & mask == u32::from_be_bytes(remote) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxied_connection_takes_the_client_s_ip_and_keeps_its_other_ids() {
        let mut who = Identity::from_ip("127.0.0.1");
        who.authenticate("digest", b"u:p", "127.0.0.1", None)
            .expect("digest");
        who.set_remote_ip("10.0.0.7");
        let ids: Vec<(&str, &str)> = who
            .ids()
            .iter()
            .map(|id| (id.scheme.as_str(), id.id.as_str()))
            .collect();
        assert_eq!(ids[0], ("ip", "10.0.0.7"));
        assert!(!ids.contains(&("ip", "127.0.0.1")));
        assert!(ids.iter().any(|(scheme, _)| *scheme == "digest"));
    }

    #[test]
    fn digest_matches_zookeepers_generator() {
        // From ZooKeeper's documentation: super:test -> D/InIHSb7yEEbrWz8b9l71RjZJU=
        assert_eq!(
            digest_of("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn ip_cidr_matching() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(!ip_expr_is_valid("10.1.0.0/33"));
        assert!(!ip_expr_is_valid("10.1.0"));
        assert!(!ip_expr_is_valid("::1"));
    }

    #[test]
    fn sasl_ids_match_their_acl_expression_and_expand_auth() {
        let mut who = Identity::from_ip("127.0.0.1");
        who.add_sasl("jaasuser", false);
        assert!(check(
            &[Acl::new(perms::READ, "sasl", "jaasuser")],
            perms::READ,
            &who
        ));
        assert!(!check(
            &[Acl::new(perms::READ, "sasl", "other")],
            perms::READ,
            &who
        ));
        let expanded = fixup(&[Acl::new(perms::ALL, "auth", "")], &who).expect("auth");
        assert_eq!(expanded, vec![Acl::new(perms::ALL, "sasl", "jaasuser")]);
        assert!(kerberos_name_is_valid("zookeeper/host.example@EXAMPLE.COM"));
        assert!(kerberos_name_is_valid("a/b/c"));
        assert!(!kerberos_name_is_valid("a/b/c@R"));
        assert!(!kerberos_name_is_valid("a@R@S"));
    }

    #[test]
    fn digest_ids_need_exactly_one_separator() {
        assert!(digest_id_is_valid("bob:hash"));
        assert!(digest_id_is_valid(":hash"));
        assert!(digest_id_is_valid("bob:hash::"));
        assert!(!digest_id_is_valid("bob"));
        assert!(!digest_id_is_valid("bob:"));
        assert!(!digest_id_is_valid("a:b:c"));
    }

    #[test]
    fn auth_scheme_expands_to_digest_ids_only() {
        let mut who = Identity::from_ip("127.0.0.1");
        let acl = vec![Acl::new(perms::READ, "auth", "")];
        assert_eq!(fixup(&acl, &who), Err(ErrorCode::InvalidAcl));
        who.authenticate("digest", b"bob:pw", "127.0.0.1", None)
            .unwrap();
        let fixed = fixup(&acl, &who).unwrap();
        assert_eq!(
            fixed,
            vec![Acl::new(perms::READ, "digest", &digest_of("bob:pw"))]
        );
    }

    #[test]
    fn check_honours_perms_schemes_and_super() {
        let acl = vec![Acl::new(perms::READ, "digest", &digest_of("bob:pw"))];
        let mut who = Identity::from_ip("127.0.0.1");
        assert!(!check(&acl, perms::READ, &who));
        who.authenticate("digest", b"bob:pw", "127.0.0.1", None)
            .unwrap();
        assert!(check(&acl, perms::READ, &who));
        assert!(!check(&acl, perms::WRITE, &who));
        let mut root = Identity::from_ip("127.0.0.1");
        let super_digest = digest_of("super:s3cret");
        root.authenticate("digest", b"super:s3cret", "127.0.0.1", Some(&super_digest))
            .unwrap();
        assert!(check(&acl, perms::WRITE, &root));
    }
}
