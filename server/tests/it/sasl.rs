//! SASL DIGEST-MD5 on the wire, beyond what kazoo checks beside ZooKeeper
//! (`server/tests/kazoo/test_sasl.py`): a response replayed from another
//! connection, garbage, an initial response and a second exchange each fail
//! that connection only; a JAAS file that does not parse stops the server
//! with its line and column.

use std::path::PathBuf;

use md5::{Digest, Md5};
use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::records::PathWatchRequest;
use zoocore_net::{ErrorCode, Request, Response};
use zoocore_testkit::zk::free_port;
use zoocore_testkit::zoocore::ZoocoreProcess;

const JAAS: &str = r#"Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_jaasuser="jaas_password";
};
"#;

/// A JAAS file in a directory of its own, removed on drop.
struct JaasFile(PathBuf);

impl JaasFile {
    fn new(text: &str) -> JaasFile {
        let dir = std::env::temp_dir().join(format!(
            "zoocore-sasl-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("jaas dir");
        std::fs::write(dir.join("jaas.conf"), text).expect("write jaas");
        JaasFile(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("jaas.conf")
    }
}

impl Drop for JaasFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The client's side of RFC 2831 for `challenge`, as pure-sasl computes it.
fn response(challenge: &[u8], user: &str, password: &str) -> Vec<u8> {
    let challenge = String::from_utf8(challenge.to_vec()).expect("a text challenge");
    let nonce = challenge
        .split("nonce=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a nonce");
    let (realm, uri, cnonce) = ("zk-sasl-md5", "zookeeper/zk-sasl-md5", "OA6MHXh6VqTrRk");
    let mut a1 = Md5::digest(format!("{user}:{realm}:{password}").as_bytes()).to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    let ha1 = hex(&Md5::digest(&a1));
    let ha2 = hex(&Md5::digest(format!("AUTHENTICATE:{uri}").as_bytes()));
    let digest = hex(&Md5::digest(
        format!("{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}").as_bytes(),
    ));
    format!(
        "charset=utf-8,username=\"{user}\",realm=\"{realm}\",nonce=\"{nonce}\",nc=00000001,\
         cnonce=\"{cnonce}\",digest-uri=\"{uri}\",maxbuf=65536,response={digest},qop=auth"
    )
    .into_bytes()
}

/// Sends one SASL token; the error code and the server's token.
fn sasl(c: &mut Client, token: &[u8]) -> (i32, Option<Vec<u8>>) {
    let reply = c
        .call(&Request::Sasl(Some(token.to_vec())))
        .expect("a reply");
    let token = match reply.body {
        Response::Sasl(token) => token,
        _ => None,
    };
    (reply.header.err, token)
}

fn connect(server: &ZoocoreProcess) -> Client {
    Client::connect(server.addr, &ConnectOptions::default()).expect("connect")
}

/// Whether the server still answers this connection.
fn answers(c: &mut Client) -> bool {
    c.call(&Request::Exists(PathWatchRequest {
        path: "/".into(),
        watch: false,
    }))
    .is_ok_and(|r| r.header.err == 0)
}

#[test]
fn a_replayed_or_garbled_sasl_response_fails_that_connection_only() {
    let jaas = JaasFile::new(JAAS);
    let server = ZoocoreProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!("zoocore.jaasConfig={}", jaas.path().display()),
    );
    let failed = ErrorCode::AuthFailed.code();

    let mut good = connect(&server);
    let (err, challenge) = sasl(&mut good, b"");
    assert_eq!(err, 0);
    let challenge = challenge.expect("a challenge");
    let proof = response(&challenge, "jaasuser", "jaas_password");
    let (err, rspauth) = sasl(&mut good, &proof);
    assert_eq!(err, 0);
    assert!(rspauth.expect("rspauth").starts_with(b"rspauth="));
    let who = good.call(&Request::WhoAmI).expect("whoAmI");
    let Response::WhoAmI(infos) = who.body else {
        panic!("whoAmI answered {:?}", who.body);
    };
    assert!(
        infos
            .iter()
            .any(|i| i.auth_scheme == "sasl" && i.user == "jaasuser"),
        "{infos:?}"
    );

    // The same proof on another connection: its nonce is another.
    let mut replay = connect(&server);
    assert_eq!(sasl(&mut replay, b"").0, 0);
    assert_eq!(sasl(&mut replay, &proof).0, failed);
    assert!(
        !answers(&mut replay),
        "the connection stays open after a replay"
    );

    for garbage in [&b"\xff\xfe not text"[..], b"username=\"unterminated", b""] {
        let mut c = connect(&server);
        assert_eq!(sasl(&mut c, b"").0, 0);
        assert_eq!(sasl(&mut c, garbage).0, failed, "{garbage:?}");
        assert!(!answers(&mut c));
    }
    // DIGEST-MD5 starts with the server's challenge, not a client token.
    let mut eager = connect(&server);
    assert_eq!(sasl(&mut eager, b"early").0, failed);
    // A finished exchange takes no more tokens.
    assert_eq!(sasl(&mut good, b"").0, failed);
    let mut other = connect(&server);
    assert!(answers(&mut other), "the server serves other connections");
}

#[test]
fn a_jaas_file_that_does_not_parse_stops_the_server_with_its_line() {
    let jaas = JaasFile::new(JAAS);
    let server = ZoocoreProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zoocore")),
        &format!("zoocore.jaasConfig={}", jaas.path().display()),
    );
    std::fs::write(
        jaas.path(),
        "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_a=\"x\"\n};\n",
    )
    .expect("break the JAAS file");
    let stderr = server.refused_start();
    assert!(
        stderr.contains("does not parse") && stderr.contains("line 4, column 1"),
        "{stderr}"
    );
}
