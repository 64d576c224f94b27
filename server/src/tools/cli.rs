//! `zoocore cli`: a ZooKeeper command-line client without a JVM, speaking
//! zkCli's commands and printing what zkCli prints. Interactive (line
//! editing and history) or scripted with `-c "cmd; cmd"`.
//!
//! Exit codes of `-c` and single commands: 0 every command succeeded; 1 a
//! command failed (the server answered with an error, e.g. NoNode); 2 a
//! command was malformed; 3 the server could not be reached. Commands after
//! a failure do not run. The interactive shell exits 0.
//!
//! SASL DIGEST-MD5 and TLS as zkCli.sh takes them from `CLIENT_JVMFLAGS`
//! or `JVMFLAGS`: a JAAS file (`-Djava.security.auth.login.config=`) with a
//! `Client` section makes every connection authenticate with its username
//! and password before anything else (a failure is exit code 3);
//! `-Dzookeeper.client.secure=true` with PEM stores
//! (`-Dzookeeper.ssl.trustStore.location`, `...keyStore.location`) speaks
//! TLS, to a `secureClientPort`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use zoocore_net::client::{Client, ClientError, ConnectOptions};
use zoocore_net::consts::perms;
use zoocore_net::records::{
    AddWatchRequest, AuthPacket, CreateRequest, CreateTtlRequest, DeleteRequest, GetDataResponse,
    PathRequest, PathWatchRequest, ReconfigRequest, SetAclRequest, SetDataRequest, WatcherEvent,
};
use zoocore_net::{Acl, AddWatchMode, ErrorCode, EventType, KeeperState, Request, Response, Stat};

use crate::auth::{self, digest_md5::DigestMd5Client};
use crate::ops::fourlw::java_date;

/// Why a command did not succeed; each maps to an exit code.
#[derive(Debug)]
enum Failure {
    /// The server answered with an error (message as zkCli words it).
    Server(String),
    Usage(String),
    Connection(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Server(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Connection(_) => 3,
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Server(m) | Failure::Usage(m) | Failure::Connection(m) => m,
        }
    }
}

