//! The ensemble as zoo.cfg's `server.N` lines describe it, and the checks
//! members make before they form a quorum together.
//!
//! ZooKeeper's form: `server.N=host:peerPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`,
//! with IPv6 hosts in brackets. zoocore uses one port per peer pair (the
//! peer port); the election port is accepted and kept for `conf` and
//! `/zookeeper/config`.

use std::fmt;

/// Largest id of a server that runs zoocore: session ids carry it in their
/// top byte. Other members' lines may name any positive id, as ZooKeeper's
/// (kazoo's reconfig test adds a `server.999`).
pub const MAX_SERVER_ID: u64 = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub host: String,
    pub peer_port: u16,
    pub election_port: u16,
    /// Observers (raft learners) replicate and serve but never vote.
    pub observer: bool,
    /// Where clients connect, when the line gives it.
    pub client: Option<(Option<String>, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("server.{id}: {reason} in {value:?}")]
    BadLine {
        id: u64,
        value: String,
        reason: String,
    },
    #[error(
        "server id {0} is out of range (1..={MAX_SERVER_ID} for this server, positive for others)"
    )]
    BadId(u64),
    #[error("server.{0} is given twice")]
    Duplicate(u64),
    #[error("the ensemble has no participant (every server is an observer)")]
    NoVoter,
    #[error("myid {0} is not among the server.N lines")]
    NotAMember(u64),
    #[error("{line:?}: {reason}")]
    BadConfig { line: String, reason: String },
}

fn port(id: u64, value: &str, text: &str, what: &str) -> Result<u16, MembershipError> {
    text.parse().map_err(|_| MembershipError::BadLine {
        id,
        value: value.to_owned(),
        reason: format!("{what} {text:?} is not a port"),
    })
}

/// Splits `host:rest` where host may be `[v6]`.
fn split_host(text: &str) -> Option<(&str, &str)> {
    if let Some(inner) = text.strip_prefix('[') {
        let close = inner.find(']')?;
        let rest = inner[close + 1..].strip_prefix(':')?;
        return Some((&inner[..close], rest));
    }
    text.split_once(':')
}

