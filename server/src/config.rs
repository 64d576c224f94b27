//! Server configuration: ZooKeeper's `zoo.cfg` keys plus zoocore's own limits.
//!
//! As in ZooKeeper, a key it does not know as a config key is still honoured
//! when it names a `zookeeper.*` system property it would set from the file
//! (`extendedTypesEnabled`, `DigestAuthenticationProvider.superDigest`);
//! anything else is warned about and ignored.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use thiserror::Error;
use zoocore_consensus::{Member, Membership};

use crate::auth::Security;
use crate::storage::wal::LogSync;
use crate::tls::TlsSettings;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}")]
    Inconsistent(String),
    #[error("{0}")]
    Security(String),
}

/// `admin.ui.enabled` (on by default, with the admin server),
/// `admin.ui.readOnly` (a UI that only looks) and `admin.ui.allowedHosts`
/// (host names besides IP addresses and localhost that the UI answers to).
#[derive(Debug, Clone)]
pub struct UiSettings {
    pub enabled: bool,
    pub read_only: bool,
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub client_port: u16,
    pub client_port_address: IpAddr,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub tick_time_ms: u32,
    pub min_session_timeout_ms: u32,
    pub max_session_timeout_ms: u32,
    /// Connections per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    pub jute_max_buffer: usize,
    /// Four-letter words that may run; `*` allows all.
    pub four_letter_words: Vec<String>,
    pub extended_types: bool,
    pub super_digest: Option<String>,
    /// zoocore: shard executors, one per core (default: all CPUs but the sequencer's).
    pub shards: usize,
    /// zoocore: CPU the sequencer executor is pinned to.
    pub sequencer_cpu: usize,
    /// zoocore: capacity of each shard's queue into the sequencer
    /// (`globalOutstandingLimit` divided among the shards, when given).
    pub sequencer_queue: usize,
    /// zoocore: capacity of each shard's queue of committed batches.
    pub commit_queue: usize,
    /// zoocore: most txns in one group commit.
    pub max_batch_txns: usize,
    /// zoocore: most bytes of records in one group commit (a single larger
    /// txn still makes a batch of its own).
    pub max_batch_bytes: usize,
    /// zoocore: microseconds to wait for a batch that is not full to grow.
    pub commit_linger_us: u64,
    /// zoocore: microseconds an idle executor polls before it sleeps.
    pub spin_before_park_us: u64,
    /// zoocore: set up each executor's main io_uring with
    /// `SINGLE_ISSUER | DEFER_TASKRUN` instead of `COOP_TASKRUN` alone.
    pub defer_taskrun: bool,
    /// zoocore: size of a log segment, zero-filled before it is written.
    pub log_segment_bytes: u64,
    /// zoocore: how log appends are made durable (`fdatasync` or `dsync`).
    pub log_sync: LogSync,
    /// Txns between snapshots (taken after half of it plus a random part of the other half).
    pub snap_count: u64,
    /// Bytes of log between snapshots, likewise (`snapSizeLimitInKb`; 0 = no limit).
    pub snap_size_limit_bytes: u64,
    /// Snapshots `autopurge` keeps (at least 3, as in ZooKeeper).
    pub snap_retain_count: usize,
    /// Hours between purges; 0 turns autopurge off.
    pub purge_interval_hours: u64,
    /// The admin HTTP server (`/commands`, `/health`); off when `None`.
    pub admin_addr: Option<SocketAddr>,
    /// The web UI at `/ui/` on the admin server (`ui/`).
    pub ui: UiSettings,
    /// The Prometheus `/metrics` page; on when `metricsProvider.className`
    /// names the Prometheus provider, as in ZooKeeper.
    pub metrics_addr: Option<SocketAddr>,
    /// Log filter (`zoocore.logLevel`: a level such as `info`, or a tracing
    /// directive); the `ZOOCORE_LOG` environment variable overrides it.
    pub log_level: String,
    /// A log write + sync slower than this is logged (ZooKeeper's key and default).
    pub fsync_warning_ms: u64,
    /// How often empty containers and expired TTL nodes are looked for
    /// (ZooKeeper's `znode.container.checkIntervalMs`).
    pub container_check_interval_ms: u64,
    /// The ensemble this server is a member of; `None` (zero or one
    /// `server.N` line) is standalone, exactly as before ensembles.
    pub ensemble: Option<Ensemble>,
    /// Whether clientPort was given (else an ensemble member's line gives it).
    pub client_port_set: bool,
    /// SASL, principals, enforced authentication (`auth/`).
    pub security: Security,
    /// `secureClientPort` and the `ssl.*` keys (`tls.rs`).
    pub tls: TlsSettings,
    /// `sslQuorum`: TLS between members, with the `ssl.quorum.*` keys.
    pub ssl_quorum: bool,
    pub quorum_tls: TlsSettings,
}