struct Session {
    servers: Vec<SocketAddr>,
    client: Option<Client>,
    /// Credentials given with addauth, sent again after a reconnect.
    auths: Vec<(String, Vec<u8>)>,
    /// The JAAS `Client` section's user and password.
    sasl: Option<(String, String)>,
    /// TLS, with `zookeeper.client.secure`.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, Failure> {
        if self.client.is_none() {
            let options = ConnectOptions {
                timeout_ms: 30_000,
                io_timeout: Duration::from_secs(30),
                ..Default::default()
            };
            let mut last = String::from("no server given");
            for addr in &self.servers {
                let connected = match &self.tls {
                    Some(tls) => Client::connect_tls(
                        *addr,
                        &options,
                        tls.clone(),
                        ServerName::IpAddress(addr.ip().into()),
                    ),
                    None => Client::connect(*addr, &options),
                };
                match connected {
                    Ok(mut c) => {
                        if let Some((user, password)) = &self.sasl {
                            sasl_login(&mut c, user, password).map_err(|e| {
                                Failure::Connection(format!("SASL authentication failed: {e}"))
                            })?;
                        }
                        for (scheme, auth) in &self.auths {
                            c.add_auth(scheme, auth)
                                .map_err(|e| Failure::Connection(e.to_string()))?;
                        }
                        self.client = Some(c);
                        break;
                    }
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
            if self.client.is_none() {
                return Err(Failure::Connection(format!("cannot connect: {last}")));
            }
        }
        self.client
            .as_mut()
            .ok_or_else(|| Failure::Connection("not connected".into()))
    }

    /// Sends a request; a broken connection is reopened once (a new session).
    fn call(&mut self, request: &Request) -> Result<(i32, Response), Failure> {
        for attempt in 0..2 {
            match self.client()?.call(request) {
                Ok(reply) => return Ok((reply.header.err, reply.body)),
                Err(ClientError::Io(e)) if attempt == 0 => {
                    eprintln!("connection lost ({e}); reconnecting");
                    self.client = None;
                }
                Err(e) => return Err(Failure::Connection(e.to_string())),
            }
        }
        Err(Failure::Connection("connection lost".into()))
    }

    /// Watch events that have arrived, as zkCli prints them.
    fn print_events(&mut self) {
        if let Some(c) = self.client.as_mut() {
            for event in c.take_events() {
                print!("{}", event_text(&event));
            }
        }
    }
}

fn event_text(e: &WatcherEvent) -> String {
    let kind = EventType::from_i32(e.event_type)
        .map_or_else(|| e.event_type.to_string(), |k| format!("{k:?}"));
    let state =
        KeeperState::from_i32(e.state).map_or_else(|| e.state.to_string(), |s| format!("{s:?}"));
    format!(
        "\nWATCHER::\n\nWatchedEvent state:{state} type:{kind} path:{}\n",
        e.path
    )
}

/// zkCli's words for an error reply about `path`.
fn error_text(code: i32, path: &str) -> String {
    match ErrorCode::from_i32(code) {
        Some(ErrorCode::NoNode) => format!("Node does not exist: {path}"),
        Some(ErrorCode::NodeExists) => format!("Node already exists: {path}"),
        Some(ErrorCode::NotEmpty) => format!("Node not empty: {path}"),
        Some(ErrorCode::BadVersion) => format!("version No is not valid : {path}"),
        Some(ErrorCode::NoAuth) => format!("Insufficient permission : {path}"),
        Some(ErrorCode::NoChildrenForEphemerals) => {
            format!("Ephemerals cannot have children: {path}")
        }
        Some(other) => format!("KeeperErrorCode = {other:?} for {path}"),
        None => format!("KeeperErrorCode = {code} for {path}"),
    }
}

/// A node's data as zkCli prints it (`null` for none), then its Stat if
/// asked for.
fn print_data(r: &GetDataResponse, with_stat: bool) {
    match &r.data {
        Some(d) => println!("{}", String::from_utf8_lossy(d)),
        None => println!("null"),
    }
    if with_stat {
        print!("{}", stat_text(&r.stat));
    }
}

/// zkCli's `config -c`: the version, then every member's client address.
fn client_config(text: &str) -> String {
    match zoocore_consensus::Membership::parse_config(text) {
        Ok((membership, version)) => {
            let clients: Vec<String> = membership
                .members()
                .iter()
                .filter_map(|m| m.client.as_ref())
                .map(|(host, port)| format!("{}:{port}", host.as_deref().unwrap_or("0.0.0.0")))
                .collect();
            format!("{version:x} {}", clients.join(","))
        }
        Err(_) => String::new(),
    }
}

fn stat_text(s: &Stat) -> String {
    format!(
        "cZxid = {:#x}\nctime = {}\nmZxid = {:#x}\nmtime = {}\npZxid = {:#x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = {:#x}\ndataLength = {}\nnumChildren = {}\n",
        s.czxid,
        java_date(s.ctime),
        s.mzxid,
        java_date(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// `scheme:id:perms` (the id may hold colons, as digest ids do), comma-separated.
fn parse_acl(text: &str) -> Result<Vec<Acl>, Failure> {
    text.split(',')
        .map(|one| {
            let bad = || Failure::Usage(format!("{one} does not have the form scheme:id:perm"));
            let (scheme, rest) = one.split_once(':').ok_or_else(bad)?;
            let (id, letters) = rest.rsplit_once(':').ok_or_else(bad)?;
            let mut p = 0;
            for c in letters.chars() {
                p |= match c {
                    'r' => perms::READ,
                    'w' => perms::WRITE,
                    'c' => perms::CREATE,
                    'd' => perms::DELETE,
                    'a' => perms::ADMIN,
                    _ => return Err(Failure::Usage(format!("unknown permission {c} in {one}"))),
                };
            }
            Ok(Acl::new(p, scheme, id))
        })
        .collect()
}

/// Splits `args` into flags (`-s`, `-t 100`) and the rest.
struct Args<'a> {
    flags: Vec<&'a str>,
    values: Vec<(&'a str, &'a str)>,
    rest: Vec<&'a str>,
}

fn args<'a>(words: &[&'a str], with_value: &[&str]) -> Result<Args<'a>, Failure> {
    let mut parsed = Args {
        flags: Vec::new(),
        values: Vec::new(),
        rest: Vec::new(),
    };
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w.starts_with('-') && w.len() > 1 && parsed.rest.is_empty() {
            if with_value.contains(&w) {
                let v = words
                    .get(i + 1)
                    .ok_or_else(|| Failure::Usage(format!("{w} needs a value")))?;
                parsed.values.push((w, v));
                i += 1;
            } else {
                parsed.flags.push(w);
            }
        } else {
            parsed.rest.push(w);
        }
        i += 1;
    }
    Ok(parsed)
}

