//! The server side of SASL DIGEST-MD5 (RFC 2831) as ZooKeeper runs it:
//! protocol `zookeeper`, server name `zk-sasl-md5`, quality of protection
//! `auth` only (no integrity or confidentiality layer), users and passwords
//! from the JAAS file. Sans-IO: a connection feeds the client's tokens in
//! and sends back what comes out.
//!
//! Two steps, as Java's DIGEST-MD5 server takes them: an empty first token
//! gets the challenge; the digest response gets `rspauth=` and completes.
//! Anything after that, or a response that does not verify, is an error
//! (ZooKeeper answers AuthFailed and closes the connection).

use md5::{Digest, Md5};

/// The realm and the host part of the digest-uri ZooKeeper's server uses.
pub const SERVER_NAME: &str = "zk-sasl-md5";
const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";
/// A client response longer than this is refused unread (RFC 2831: 4096).
const MAX_RESPONSE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SaslError {
    #[error("DIGEST-MD5 must not have an initial response")]
    InitialResponse,
    #[error("DIGEST-MD5 authentication is already complete")]
    Complete,
    #[error("digest response too long ({0} bytes)")]
    TooLong(usize),
    #[error("digest response is not text")]
    NotText,
    #[error("digest response format violation: {0}")]
    Format(&'static str),
    #[error("digest response lacks {0}")]
    Missing(&'static str),
    #[error("nonce does not match the challenge's (replayed or forged)")]
    Nonce,
    #[error("nonce count {0} is not 00000001")]
    NonceCount(String),
    #[error("unsupported quality of protection {0:?}")]
    Qop(String),
    #[error("digest-uri {0:?} is not zookeeper/zk-sasl-md5")]
    DigestUri(String),
    #[error("no such user {0:?}")]
    UnknownUser(String),
    #[error("wrong password for {0:?}")]
    BadResponse(String),
}

/// What a step produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this token back; the exchange goes on.
    Challenge(Vec<u8>),
    /// Send this token back; `user` (the authentication id) is proven.
    Done { token: Vec<u8>, user: String },
}

enum State {
    Start,
    Challenged,
    Complete,
}

/// One connection's DIGEST-MD5 exchange.
pub struct DigestMd5Server {
    nonce: String,
    state: State,
}

impl DigestMd5Server {
    /// `nonce` must be unpredictable and fresh for each connection: a
    /// response is bound to it, so one taken from another connection fails.
    pub fn new(nonce: String) -> Self {
        DigestMd5Server {
            nonce,
            state: State::Start,
        }
    }

    /// Whether the exchange has ended, in success or failure.
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// Takes the client's next token; `password` looks a user's up.
    pub fn step(
        &mut self,
        token: &[u8],
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<Step, SaslError> {
        match self.state {
            State::Start => {
                if !token.is_empty() {
                    self.state = State::Complete;
                    return Err(SaslError::InitialResponse);
                }
                self.state = State::Challenged;
                Ok(Step::Challenge(
                    format!(
                        "realm=\"{SERVER_NAME}\",nonce=\"{}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess",
                        self.nonce
                    )
                    .into_bytes(),
                ))
            }
            State::Challenged => {
                // One try: whatever happens, the exchange is over.
                self.state = State::Complete;
                self.verify(token, password)
            }
            State::Complete => Err(SaslError::Complete),
        }
    }

    fn verify(
        &self,
        token: &[u8],
        password: impl Fn(&str) -> Option<String>,
    ) -> Result<Step, SaslError> {
        if token.len() > MAX_RESPONSE {
            return Err(SaslError::TooLong(token.len()));
        }
        let text = std::str::from_utf8(token).map_err(|_| SaslError::NotText)?;
        let fields = parse_directives(text)?;
        let get = |key: &'static str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let need = |key: &'static str| get(key).ok_or(SaslError::Missing(key));
        let user = need("username")?;
        let nonce = need("nonce")?;
        let cnonce = need("cnonce")?;
        let nc = need("nc")?;
        let uri = need("digest-uri")?;
        let response = need("response")?;
        let realm = get("realm").unwrap_or_default();
        let qop = get("qop").unwrap_or("auth");
        let utf8 = get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8"));
        if nonce != self.nonce {
            return Err(SaslError::Nonce);
        }
        if nc != "00000001" {
            return Err(SaslError::NonceCount(nc.to_owned()));
        }
        if qop != "auth" {
            return Err(SaslError::Qop(qop.to_owned()));
        }
        if uri != DIGEST_URI {
            return Err(SaslError::DigestUri(uri.to_owned()));
        }
        let secret = password(user).ok_or_else(|| SaslError::UnknownUser(user.to_owned()))?;
        let proof = Proof {
            user,
            realm,
            password: &secret,
            nonce,
            cnonce,
            authzid: get("authzid"),
            utf8,
        };
        if !constant_time_eq(
            proof.response().as_bytes(),
            response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(SaslError::BadResponse(user.to_owned()));
        }
        Ok(Step::Done {
            token: format!("rspauth={}", proof.rspauth()).into_bytes(),
            user: user.to_owned(),
        })
    }
}

/// The values both sides hash (RFC 2831 2.1.2.1), for nonce count 1 and
/// quality of protection `auth`.
struct Proof<'a> {
    user: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    authzid: Option<&'a str>,
    utf8: bool,
}

impl Proof<'_> {
    fn digest(&self, a2: &str) -> String {
        let a1 = {
            let mut inner = Md5::new();
            inner.update(encode(self.user, self.utf8));
            inner.update(b":");
            inner.update(encode(self.realm, self.utf8));
            inner.update(b":");
            inner.update(encode(self.password, self.utf8));
            let mut a1 = inner.finalize().to_vec();
            a1.extend_from_slice(format!(":{}:{}", self.nonce, self.cnonce).as_bytes());
            if let Some(z) = self.authzid {
                a1.push(b':');
                a1.extend_from_slice(z.as_bytes());
            }
            hex(&Md5::digest(&a1))
        };
        let a2 = hex(&Md5::digest(a2.as_bytes()));
        hex(&Md5::digest(
            format!("{a1}:{}:00000001:{}:auth:{a2}", self.nonce, self.cnonce).as_bytes(),
        ))
    }

    /// What the client proves it knows the password with.
    fn response(&self) -> String {
        self.digest(&format!("AUTHENTICATE:{DIGEST_URI}"))
    }

    /// What the server proves it knows the password with.
    fn rspauth(&self) -> String {
        self.digest(&format!(":{DIGEST_URI}"))
    }
}