/// An ensemble member's settings: zoo.cfg's `server.N` lines, `myid` in
/// dataDir, and the raft timing keys.
#[derive(Debug, Clone)]
pub struct Ensemble {
    pub myid: u64,
    pub membership: Membership,
    /// ZooKeeper's ticks for a member to connect and catch up: read and
    /// shown by `conf` as ZooKeeper shows it; the raft keys below decide
    /// zoocore's timing.
    pub init_limit: u32,
    /// ZooKeeper's ticks a follower may lag: read and shown by `conf`, as
    /// `init_limit`.
    pub sync_limit: u32,
    /// Milliseconds per raft tick (`zoocore.raftTickMs`); ZooKeeper's
    /// tickTime stays the session clock and does not drive raft.
    pub raft_tick_ms: u64,
    /// Raft ticks without a leader before an election (`zoocore.electionTicks`).
    pub election_ticks: usize,
    /// Raft ticks between a leader's heartbeats (`zoocore.heartbeatTicks`).
    pub heartbeat_ticks: usize,
    /// Raft entries kept before a snapshot when the log is compacted, so a
    /// member a little behind catches up from the log
    /// (`zoocore.raftRetainedEntries`).
    pub retained_entries: u64,
    /// `readonlymode.enabled`: how long a member without a leader waits
    /// before it serves reads to clients that allow a read-only server
    /// (ZooKeeper: the greater of 2 s and tickTime); `None` when off.
    pub read_only_after: Option<std::time::Duration>,
    /// `peerType`, when given: whether this server says it is an observer.
    /// The server lines decide; a mismatch is logged, as ZooKeeper does.
    pub peer_type_observer: Option<bool>,
    /// `reconfigEnabled` (off by default, as in ZooKeeper).
    pub reconfig_enabled: bool,
    /// The membership's version: 0 for the static lines, the zxid of the
    /// reconfig that made it for a `dynamicConfigFile` (its name's suffix).
    pub config_version: i64,
    /// The configuration file the server was started with, which a
    /// reconfig rewrites to point at the new dynamic file, as ZooKeeper's.
    pub config_file: PathBuf,
}

impl Ensemble {
    /// This server's line.
    pub fn me(&self) -> Option<&Member> {
        self.membership.get(self.myid)
    }
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            client_port: 2181,
            client_port_address: IpAddr::from([0, 0, 0, 0]),
            data_dir: PathBuf::from("zoocore-data"),
            data_log_dir: PathBuf::from("zoocore-data"),
            tick_time_ms: 2000,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40_000,
            max_client_cnxns: 60,
            jute_max_buffer: zoocore_net::consts::limits::DEFAULT_MAX_BUFFER,
            four_letter_words: vec!["srvr".into()],
            extended_types: false,
            super_digest: None,
            // Measured on 2 cores (ARCHITECTURE.md): the sequencer on a core of
            // its own beat sharing one with a shard for reads and writes.
            shards: cpus.saturating_sub(1).max(1),
            sequencer_cpu: cpus - 1,
            sequencer_queue: 1024,
            commit_queue: 1024,
            max_batch_txns: 1024,
            max_batch_bytes: 1 << 20,
            commit_linger_us: 0,
            spin_before_park_us: 0,
            defer_taskrun: false,
            log_segment_bytes: 64 << 20,
            log_sync: LogSync::Fdatasync,
            snap_count: 100_000,
            snap_size_limit_bytes: 4 << 40,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            admin_addr: Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            ui: UiSettings {
                enabled: true,
                read_only: false,
                allowed_hosts: Vec::new(),
            },
            metrics_addr: None,
            log_level: "info".into(),
            fsync_warning_ms: 1000,
            container_check_interval_ms: 60_000,
            ensemble: None,
            client_port_set: false,
            security: Security::default(),
            tls: TlsSettings::default(),
            ssl_quorum: false,
            quorum_tls: TlsSettings::default(),
        }
    }
}