impl Args<'_> {
    fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, v)| *v)
    }

    fn path(&self, usage: &str) -> Result<String, Failure> {
        self.rest
            .first()
            .map(|p| (*p).to_owned())
            .ok_or_else(|| Failure::Usage(format!("usage: {usage}")))
    }
}

fn number<T: std::str::FromStr>(v: &str, what: &str) -> Result<T, Failure> {
    v.parse()
        .map_err(|_| Failure::Usage(format!("{what} must be a number, got {v}")))
}

/// Answers an error reply about `path` as a failure.
fn check(code: i32, path: &str) -> Result<(), Failure> {
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::Server(error_text(code, path)))
    }
}

const HELP: &str = "ZooKeeper -server host:port cmd args
\taddauth scheme auth
\tconfig [-c] [-w] [-s]
\tcreate [-s] [-e] [-c] [-t ttl] path [data] [acl]
\tdelete [-v version] path
\tdeleteall path
\tget [-s] [-w] path
\tgetAcl path
\tgetAllChildrenNumber path
\tls [-s] [-w] [-R] path
\tset [-s] [-v version] path data
\tsetAcl [-v version] path acl
\tstat [-w] path
\tsync path
\taddWatch [-m mode] path   # mode: PERSISTENT or PERSISTENT_RECURSIVE (default)
\treconfig [-s] [-v version] [[-file path] | [-members serverID=host:port1:port2;port3[,...]*]] | [-add serverId=host:port1:port2;port3[,...]]* [-remove serverId[,...]*]
\tquit
";

/// Runs one command line; what it prints goes to stdout, errors to stderr.
fn run(session: &mut Session, line: &str) -> Result<(), Failure> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&name, words)) = words.split_first() else {
        session.print_events();
        return Ok(());
    };
    let result = command(session, name, words);
    session.print_events();
    result
}