/// The client side, as ZooKeeper's Java client runs it: an empty first
/// token, the digest response to the challenge, then a check of the
/// server's `rspauth`.
pub struct DigestMd5Client {
    user: String,
    password: String,
    cnonce: String,
    expected_rspauth: Option<String>,
}

impl DigestMd5Client {
    /// `cnonce` must be fresh and unpredictable, as the server's nonce.
    pub fn new(user: &str, password: &str, cnonce: String) -> Self {
        DigestMd5Client {
            user: user.to_owned(),
            password: password.to_owned(),
            cnonce,
            expected_rspauth: None,
        }
    }

    /// The response to the server's challenge.
    pub fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text = std::str::from_utf8(challenge).map_err(|_| SaslError::NotText)?;
        let fields = parse_directives(text)?;
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        let nonce = get("nonce").ok_or(SaslError::Missing("nonce"))?;
        let realm = get("realm").unwrap_or_default();
        if !get("qop")
            .unwrap_or("auth")
            .split(',')
            .any(|q| q.trim() == "auth")
        {
            return Err(SaslError::Qop(get("qop").unwrap_or_default().to_owned()));
        }
        let proof = Proof {
            user: &self.user,
            realm,
            password: &self.password,
            nonce,
            cnonce: &self.cnonce,
            authzid: None,
            utf8: true,
        };
        self.expected_rspauth = Some(proof.rspauth());
        Ok(format!(
            "charset=utf-8,username=\"{}\",realm=\"{realm}\",nonce=\"{nonce}\",nc=00000001,cnonce=\"{}\",digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={},qop=auth",
            quote(&self.user),
            self.cnonce,
            proof.response()
        )
        .into_bytes())
    }

    /// Checks the server's final token: it knew the password too.
    pub fn check_rspauth(&self, token: &[u8]) -> Result<(), SaslError> {
        let text = std::str::from_utf8(token).map_err(|_| SaslError::NotText)?;
        let fields = parse_directives(text)?;
        let rspauth = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("rspauth"))
            .map(|(_, v)| v.as_str())
            .ok_or(SaslError::Missing("rspauth"))?;
        match &self.expected_rspauth {
            Some(expected) if constant_time_eq(expected.as_bytes(), rspauth.as_bytes()) => Ok(()),
            _ => Err(SaslError::BadResponse("the server".into())),
        }
    }
}

