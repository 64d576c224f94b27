//! `zoocore tune check` on this host: every check reports, a memlock limit
//! too small for glommio fails the check exactly when the server itself
//! refuses to start with it, and an unusable log dir fails the disk check.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zoocore"))
}

/// A world-writable scratch dir (the unprivileged runs use it too).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zoocore-tune-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let _ = Command::new("chmod").arg("777").arg(&dir).status();
    dir
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn every_check_reports_and_the_disk_is_measured() {
    let dir = scratch("all");
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(&dir)
        .args(["tune", "check"])
        .output()
        .expect("run tune check");
    let report = text(&out);
    for check in [
        "io_uring",
        "memlock",
        "cpus",
        "isolation",
        "governor",
        "thp",
        "swappiness",
        "disk",
        "nic-irqs",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with('[') && l[7..].starts_with(check)),
            "{check} missing:\n{report}"
        );
    }
    let disk = report
        .lines()
        .find(|l| l.contains("fdatasync"))
        .expect("disk line");
    assert!(disk.contains("p50 ") && disk.contains("p99 "), "{disk}");
    // Every finding that is not ok says how to fix it.
    let lines: Vec<&str> = report.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("[WARN]") || l.starts_with("[FAIL]") {
            assert!(lines.get(i + 1).is_some_and(|n| n.contains("fix: ")), "{l}");
        }
    }
    assert_eq!(
        out.status.code(),
        Some(u8::from(report.contains("[FAIL]")).into()),
        "{report}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary as user nobody with a 64 KiB memlock limit, for at most 30 s.
fn unprivileged(args: &[&str], dir: &Path) -> Output {
    // `timeout`: should the server start after all, the test still ends.
    Command::new("timeout")
        .args([
            "30",
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "prlimit",
            "--memlock=65536:65536",
        ])
        .arg(binary())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run setpriv + prlimit (util-linux)")
}

#[test]
fn too_little_locked_memory_fails_the_check_as_it_fails_the_server() {
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } != 0 {
        // Dropping to nobody needs root; as a user the limits are our own.
        eprintln!("not root: skipped (CI runs as root)");
        return;
    }
    let dir = scratch("memlock");
    let check = unprivileged(&["tune", "check"], &dir);
    let report = text(&check);
    assert!(report.contains("[FAIL] memlock"), "{report}");
    assert_eq!(check.status.code(), Some(1), "{report}");
    let server = unprivileged(&["--client-port", "0"], &dir);
    assert!(!server.status.success());
    assert!(
        text(&server).contains("RLIMIT_MEMLOCK"),
        "{}",
        text(&server)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unusable_log_dir_fails_the_disk_check() {
    let out = Command::new(binary())
        .args(["--data-dir", "/proc/no-such-dir", "tune", "check"])
        .output()
        .expect("run tune check");
    let report = text(&out);
    assert!(report.contains("[FAIL] disk"), "{report}");
    assert_eq!(out.status.code(), Some(1));
}

/// tuning/zoocore.service passes `systemd-analyze verify` (pointed at this
/// build's binary): no unknown keys, no bad values.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tuning/zoocore.service"
    ))
    .expect("tuning/zoocore.service");
    for key in ["LimitMEMLOCK=", "CPUAffinity=", "Restart=on-failure"] {
        assert!(unit.contains(key), "{key} missing");
    }
    let dir = scratch("unit");
    let path = dir.join("zoocore.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/zoocore", &binary().display().to_string()),
    )
    .expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (scripts/install-deps.sh installs systemd)");
    assert!(
        out.status.success() && text(&out).trim().is_empty(),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