fn command(session: &mut Session, name: &str, words: &[&str]) -> Result<(), Failure> {
    match name {
        "help" => {
            print!("{HELP}");
            Ok(())
        }
        "ls" => {
            let a = args(words, &[])?;
            let path = a.path("ls [-s] [-w] [-R] path")?;
            if a.has("-R") {
                let mut queue = std::collections::VecDeque::from([path]);
                while let Some(p) = queue.pop_front() {
                    println!("{p}");
                    let (code, body) = session.call(&Request::GetChildren(PathWatchRequest {
                        path: p.clone(),
                        watch: false,
                    }))?;
                    check(code, &p)?;
                    if let Response::Children(mut children) = body {
                        children.sort();
                        let base = if p == "/" { String::new() } else { p.clone() };
                        queue.extend(children.iter().map(|c| format!("{base}/{c}")));
                    }
                }
                return Ok(());
            }
            let (code, body) = session.call(&Request::GetChildren2(PathWatchRequest {
                path: path.clone(),
                watch: a.has("-w"),
            }))?;
            check(code, &path)?;
            if let Response::Children2(mut r) = body {
                r.children.sort();
                println!("[{}]", r.children.join(", "));
                if a.has("-s") {
                    print!("{}", stat_text(&r.stat));
                }
            }
            Ok(())
        }
        "get" => {
            let a = args(words, &[])?;
            let path = a.path("get [-s] [-w] path")?;
            let (code, body) = session.call(&Request::GetData(PathWatchRequest {
                path: path.clone(),
                watch: a.has("-w"),
            }))?;
            check(code, &path)?;
            if let Response::GetData(r) = body {
                print_data(&r, a.has("-s"));
            }
            Ok(())
        }
        "config" => {
            let a = args(words, &[])?;
            let path = "/zookeeper/config".to_owned();
            let (code, body) = session.call(&Request::GetData(PathWatchRequest {
                path: path.clone(),
                watch: a.has("-w"),
            }))?;
            check(code, &path)?;
            match body {
                Response::GetData(r) if a.has("-c") => {
                    let text = String::from_utf8_lossy(r.data.as_deref().unwrap_or_default());
                    println!("{}", client_config(&text));
                    if a.has("-s") {
                        print!("{}", stat_text(&r.stat));
                    }
                }
                Response::GetData(r) => print_data(&r, a.has("-s")),
                _ => {}
            }
            Ok(())
        }
        "reconfig" => {
            let a = args(words, &["-v", "-file", "-members", "-add", "-remove"])?;
            let all = |flag: &str| -> Vec<&str> {
                a.values
                    .iter()
                    .filter(|(f, _)| *f == flag)
                    .map(|(_, v)| *v)
                    .collect()
            };
            let (joining, leaving) = (all("-add").join(","), all("-remove").join(","));
            let new_members = match (a.value("-file"), a.value("-members")) {
                (Some(file), _) => std::fs::read_to_string(file)
                    .map_err(|e| Failure::Usage(format!("cannot read {file}: {e}")))?
                    .lines()
                    .map(str::trim)
                    .filter(|l| l.starts_with("server."))
                    .collect::<Vec<_>>()
                    .join(","),
                (None, Some(members)) => members.to_owned(),
                (None, None) => String::new(),
            };
            let incremental = !joining.is_empty() || !leaving.is_empty();
            if incremental != new_members.is_empty() {
                return Err(Failure::Usage(
                    "reconfig needs -add/-remove, or -members/-file, and not both".into(),
                ));
            }
            let cur_config_id = match a.value("-v") {
                Some(v) => i64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| {
                    Failure::Usage(format!("-v takes a hex config version, got {v}"))
                })?,
                None => -1,
            };
            let path = "/zookeeper/config".to_owned();
            let (code, body) = session.call(&Request::Reconfig(ReconfigRequest {
                joining_servers: joining,
                leaving_servers: leaving,
                new_members,
                cur_config_id,
            }))?;
            check(code, &path)?;
            if let Response::GetData(r) = body {
                println!("Committed new configuration:");
                print_data(&r, a.has("-s"));
            }
            Ok(())
        }
        "stat" => {
            let a = args(words, &[])?;
            let path = a.path("stat [-w] path")?;
            let (code, body) = session.call(&Request::Exists(PathWatchRequest {
                path: path.clone(),
                watch: a.has("-w"),
            }))?;
            check(code, &path)?;
            if let Response::Stat(s) = body {
                print!("{}", stat_text(&s));
            }
            Ok(())
        }
        "set" => {
            let a = args(words, &["-v"])?;
            let usage = "set [-s] [-v version] path data";
            let path = a.path(usage)?;
            let data = a
                .rest
                .get(1)
                .ok_or_else(|| Failure::Usage(format!("usage: {usage}")))?;
            let version = a.value("-v").map_or(Ok(-1), |v| number(v, "version"))?;
            let (code, body) = session.call(&Request::SetData(SetDataRequest {
                path: path.clone(),
                data: Some(data.as_bytes().to_vec()),
                version,
            }))?;
            check(code, &path)?;
            if let (true, Response::Stat(s)) = (a.has("-s"), body) {
                print!("{}", stat_text(&s));
            }
            Ok(())
        }
        "create" => {
            let a = args(words, &["-t"])?;
            let path = a.path("create [-s] [-e] [-c] [-t ttl] path [data] [acl]")?;
            let data = a.rest.get(1).map(|d| d.as_bytes().to_vec());
            let acl = match a.rest.get(2) {
                Some(text) => parse_acl(text)?,
                None => vec![Acl::new(perms::ALL, "world", "anyone")],
            };
            let (seq, eph) = (a.has("-s"), a.has("-e"));
            let ttl = a.value("-t").map(|v| number::<i64>(v, "ttl")).transpose()?;
            let request = if let Some(ttl) = ttl {
                if eph || a.has("-c") {
                    return Err(Failure::Usage("-t cannot be combined with -e or -c".into()));
                }
                Request::CreateTtl(CreateTtlRequest {
                    path: path.clone(),
                    data,
                    acl,
                    flags: if seq { 6 } else { 5 },
                    ttl,
                })
            } else if a.has("-c") {
                Request::CreateContainer(CreateRequest {
                    path: path.clone(),
                    data,
                    acl,
                    flags: 4,
                })
            } else {
                Request::Create(CreateRequest {
                    path: path.clone(),
                    data,
                    acl,
                    flags: i32::from(eph) | (i32::from(seq) << 1),
                })
            };
            let (code, body) = session.call(&request)?;
            check(code, &path)?;
            match body {
                Response::Create(created) => println!("Created {created}"),
                Response::Create2(r) => println!("Created {}", r.path),
                _ => {}
            }
            Ok(())
        }
        "delete" => {
            let a = args(words, &["-v"])?;
            let path = a.path("delete [-v version] path")?;
            let version = a.value("-v").map_or(Ok(-1), |v| number(v, "version"))?;
            let (code, _) = session.call(&Request::Delete(DeleteRequest {
                path: path.clone(),
                version,
            }))?;
            check(code, &path)
        }
        "deleteall" | "rmr" => {
            let a = args(words, &[])?;
            let root = a.path("deleteall path")?;
            // Children first: collect the subtree breadth first, delete it backwards.
            let mut order = vec![root.clone()];
            let mut i = 0;
            while i < order.len() {
                let p = order[i].clone();
                let (code, body) = session.call(&Request::GetChildren(PathWatchRequest {
                    path: p.clone(),
                    watch: false,
                }))?;
                check(code, &p)?;
                if let Response::Children(children) = body {
                    let base = if p == "/" { String::new() } else { p };
                    order.extend(children.iter().map(|c| format!("{base}/{c}")));
                }
                i += 1;
            }
            for p in order.iter().rev().filter(|p| p.as_str() != "/") {
                let (code, _) = session.call(&Request::Delete(DeleteRequest {
                    path: p.clone(),
                    version: -1,
                }))?;
                if code != ErrorCode::NoNode.code() {
                    check(code, p)?;
                }
            }
            Ok(())
        }
        "getAcl" => {
            let a = args(words, &[])?;
            let path = a.path("getAcl path")?;
            let (code, body) =
                session.call(&Request::GetAcl(PathRequest { path: path.clone() }))?;
            check(code, &path)?;
            if let Response::GetAcl(r) = body {
                for acl in &r.acl {
                    println!(
                        "'{},'{}\n: {}",
                        acl.id.scheme,
                        acl.id.id,
                        perms::text(acl.perms)
                    );
                }
            }
            Ok(())
        }
        "setAcl" => {
            let a = args(words, &["-v"])?;
            let usage = "setAcl [-v version] path acl";
            let path = a.path(usage)?;
            let acl = parse_acl(
                a.rest
                    .get(1)
                    .ok_or_else(|| Failure::Usage(format!("usage: {usage}")))?,
            )?;
            let version = a.value("-v").map_or(Ok(-1), |v| number(v, "version"))?;
            let (code, _) = session.call(&Request::SetAcl(SetAclRequest {
                path: path.clone(),
                acl,
                version,
            }))?;
            check(code, &path)
        }
        "addauth" => {
            let [scheme, auth] = words else {
                return Err(Failure::Usage("usage: addauth scheme auth".into()));
            };
            let (code, _) = session.call(&Request::Auth(AuthPacket {
                auth_type: 0,
                scheme: (*scheme).to_owned(),
                auth: auth.as_bytes().to_vec(),
            }))?;
            if code != 0 {
                session.client = None;
                return Err(Failure::Server(format!(
                    "authentication failed: {}",
                    error_text(code, "")
                )));
            }
            session
                .auths
                .push(((*scheme).to_owned(), auth.as_bytes().to_vec()));
            Ok(())
        }
        "sync" => {
            let a = args(words, &[])?;
            let path = a.path("sync path")?;
            let (code, _) = session.call(&Request::Sync(PathRequest { path: path.clone() }))?;
            check(code, &path)?;
            println!("Sync is OK");
            Ok(())
        }
        "getAllChildrenNumber" => {
            let a = args(words, &[])?;
            let path = a.path("getAllChildrenNumber path")?;
            let (code, body) = session.call(&Request::GetAllChildrenNumber(PathRequest {
                path: path.clone(),
            }))?;
            check(code, &path)?;
            if let Response::AllChildrenNumber(n) = body {
                println!("{n}");
            }
            Ok(())
        }
        "addWatch" => {
            let a = args(words, &["-m"])?;
            let path = a.path("addWatch [-m mode] path")?;
            let mode = match a.value("-m").unwrap_or("PERSISTENT_RECURSIVE") {
                "PERSISTENT" => AddWatchMode::Persistent,
                "PERSISTENT_RECURSIVE" => AddWatchMode::PersistentRecursive,
                other => return Err(Failure::Usage(format!("unknown watch mode {other}"))),
            };
            let (code, _) = session.call(&Request::AddWatch(AddWatchRequest {
                path: path.clone(),
                mode: mode as i32,
            }))?;
            check(code, &path)
        }
        other => Err(Failure::Usage(format!("unknown command {other}; try help"))),
    }
}

