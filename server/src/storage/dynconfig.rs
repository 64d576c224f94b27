//! The files a reconfig leaves, as ZooKeeper leaves them: the membership in
//! `<config file>.dynamic.<version in hex>` (its `server.N` lines, sorted,
//! no version line: the name carries it), and the configuration file
//! rewritten to point at it (`dynamicConfigFile=`), without the server
//! lines it had and, when this server's line gives a client address,
//! without `clientPort`/`clientPortAddress`. A restart reads both back.
//! Each file is written to a temporary name, made durable, and renamed in.

use std::io::Write;
use std::path::{Path, PathBuf};

use zoocore_consensus::Membership;

/// Writes the dynamic file for `/zookeeper/config`'s `text` and points
/// `config_file` at it; returns the dynamic file's path.
pub fn write(config_file: &Path, text: &str, myid: u64) -> std::io::Result<PathBuf> {
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let (membership, version) =
        Membership::parse_config(text).map_err(|e| invalid(e.to_string()))?;
    let config_file = std::path::absolute(config_file)?;
    let dynamic = PathBuf::from(format!("{}.dynamic.{version:x}", config_file.display()));
    let mut lines: Vec<String> = membership.members().iter().map(|m| m.to_string()).collect();
    lines.sort();
    replace(&dynamic, &lines.join("\n"))?;

    let erase_client = membership.get(myid).is_some_and(|m| m.client.is_some());
    let current = std::fs::read_to_string(&config_file)?;
    let mut kept: Vec<&str> = current
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            !(key.starts_with("server.")
                || key.starts_with("group")
                || key.starts_with("weight")
                || key == "dynamicConfigFile"
                || (erase_client && (key == "clientPort" || key == "clientPortAddress")))
        })
        .collect();
    let pointer = format!("dynamicConfigFile={}", dynamic.display());
    kept.push(&pointer);
    replace(&config_file, &(kept.join("\n") + "\n"))?;
    Ok(dynamic)
}

/// Replaces `path` with `text` durably.
fn replace(path: &Path, text: &str) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        super::dir::sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconfig_leaves_a_dynamic_file_and_a_configuration_that_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("zoocore-dynconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cfg = dir.join("zoo.cfg");
        std::fs::write(
            &cfg,
            "tickTime=2000\nclientPort=2181\ndataDir=data\nreconfigEnabled=true\n\
             server.1=127.0.0.1:2888:3888;2181\nserver.2=127.0.0.1:2889:3889;2182\n",
        )
        .expect("write zoo.cfg");
        let text = "server.1=127.0.0.1:2888:3888:participant;0.0.0.0:2181\n\
                    server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
                    server.3=127.0.0.1:2890:3890:observer;0.0.0.0:2183\nversion=100000004";
        let dynamic = write(&cfg, text, 1).expect("written");
        assert!(dynamic
            .to_string_lossy()
            .ends_with("zoo.cfg.dynamic.100000004"));
        let lines = std::fs::read_to_string(&dynamic).expect("dynamic file");
        assert_eq!(lines, text.rsplit_once('\n').expect("lines").0);
        let rewritten = std::fs::read_to_string(&cfg).expect("zoo.cfg");
        assert_eq!(
            rewritten,
            format!(
                "tickTime=2000\ndataDir=data\nreconfigEnabled=true\ndynamicConfigFile={}\n",
                dynamic.display()
            )
        );
        let (config, _) = crate::config::Config::from_file(&cfg).expect("reads back");
        let ensemble = config.ensemble.expect("an ensemble");
        assert_eq!(ensemble.config_version, 0x1_0000_0004);
        assert_eq!(
            ensemble.membership.config_text(ensemble.config_version),
            text
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