/// A value for a quoted directive: `"` and `\` escaped.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A string as RFC 2831 hashes it: UTF-8 when the client said
/// `charset=utf-8`, else ISO 8859-1 where every character fits.
fn encode(s: &str, utf8: bool) -> Vec<u8> {
    if !utf8 && s.chars().all(|c| (c as u32) < 256) {
        s.chars().map(|c| c as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `key=value` and `key="quoted \"value\""` pairs, separated by commas
/// and optional white space.
fn parse_directives(text: &str) -> Result<Vec<(String, String)>, SaslError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return Ok(out);
        }
        let eq = rest
            .find('=')
            .ok_or(SaslError::Format("a directive without ="))?;
        let key = rest[..eq].trim().to_owned();
        if key.is_empty() || key.contains([',', '"']) {
            return Err(SaslError::Format("a bad directive name"));
        }
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => return Err(SaslError::Format("an unterminated quoted value")),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => return Err(SaslError::Format("an unterminated quoted value")),
                }
            };
            rest = &quoted[end + 1..];
            value
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        let rest_trimmed = rest.trim_start();
        if !rest_trimmed.is_empty() && !rest_trimmed.starts_with(',') {
            return Err(SaslError::Format("text after a value"));
        }
        if out.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
            return Err(SaslError::Format("a directive given twice"));
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client computes: the RFC 2831 response for these values.
    fn client_response(user: &str, password: &str, nonce: &str, cnonce: &str) -> String {
        let mut a1 = Md5::digest(format!("{user}:{SERVER_NAME}:{password}").as_bytes()).to_vec();
        a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
        let ha1 = hex(&Md5::digest(&a1));
        let ha2 = hex(&Md5::digest(
            format!("AUTHENTICATE:{DIGEST_URI}").as_bytes(),
        ));
        let response = hex(&Md5::digest(
            format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}").as_bytes(),
        ));
        format!(
            "charset=utf-8,username=\"{user}\",realm=\"{SERVER_NAME}\",nonce=\"{nonce}\",nc=00000001,cnonce=\"{cnonce}\",digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},qop=auth"
        )
    }

    #[test]
    fn the_client_side_talks_to_the_server_side() {
        let mut server = DigestMd5Server::new("n".into());
        let Ok(Step::Challenge(challenge)) = server.step(b"", users) else {
            panic!("no challenge");
        };
        let mut client = DigestMd5Client::new("jaasuser", "jaas_password", "c".into());
        let response = client.respond(&challenge).expect("response");
        let Ok(Step::Done { token, .. }) = server.step(&response, users) else {
            panic!("not authenticated");
        };
        client
            .check_rspauth(&token)
            .expect("the server proved the password");
        assert!(client.check_rspauth(b"rspauth=00").is_err());
        let mut wrong = DigestMd5Client::new("jaasuser", "nope", "c".into());
        let mut server = DigestMd5Server::new("n".into());
        let Ok(Step::Challenge(challenge)) = server.step(b"", users) else {
            panic!("no challenge");
        };
        let response = wrong.respond(&challenge).expect("response");
        assert!(server.step(&response, users).is_err());
        assert_eq!(quote(r#"a"b\c"#), r#"a\"b\\c"#);
    }

    fn users(name: &str) -> Option<String> {
        (name == "jaasuser").then(|| "jaas_password".to_owned())
    }

    #[test]
    fn a_right_password_completes_with_rspauth() {
        let mut server = DigestMd5Server::new("n0nce".into());
        let Ok(Step::Challenge(challenge)) = server.step(b"", users) else {
            panic!("no challenge");
        };
        let challenge = String::from_utf8(challenge).expect("text");
        assert!(challenge.contains("nonce=\"n0nce\""), "{challenge}");
        assert!(challenge.contains("realm=\"zk-sasl-md5\""), "{challenge}");
        let response = client_response("jaasuser", "jaas_password", "n0nce", "c1");
        match server.step(response.as_bytes(), users) {
            Ok(Step::Done { token, user }) => {
                assert_eq!(user, "jaasuser");
                assert!(token.starts_with(b"rspauth="));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.step(b"", users), Err(SaslError::Complete));
    }

    #[test]
    fn a_wrong_password_unknown_user_or_replayed_nonce_fails() {
        let try_with = |user: &str, password: &str, nonce: &str| {
            let mut server = DigestMd5Server::new("fresh".into());
            server.step(b"", users).expect("challenge");
            server.step(
                client_response(user, password, nonce, "c").as_bytes(),
                users,
            )
        };
        assert_eq!(
            try_with("jaasuser", "nope", "fresh"),
            Err(SaslError::BadResponse("jaasuser".into()))
        );
        assert_eq!(
            try_with("baduser", "x", "fresh"),
            Err(SaslError::UnknownUser("baduser".into()))
        );
        assert_eq!(
            try_with("jaasuser", "jaas_password", "stale"),
            Err(SaslError::Nonce)
        );
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        for bad in [
            &b"username"[..],
            b"username=\"unterminated",
            b"username=a x,nonce=b",
            b"username=a,username=b",
            b"\xff\xfe",
            b"nonce=\"fresh\"",
        ] {
            let mut server = DigestMd5Server::new("fresh".into());
            server.step(b"", users).expect("challenge");
            assert!(server.step(bad, users).is_err(), "{bad:?}");
        }
        let mut server = DigestMd5Server::new("fresh".into());
        assert_eq!(server.step(b"x", users), Err(SaslError::InitialResponse));
    }

    #[test]
    fn quoted_values_keep_escapes_and_commas() {
        let parsed = parse_directives(r#" a="x,\"y\"" , b=z,c="" "#).expect("parses");
        assert_eq!(
            parsed,
            vec![
                ("a".to_owned(), "x,\"y\"".to_owned()),
                ("b".to_owned(), "z".to_owned()),
                ("c".to_owned(), String::new()),
            ]
        );
    }
}