impl Member {
    /// Parses the value of `server.<id>`.
    pub fn parse(id: u64, value: &str) -> Result<Member, MembershipError> {
        let bad = |reason: &str| MembershipError::BadLine {
            id,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if id == 0 {
            return Err(MembershipError::BadId(id));
        }
        let value_trimmed = value.trim();
        let (server, client) = match value_trimmed.split_once(';') {
            Some((s, c)) => (s, Some(c)),
            None => (value_trimmed, None),
        };
        let (host, ports) = split_host(server).ok_or_else(|| bad("no host:port"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let mut parts = ports.split(':');
        let peer_port = port(id, value, parts.next().unwrap_or(""), "peer port")?;
        let election_port = port(
            id,
            value,
            parts.next().ok_or_else(|| bad("no election port"))?,
            "election port",
        )?;
        let observer = match parts.next() {
            None | Some("participant") => false,
            Some("observer") => true,
            Some(other) => {
                return Err(bad(&format!(
                    "role {other:?} is neither participant nor observer"
                )))
            }
        };
        if parts.next().is_some() {
            return Err(bad("too many fields"));
        }
        let client = match client.map(str::trim) {
            None | Some("") => None,
            Some(c) => Some(match split_host(c) {
                Some((h, p)) => (Some(h.to_owned()), port(id, value, p, "client port")?),
                None => (None, port(id, value, c, "client port")?),
            }),
        };
        Ok(Member {
            id,
            host: host.to_owned(),
            peer_port,
            election_port,
            observer,
            client,
        })
    }
}

impl fmt::Display for Member {
    /// As ZooKeeper writes a member in `/zookeeper/config` and `conf`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        };
        write!(
            f,
            "server.{}={}:{}:{}:{}",
            self.id,
            host(&self.host),
            self.peer_port,
            self.election_port,
            if self.observer {
                "observer"
            } else {
                "participant"
            }
        )?;
        if let Some((client_host, client_port)) = &self.client {
            let client_host = client_host.as_deref().unwrap_or("0.0.0.0");
            write!(f, ";{}:{client_port}", host(client_host))?;
        }
        Ok(())
    }
}

/// Every member of an ensemble, ordered by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    members: Vec<Member>,
}

impl Membership {
    pub fn new(mut members: Vec<Member>) -> Result<Membership, MembershipError> {
        members.sort_by_key(|m| m.id);
        for pair in members.windows(2) {
            if pair[0].id == pair[1].id {
                return Err(MembershipError::Duplicate(pair[0].id));
            }
        }
        if members.iter().all(|m| m.observer) {
            return Err(MembershipError::NoVoter);
        }
        Ok(Membership { members })
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn get(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Raft voters: the participants.
    pub fn voters(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| !m.observer)
            .map(|m| m.id)
            .collect()
    }

    /// Raft learners: the observers.
    pub fn learners(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter(|m| m.observer)
            .map(|m| m.id)
            .collect()
    }

    /// Checks that `myid` is a member, with an id a session id can carry.
    pub fn check_member(&self, myid: u64) -> Result<&Member, MembershipError> {
        if !(1..=MAX_SERVER_ID).contains(&myid) {
            return Err(MembershipError::BadId(myid));
        }
        self.get(myid).ok_or(MembershipError::NotAMember(myid))
    }

    /// What `/zookeeper/config` holds: the member lines, then `version=`
    /// and the configuration's version in hex (0 before any reconfig, then
    /// the zxid of the reconfig that made it), without a final newline, as
    /// ZooKeeper writes it.
    pub fn config_text(&self, version: i64) -> String {
        let mut text: String = self.members.iter().map(|m| format!("{m}\n")).collect();
        text.push_str(&format!("version={version:x}"));
        text
    }

    /// Reads [`Membership::config_text`] back, and the member lines of a
    /// reconfig's new member list or a dynamic config file: `server.N=`
    /// lines separated by newlines or commas, an optional `version=<hex>`
    /// (0 without one).
    pub fn parse_config(text: &str) -> Result<(Membership, i64), MembershipError> {
        let mut members = Vec::new();
        let mut version = 0;
        for line in text.split(['\n', ',']).map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| MembershipError::BadConfig {
                line: line.to_owned(),
                reason: reason.to_owned(),
            };
            let (key, value) = line.split_once('=').ok_or_else(|| bad("no '='"))?;
            let key = key.trim();
            if key == "version" {
                version = i64::from_str_radix(value.trim(), 16)
                    .map_err(|_| bad("the version is not a hex number"))?;
            } else if let Some(id) = key.strip_prefix("server.") {
                let id = id
                    .parse()
                    .map_err(|_| bad("the server id is not a number"))?;
                members.push(Member::parse(id, value)?);
            } else {
                return Err(bad("neither a server line nor the version"));
            }
        }
        Ok((Membership::new(members)?, version))
    }