impl Config {
    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::new(self.client_port_address, self.client_port)
    }

    /// Where TLS clients connect, with `secureClientPort`.
    pub fn secure_client_addr(&self) -> Option<SocketAddr> {
        let port = self.tls.secure_client_port?;
        let ip = self
            .tls
            .secure_client_port_address
            .unwrap_or(self.client_port_address);
        Some(SocketAddr::new(ip, port))
    }

    pub fn allows_word(&self, word: &str) -> bool {
        self.four_letter_words.iter().any(|w| w == "*" || w == word)
    }

    /// Reads a `zoo.cfg` and the security flags zkEnv.sh would hand
    /// ZooKeeper's JVM (`SERVER_JVMFLAGS`, else `JVMFLAGS`), and the JAAS
    /// file they name; returns the config and warnings for ignored keys.
    pub fn from_file(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let flags = std::env::var("SERVER_JVMFLAGS")
            .or_else(|_| std::env::var("JVMFLAGS"))
            .unwrap_or_default();
        let (mut config, warnings) = Self::parse_with_flags(&text, path, &flags)?;
        config.security.load().map_err(ConfigError::Security)?;
        Ok((config, warnings))
    }

    #[cfg(test)]
    pub fn parse(text: &str, path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        Self::parse_with_flags(text, path, "")
    }

    fn parse_with_flags(
        text: &str,
        path: &Path,
        jvm_flags: &str,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut config = Config::default();
        let mut warnings = Vec::new();
        config
            .security
            .apply_jvm_flags(jvm_flags, &mut warnings)
            .map_err(ConfigError::Security)?;
        let mut min_set = false;
        let mut max_set = false;
        let mut log_dir_set = false;
        let mut global_outstanding = None;
        let mut members = Vec::new();
        let mut read_only_mode = false;
        let mut ensemble = Ensemble {
            myid: 0,
            membership: Membership::default(),
            init_limit: 10,
            sync_limit: 5,
            // Measured on loopback: see ARCHITECTURE.md ("Ensemble timing").
            raft_tick_ms: 50,
            election_ticks: 10,
            heartbeat_ticks: 1,
            retained_entries: 1000,
            peer_type_observer: None,
            read_only_after: None,
            reconfig_enabled: false,
            config_version: 0,
            config_file: path.to_owned(),
        };
        let (mut admin_enabled, mut admin_ip, mut admin_port) =
            (true, IpAddr::from([0, 0, 0, 0]), 8080);
        let (mut metrics_enabled, mut metrics_ip, mut metrics_port) =
            (false, IpAddr::from([0, 0, 0, 0]), 7000);
        let base = path.parent().unwrap_or(Path::new("."));
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let invalid = |message: String| ConfigError::Invalid {
                path: path.to_owned(),
                line: i + 1,
                message,
            };
            let Some((key, value)) = line.split_once('=') else {
                return Err(invalid(format!("expected key=value, got {line:?}")));
            };
            let (key, value) = (key.trim(), value.trim());
            let number = |v: &str| -> Result<u64, ConfigError> {
                v.parse::<u64>().map_err(|_| {
                    invalid(format!("{key} must be a non-negative integer, got {v:?}"))
                })
            };
            let dir = |v: &str| {
                let p = PathBuf::from(v);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            };
            match config.security.apply(key, value, &mut warnings) {
                Some(Ok(())) => continue,
                Some(Err(e)) => return Err(invalid(e)),
                None => {}
            }
            if key == "sslQuorum" {
                config.ssl_quorum = value.eq_ignore_ascii_case("true");
                continue;
            }
            if let Some(rest) = key.strip_prefix("ssl.quorum.") {
                match config.quorum_tls.apply(&format!("ssl.{rest}"), value) {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => return Err(invalid(e)),
                    None => {}
                }
            }
            match config.tls.apply(key, value) {
                Some(Ok(())) => continue,
                Some(Err(e)) => return Err(invalid(e)),
                None => {}
            }
            match key {
                "clientPort" => {
                    config.client_port_set = true;
                    config.client_port = u16::try_from(number(value)?)
                        .map_err(|_| invalid(format!("clientPort {value} out of range")))?
                }
                "clientPortAddress" => {
                    config.client_port_address = value.parse().map_err(|_| {
                        invalid(format!("clientPortAddress {value:?} is not an IP address"))
                    })?
                }
                "dataDir" => config.data_dir = dir(value),
                "dataLogDir" => {
                    config.data_log_dir = dir(value);
                    log_dir_set = true;
                }
                "tickTime" => config.tick_time_ms = number(value)? as u32,
                "minSessionTimeout" => {
                    config.min_session_timeout_ms = number(value)? as u32;
                    min_set = true;
                }
                "maxSessionTimeout" => {
                    config.max_session_timeout_ms = number(value)? as u32;
                    max_set = true;
                }
                "maxClientCnxns" => config.max_client_cnxns = number(value)? as u32,
                "jute.maxbuffer" => config.jute_max_buffer = number(value)? as usize,
                "4lw.commands.whitelist" => {
                    config.four_letter_words = value
                        .split(',')
                        .map(|w| w.trim().to_owned())
                        .filter(|w| !w.is_empty())
                        .collect()
                }
                "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                    config.extended_types = value == "true"
                }
                "DigestAuthenticationProvider.superDigest"
                | "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    config.super_digest = Some(value.to_owned())
                }
                "zoocore.shards" => config.shards = number(value)? as usize,
                "zoocore.sequencerCpu" => config.sequencer_cpu = number(value)? as usize,
                "zoocore.sequencerQueue" => config.sequencer_queue = number(value)? as usize,
                // ZooKeeper's bound on requests in flight server-wide; here it
                // bounds the shards' queues into the sequencer together.
                "globalOutstandingLimit" => global_outstanding = Some(number(value)? as usize),
                "zoocore.commitQueue" => config.commit_queue = number(value)? as usize,
                "zoocore.maxBatchTxns" => config.max_batch_txns = number(value)? as usize,
                "zoocore.maxBatchBytes" => config.max_batch_bytes = number(value)? as usize,
                "zoocore.commitLingerMicros" => config.commit_linger_us = number(value)?,
                "zoocore.spinBeforeParkMicros" => config.spin_before_park_us = number(value)?,
                "zoocore.deferTaskrun" => config.defer_taskrun = value == "true",
                "zoocore.logLevel" => config.log_level = value.to_owned(),
                "zoocore.logSync" => {
                    config.log_sync = match value {
                        "fdatasync" => LogSync::Fdatasync,
                        "dsync" => LogSync::Dsync,
                        other => {
                            return Err(invalid(format!(
                                "zoocore.logSync must be fdatasync or dsync, got {other:?}"
                            )))
                        }
                    }
                }
                "zoocore.logSegmentBytes" => {
                    config.log_segment_bytes = number(value)?.next_multiple_of(1 << 20)
                }
                "snapCount" | "zookeeper.snapCount" => config.snap_count = number(value)?.max(2),
                "snapSizeLimitInKb" | "zookeeper.snapSizeLimitInKb" => {
                    config.snap_size_limit_bytes = number(value)?.saturating_mul(1024)
                }
                "autopurge.snapRetainCount" => {
                    let count = number(value)? as usize;
                    if count < 3 {
                        warnings.push(format!(
                            "{}:{}: autopurge.snapRetainCount {count} raised to the minimum, 3",
                            path.display(),
                            i + 1
                        ));
                    }
                    config.snap_retain_count = count.max(3);
                }
                "autopurge.purgeInterval" => config.purge_interval_hours = number(value)?,
                "fsync.warningthresholdms" | "zookeeper.fsync.warningthresholdms" => {
                    config.fsync_warning_ms = number(value)?
                }
                "znode.container.checkIntervalMs" => {
                    config.container_check_interval_ms = number(value)?.max(1)
                }
                "admin.enableServer" => admin_enabled = value == "true",
                "admin.ui.enabled" => config.ui.enabled = value.trim() == "true",
                "admin.ui.readOnly" => config.ui.read_only = value.trim() == "true",
                "admin.ui.allowedHosts" => {
                    config.ui.allowed_hosts = value
                        .split(',')
                        .map(|h| h.trim().to_owned())
                        .filter(|h| !h.is_empty())
                        .collect()
                }
                "admin.serverAddress" => {
                    admin_ip = value.parse().map_err(|_| {
                        invalid(format!(
                            "admin.serverAddress {value:?} is not an IP address"
                        ))
                    })?
                }
                "admin.serverPort" => {
                    admin_port = u16::try_from(number(value)?)
                        .map_err(|_| invalid(format!("admin.serverPort {value} out of range")))?
                }
                "metricsProvider.className" => metrics_enabled = value.contains("Prometheus"),
                "metricsProvider.httpHost" => {
                    metrics_ip = value.parse().map_err(|_| {
                        invalid(format!(
                            "metricsProvider.httpHost {value:?} is not an IP address"
                        ))
                    })?
                }
                "metricsProvider.httpPort" => {
                    metrics_port = u16::try_from(number(value)?).map_err(|_| {
                        invalid(format!("metricsProvider.httpPort {value} out of range"))
                    })?
                }
                _ if key.starts_with("server.") => {
                    let id = key["server.".len()..]
                        .parse::<u64>()
                        .map_err(|_| invalid(format!("{key}: server ids are numbers")))?;
                    members.push(Member::parse(id, value).map_err(|e| invalid(e.to_string()))?);
                }
                "initLimit" => ensemble.init_limit = number(value)? as u32,
                "syncLimit" => ensemble.sync_limit = number(value)? as u32,
                "readonlymode.enabled" => read_only_mode = value == "true",
                "zoocore.raftTickMs" => ensemble.raft_tick_ms = number(value)?,
                "zoocore.electionTicks" => ensemble.election_ticks = number(value)? as usize,
                "zoocore.heartbeatTicks" => ensemble.heartbeat_ticks = number(value)? as usize,
                "zoocore.raftRetainedEntries" => ensemble.retained_entries = number(value)?,
                "peerType" => {
                    ensemble.peer_type_observer = match value {
                        "participant" => Some(false),
                        "observer" => Some(true),
                        other => {
                            return Err(invalid(format!(
                                "peerType must be participant or observer, got {other:?}"
                            )))
                        }
                    }
                }
                "reconfigEnabled" => ensemble.reconfig_enabled = value == "true",
                "dynamicConfigFile" => {
                    let file = dir(value);
                    let text =
                        std::fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                            path: file.clone(),
                            source,
                        })?;
                    let (membership, _) = Membership::parse_config(&text).map_err(|e| {
                        invalid(format!("dynamicConfigFile {}: {e}", file.display()))
                    })?;
                    members.extend(membership.members().iter().cloned());
                    // ZooKeeper names the file <config>.dynamic.<version in hex>.
                    ensemble.config_version = file
                        .to_string_lossy()
                        .rsplit_once(".dynamic.")
                        .and_then(|(_, v)| i64::from_str_radix(v, 16).ok())
                        .unwrap_or(0);
                }
                "standaloneEnabled" | "preAllocSize" => warnings.push(format!(
                    "{}:{}: {key} is accepted but has no effect yet",
                    path.display(),
                    i + 1
                )),
                _ => warnings.push(format!(
                    "{}:{}: unknown key {key} ignored",
                    path.display(),
                    i + 1
                )),
            }
        }
        // Zero or one server line is standalone, as in ZooKeeper, which then
        // takes the client port from that line unless clientPort is given.
        if let ([only], false) = (members.as_slice(), config.client_port_set) {
            if let Some((host, port)) = &only.client {
                config.client_port = *port;
                if let Some(ip) = host.as_deref().and_then(|h| h.parse().ok()) {
                    config.client_port_address = ip;
                }
            }
        }
        if members.len() > 1 {
            ensemble.read_only_after = read_only_mode.then(|| {
                std::time::Duration::from_millis(u64::from(config.tick_time_ms.max(2000)))
            });
            ensemble.membership = Membership::new(members)
                .map_err(|e| ConfigError::Inconsistent(format!("{}: {e}", path.display())))?;
            config.ensemble = Some(ensemble);
        }
        config.admin_addr = admin_enabled.then(|| SocketAddr::new(admin_ip, admin_port));
        config.metrics_addr = metrics_enabled.then(|| SocketAddr::new(metrics_ip, metrics_port));
        if !log_dir_set {
            config.data_log_dir = config.data_dir.clone();
        }
        if let Some(limit) = global_outstanding {
            config.sequencer_queue = (limit / config.shards.max(1)).max(1);
        }
        if !min_set {
            config.min_session_timeout_ms = config.tick_time_ms * 2;
        }
        if !max_set {
            config.max_session_timeout_ms = config.tick_time_ms * 20;
        }
        config.check()?;
        Ok((config, warnings))
    }

    /// Rejects settings that cannot work together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Inconsistent(m));
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return fail(format!(
                "minSessionTimeout {} is above maxSessionTimeout {}",
                self.min_session_timeout_ms, self.max_session_timeout_ms
            ));
        }
        if self.shards == 0
            || self.sequencer_queue == 0
            || self.commit_queue == 0
            || self.max_batch_txns == 0
        {
            return fail("zoocore.shards and queue/batch limits must be at least 1".into());
        }
        if self.jute_max_buffer < 1024 {
            return fail(format!(
                "jute.maxbuffer {} is too small",
                self.jute_max_buffer
            ));
        }
        // A batch of max_batch_bytes plus one txn of up to jute.maxbuffer must fit a segment.
        let batch_room = (self.max_batch_bytes + self.jute_max_buffer) as u64 + (1 << 16);
        if self.log_segment_bytes < batch_room {
            return fail(format!(
                "zoocore.logSegmentBytes {} must be at least {batch_room} \
                 (zoocore.maxBatchBytes + jute.maxbuffer + 64 KiB)",
                self.log_segment_bytes
            ));
        }
        if self.tick_time_ms == 0 {
            return fail("tickTime must be positive".into());
        }
        if let Some(e) = &self.ensemble {
            if e.raft_tick_ms == 0
                || e.heartbeat_ticks == 0
                || e.election_ticks <= e.heartbeat_ticks
            {
                return fail(format!(
                    "zoocore.electionTicks ({}) must be above zoocore.heartbeatTicks ({}), \
                     both and zoocore.raftTickMs ({}) positive",
                    e.election_ticks, e.heartbeat_ticks, e.raft_tick_ms
                ));
            }
        }
        Ok(())
    }

    /// For an ensemble member: reads `myid` from dataDir, as ZooKeeper does,
    /// and takes the client port from this server's line unless clientPort
    /// was given.
    pub fn resolve_myid(&mut self) -> Result<(), ConfigError> {
        let Some(ensemble) = &mut self.ensemble else {
            return Ok(());
        };
        let path = self.data_dir.join("myid");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        ensemble.myid = text.trim().parse().map_err(|_| {
            ConfigError::Inconsistent(format!(
                "{}: {:?} is not a server id",
                path.display(),
                text.trim()
            ))
        })?;
        let me = ensemble
            .membership
            .check_member(ensemble.myid)
            .map_err(|e| ConfigError::Inconsistent(e.to_string()))?;
        if ensemble
            .peer_type_observer
            .is_some_and(|o| o != me.observer)
        {
            // ZooKeeper warns and goes by the server lines, as here.
            let role = |o: bool| if o { "observer" } else { "participant" };
            tracing::warn!(
                "peerType is {} but server.{} says {}; going by the server lines",
                role(!me.observer),
                ensemble.myid,
                role(me.observer)
            );
        }
        if let (false, Some((host, port))) = (self.client_port_set, &me.client) {
            self.client_port = *port;
            if let Some(ip) = host.as_deref().and_then(|h| h.parse().ok()) {
                self.client_port_address = ip;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_keys_and_derived_defaults() {
        let text = "# comment\ntickTime=1000\nclientPort=2999\nclientPortAddress=127.0.0.1\n\
                    dataDir=/var/zk\n4lw.commands.whitelist=ruok, srvr\nfoo=bar\nextendedTypesEnabled=true\n";
        let (c, warnings) = Config::parse(text, Path::new("/etc/zoo.cfg")).unwrap();
        assert_eq!(
            c.client_addr(),
            "127.0.0.1:2999".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(
            (c.min_session_timeout_ms, c.max_session_timeout_ms),
            (2000, 20_000)
        );
        assert_eq!(c.data_log_dir, PathBuf::from("/var/zk"));
        assert!(c.allows_word("ruok") && !c.allows_word("stat"));
        assert!(c.extended_types);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn a_single_server_line_is_standalone_on_its_client_port() {
        let line = "server.1=localhost:2888:3888;127.0.0.1:2999\n";
        let (c, _) = Config::parse(line, Path::new("z")).unwrap();
        assert!(c.ensemble.is_none());
        assert_eq!(
            c.client_addr(),
            "127.0.0.1:2999".parse::<SocketAddr>().unwrap()
        );
        let (c, _) = Config::parse(&format!("clientPort=3000\n{line}"), Path::new("z")).unwrap();
        assert_eq!(c.client_port, 3000);
    }

    #[test]
    fn only_srvr_is_whitelisted_by_default_as_in_zookeeper() {
        let c = Config::default();
        assert!(c.allows_word("srvr"));
        assert!(!c.allows_word("ruok") && !c.allows_word("mntr"));
    }

    #[test]
    fn snapshot_and_retention_keys() {
        let (c, warnings) = Config::parse(
            "snapCount=1\nsnapSizeLimitInKb=10\nautopurge.snapRetainCount=1\nautopurge.purgeInterval=24\n",
            Path::new("z"),
        )
        .unwrap();
        assert_eq!(c.snap_count, 2, "ZooKeeper's minimum");
        assert_eq!(c.snap_size_limit_bytes, 10 * 1024);
        assert_eq!((c.snap_retain_count, c.purge_interval_hours), (3, 24));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let err = Config::parse("zoocore.logSegmentBytes=1048576\n", Path::new("z")).unwrap_err();
        assert!(err.to_string().contains("zoocore.logSegmentBytes"), "{err}");
    }

    #[test]
    fn admin_and_metrics_servers_as_zookeeper_configures_them() {
        let (c, _) = Config::parse("", Path::new("z")).unwrap();
        assert_eq!(c.admin_addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(c.metrics_addr, None);
        let (c, warnings) = Config::parse(
            "admin.enableServer=false\nmetricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort=7001\n",
            Path::new("z"),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.admin_addr, None);
        assert_eq!(c.metrics_addr, Some("127.0.0.1:7001".parse().unwrap()));
    }

    #[test]
    fn global_outstanding_limit_is_shared_by_the_shards() {
        let (c, _) = Config::parse(
            "globalOutstandingLimit=1000\nzoocore.shards=4\n",
            Path::new("z"),
        )
        .unwrap();
        assert_eq!(c.sequencer_queue, 250);
        let (c, _) = Config::parse(
            "zoocore.spinBeforeParkMicros=50\nzoocore.logLevel=debug\n",
            Path::new("z"),
        )
        .unwrap();
        assert_eq!(c.spin_before_park_us, 50);
        assert!(!c.defer_taskrun);
        assert_eq!(c.log_level, "debug");
    }

    #[test]
    fn log_sync_is_fdatasync_or_dsync() {
        assert_eq!(Config::default().log_sync, LogSync::Fdatasync);
        let (c, _) = Config::parse("zoocore.logSync=dsync\n", Path::new("z")).unwrap();
        assert_eq!(c.log_sync, LogSync::Dsync);
        let err = Config::parse("zoocore.logSync=sometimes\n", Path::new("z")).unwrap_err();
        assert!(err.to_string().contains("fdatasync or dsync"), "{err}");
    }

    #[test]
    fn bad_values_name_the_line() {
        let err = Config::parse("clientPort=x\n", Path::new("zoo.cfg")).unwrap_err();
        assert!(err.to_string().starts_with("zoo.cfg:1:"), "{err}");
        assert!(
            Config::parse("minSessionTimeout=9\nmaxSessionTimeout=5\n", Path::new("z")).is_err()
        );
    }
}