/// Parses `-server host:port[,host:port...]`.
pub fn servers(list: &str) -> Result<Vec<SocketAddr>, String> {
    list.split(',')
        .map(|s| {
            s.to_socket_addrs()
                .map_err(|e| format!("{s}: {e}"))?
                .next()
                .ok_or_else(|| format!("{s} resolves to nothing"))
        })
        .collect()
}

/// The commands of a `-c` script: separated by `;`, except the `;` of a
/// server spec (`server.N=host:p1:p2;clientPort`, no space after it).
fn script_lines(commands: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for piece in commands.split(';') {
        let joins_spec = lines.last().is_some_and(|l| {
            l.split_whitespace()
                .last()
                .is_some_and(|w| w.contains("server.") && w.contains('='))
        }) && !piece.starts_with(char::is_whitespace)
            && !piece.is_empty();
        match lines.last_mut() {
            Some(last) if joins_spec => {
                last.push(';');
                last.push_str(piece);
            }
            _ => lines.push(piece.to_owned()),
        }
    }
    lines
        .into_iter()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `commands` (`;`-separated) or, without them, an interactive shell.
/// Returns the exit code.
pub fn main(servers: Vec<SocketAddr>, commands: Option<&str>) -> u8 {
    let flags = ["CLIENT_JVMFLAGS", "JVMFLAGS"]
        .map(|name| std::env::var(name).unwrap_or_default())
        .join(" ");
    let secured = auth::client_credentials(&flags)
        .and_then(|sasl| Ok((sasl, crate::tls::client_config(&flags)?)));
    let (sasl, tls) = match secured {
        Ok(secured) => secured,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let mut session = Session {
        servers,
        client: None,
        auths: Vec::new(),
        sasl,
        tls,
    };
    if let Some(commands) = commands {
        for line in script_lines(commands) {
            if let Err(f) = run(&mut session, &line) {
                eprintln!("{}", f.message());
                return f.code();
            }
        }
        return 0;
    }
    interactive(&mut session)
}

/// Runs the DIGEST-MD5 exchange on a new connection.
fn sasl_login(c: &mut Client, user: &str, password: &str) -> Result<(), String> {
    let cnonce = auth::new_nonce().map_err(|e| format!("no randomness for a nonce: {e}"))?;
    let mut exchange = DigestMd5Client::new(user, password, cnonce);
    let mut send = |token: Vec<u8>| -> Result<Vec<u8>, String> {
        let reply = c
            .call(&Request::Sasl(Some(token)))
            .map_err(|e| e.to_string())?;
        if reply.header.err != 0 {
            let code = reply.header.err;
            return Err(
                ErrorCode::from_i32(code).map_or_else(|| code.to_string(), |e| format!("{e:?}"))
            );
        }
        match reply.body {
            Response::Sasl(token) => Ok(token.unwrap_or_default()),
            other => Err(format!("unexpected reply {other:?}")),
        }
    };
    let challenge = send(Vec::new())?;
    let response = exchange.respond(&challenge).map_err(|e| e.to_string())?;
    let rspauth = send(response)?;
    exchange.check_rspauth(&rspauth).map_err(|e| e.to_string())
}

/// The shell; failed commands print their error and the shell goes on, so
/// leaving it (quit, end of input) exits 0.
fn interactive(session: &mut Session) -> u8 {
    let Ok(mut editor) = rustyline::DefaultEditor::new() else {
        eprintln!("cannot start line editing");
        return 2;
    };
    let history =
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".zoocore_cli_history"));
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        let prompt = match &session.client {
            Some(c) => format!("[zoocore: {:#x}] ", c.session_id()),
            None => "[zoocore] ".to_owned(),
        };
        let line = match editor.readline(&prompt) {
            Ok(line) => line,
            Err(_) => break,
        };
        let line = line.trim();
        if line == "quit" || line == "exit" {
            break;
        }
        if !line.is_empty() {
            let _ = editor.add_history_entry(line);
        }
        if let Err(f) = run(session, line) {
            eprintln!("{}", f.message());
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    if let Some(c) = session.client.take() {
        let _ = c.close();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acls_parse_as_zkcli_takes_them() {
        let acl = parse_acl("world:anyone:cdrwa,digest:u:abc=:r,ip:10.0.0.0/8:rw").unwrap();
        assert_eq!(acl[0], Acl::new(perms::ALL, "world", "anyone"));
        assert_eq!(acl[1], Acl::new(perms::READ, "digest", "u:abc="));
        assert_eq!(
            acl[2],
            Acl::new(perms::READ | perms::WRITE, "ip", "10.0.0.0/8")
        );
        assert!(parse_acl("world:anyone:x").is_err());
        assert!(parse_acl("nocolon").is_err());
        assert_eq!(perms::text(perms::ALL), "cdrwa");
    }

    #[test]
    fn flags_come_before_the_path() {
        let a = args(&["-s", "-t", "100", "/p", "-data"], &["-t"]).unwrap();
        assert!(a.has("-s"));
        assert_eq!(a.value("-t"), Some("100"));
        assert_eq!(a.rest, ["/p", "-data"]);
    }
}