    /// ZooKeeper's incremental reconfig: `leaving` ids (comma-separated)
    /// go, then each of `joining` (`server.N=...` specs, comma-separated,
    /// with a client address) is added or replaces the member of its id.
    pub fn changed(&self, joining: &str, leaving: &str) -> Result<Membership, MembershipError> {
        let mut members = self.members.clone();
        for id in leaving.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let id: u64 = id.parse().map_err(|_| MembershipError::BadConfig {
                line: leaving.to_owned(),
                reason: format!("{id:?} is not a server id"),
            })?;
            members.retain(|m| m.id != id);
        }
        for spec in joining.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = |reason: &str| MembershipError::BadConfig {
                line: spec.to_owned(),
                reason: reason.to_owned(),
            };
            let (key, value) = spec
                .split_once('=')
                .ok_or_else(|| bad("wrong format of server string"))?;
            let id = key
                .trim()
                .rsplit('.')
                .next()
                .and_then(|id| id.parse().ok())
                .ok_or_else(|| bad("no server id"))?;
            let member = Member::parse(id, value)?;
            if member.client.is_none() {
                return Err(bad("each server needs a client port"));
            }
            members.retain(|m| m.id != id);
            members.push(member);
        }
        Membership::new(members)
    }

    /// A checksum of the member lines as `/zookeeper/config` writes them,
    /// exchanged in the peer handshake: servers whose configurations differ
    /// refuse to form a quorum together.
    pub fn digest(&self) -> u32 {
        let lines: Vec<String> = self.members.iter().map(Member::to_string).collect();
        crc32c::crc32c(lines.join("\n").as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_server_lines_parse_and_print_as_zookeeper_writes_them() {
        let m = Member::parse(1, "zk1:2888:3888;2181").expect("valid");
        assert_eq!(
            (
                m.host.as_str(),
                m.peer_port,
                m.election_port,
                m.observer,
                m.client.clone()
            ),
            ("zk1", 2888, 3888, false, Some((None, 2181)))
        );
        assert_eq!(
            m.to_string(),
            "server.1=zk1:2888:3888:participant;0.0.0.0:2181"
        );
        let o = Member::parse(4, "[::1]:2890:3890:observer;127.0.0.1:2184").expect("valid");
        assert!(o.observer);
        assert_eq!(o.host, "::1");
        assert_eq!(o.client, Some((Some("127.0.0.1".into()), 2184)));
        assert_eq!(
            o.to_string(),
            "server.4=[::1]:2890:3890:observer;127.0.0.1:2184"
        );
        let plain = Member::parse(2, "10.0.0.2:2888:3888").expect("valid");
        assert_eq!(plain.client, None);
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        for (id, line) in [
            (1, "zk1:2888"),
            (1, "zk1:x:3888"),
            (1, "zk1:2888:3888:leader"),
            (1, ":2888:3888"),
            (1, "zk1:2888:3888;port"),
        ] {
            let err = Member::parse(id, line).expect_err(line);
            assert!(err.to_string().starts_with("server.1: "), "{err}");
        }
        assert_eq!(Member::parse(0, "a:1:2"), Err(MembershipError::BadId(0)));
        assert!(Member::parse(999, "a:1:2").is_ok(), "another member's id");
    }

    #[test]
    fn config_text_reads_back_and_changes_as_zookeeper_reconfig_asks() {
        let line = |id, v| Member::parse(id, v).expect("valid");
        let two =
            Membership::new(vec![line(1, "a:1:2;2181"), line(2, "b:1:2;2181")]).expect("valid");
        let text = two.config_text(0x1_0000_0007);
        assert!(text.ends_with("\nversion=100000007"), "{text}");
        let (read, version) = Membership::parse_config(&text).expect("reads back");
        assert_eq!((read.config_text(version), version), (text, 0x1_0000_0007));
        // A new member list may separate lines with commas.
        let listed = "server.1=a:1:2;2181,server.2=b:1:2;2181";
        let (read, _) = Membership::parse_config(listed).expect("valid");
        assert_eq!(read.config_text(0), two.config_text(0));
        let changed = two
            .changed("server.3=c:1:2:observer;2183, server.2=b2:1:2;2182", "1")
            .expect("valid");
        assert_eq!(
            changed.config_text(0),
            "server.2=b2:1:2:participant;0.0.0.0:2182\n\
             server.3=c:1:2:observer;0.0.0.0:2183\nversion=0"
        );
        for (joining, leaving) in [("some thing", ""), ("server.3=c:1:2", ""), ("", "x")] {
            assert!(
                matches!(
                    two.changed(joining, leaving),
                    Err(MembershipError::BadConfig { .. })
                ),
                "{joining:?} {leaving:?}"
            );
        }
        assert!(Membership::parse_config("server.1=a:1:2\nversion=zz").is_err());
        assert!(Membership::parse_config("clientPort=1").is_err());
    }

    #[test]
    fn ensembles_are_checked_and_digested() {
        let line = |id, v| Member::parse(id, v).expect("valid");
        let three = Membership::new(vec![
            line(3, "c:1:2"),
            line(1, "a:1:2"),
            line(2, "b:1:2:observer"),
        ])
        .expect("valid");
        assert_eq!(three.voters(), vec![1, 3]);
        assert_eq!(three.learners(), vec![2]);
        assert!(three.check_member(2).is_ok());
        assert_eq!(three.check_member(9), Err(MembershipError::NotAMember(9)));
        assert_eq!(three.check_member(256), Err(MembershipError::BadId(256)));
        let other = Membership::new(vec![line(1, "a:1:2"), line(2, "b:1:2"), line(3, "c:1:2")])
            .expect("valid");
        assert_ne!(three.digest(), other.digest());
        assert_eq!(
            Membership::new(vec![line(1, "a:1:2"), line(1, "b:1:2")]),
            Err(MembershipError::Duplicate(1))
        );
        assert_eq!(
            Membership::new(vec![line(1, "a:1:2:observer")]),
            Err(MembershipError::NoVoter)
        );
    }
}
