//! `zoocore tune check`: what on this host helps or hurts zoocore, each
//! finding with its fix. Reads /proc and /sys, makes one io_uring, and
//! measures the data log disk's fdatasync latency. Exit code 1 when a
//! check fails (zoocore will not run well, or at all), 0 otherwise.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    /// Works, but costs latency or throughput.
    Warn,
    /// zoocore will not start or will misbehave.
    Fail,
}

pub struct Finding {
    pub check: &'static str,
    pub level: Level,
    pub detail: String,
    /// What to do about it, when it is not Ok.
    pub fix: String,
}

fn finding(check: &'static str, level: Level, detail: String, fix: &str) -> Finding {
    Finding {
        check,
        level,
        detail,
        fix: fix.to_owned(),
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

fn io_uring() -> Finding {
    let disabled = read("/proc/sys/kernel/io_uring_disabled").unwrap_or_else(|| "0".into());
    // SAFETY: io_uring_setup with a zeroed params struct; the fd is closed at once.
    let fd = unsafe {
        let mut params = [0u8; 120];
        libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr())
    };
    if fd >= 0 {
        // SAFETY: closing the ring just made.
        unsafe { libc::close(fd as i32) };
        return finding(
            "io_uring",
            Level::Ok,
            format!("a ring could be created (io_uring_disabled={disabled})"),
            "",
        );
    }
    let error = std::io::Error::last_os_error();
    finding(
        "io_uring",
        Level::Fail,
        format!("io_uring_setup failed: {error} (io_uring_disabled={disabled})"),
        "zoocore needs io_uring (Linux 5.8+): set sysctl kernel.io_uring_disabled=0, or allow io_uring in the container's seccomp profile",
    )
}

fn memlock(config: &Config) -> Finding {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    let rings = (config.shards + 1) * 3;
    let want = (rings * crate::process::IO_MEMORY) as u64;
    let least = (rings * crate::process::MIN_IO_MEMORY) as u64;
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_owned()
        } else {
            format!("{} KiB", v / 1024)
        }
    };
    let detail = format!(
        "soft {} / hard {}; {} executors want {} KiB, need at least {} KiB",
        show(limit.rlim_cur),
        show(limit.rlim_max),
        config.shards + 1,
        want / 1024,
        least / 1024
    );
    let fix = "raise it: LimitMEMLOCK=64M in the systemd unit, or `ulimit -l 65536` with a matching hard limit in /etc/security/limits.conf (tuning/README.md)";
    // zoocore raises its soft limit up to the hard one itself, and as root
    // the hard one too.
    // SAFETY: geteuid only reads the process's credentials.
    if unsafe { libc::geteuid() } == 0 {
        finding(
            "memlock",
            Level::Ok,
            detail + "; running as root, zoocore raises it itself",
            "",
        )
    } else if limit.rlim_max >= want {
        finding("memlock", Level::Ok, detail, "")
    } else if limit.rlim_max >= least {
        finding(
            "memlock",
            Level::Warn,
            detail + "; io_uring memory will be shrunk to fit",
            fix,
        )
    } else {
        finding(
            "memlock",
            Level::Fail,
            detail + "; zoocore will refuse to start",
            fix,
        )
    }
}

fn cpus(config: &Config) -> Vec<Finding> {
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shard_cpus = match config.shards.min(count) {
        0 | 1 => "CPU 0".to_owned(),
        n => format!("CPUs 0-{}", n - 1),
    };
    let layout = format!(
        "{count} CPUs usable; {} shard(s) on {shard_cpus}, sequencer on CPU {}",
        config.shards,
        config.sequencer_cpu.min(count.saturating_sub(1))
    );
    let mut out = vec![if count >= 2 {
        finding("cpus", Level::Ok, layout, "")
    } else {
        finding(
            "cpus",
            Level::Warn,
            layout + "; the sequencer shares the only core with the shard",
            "give zoocore at least 2 cores (1 shard + the sequencer)",
        )
    }];
    let cmdline = read("/proc/cmdline").unwrap_or_default();
    let isolated = read("/sys/devices/system/cpu/isolated").unwrap_or_default();
    let nohz = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("nohz_full="))
        .unwrap_or("");
    out.push(if isolated.is_empty() {
        finding(
            "isolation",
            Level::Warn,
            "no isolated CPUs (isolcpus/nohz_full not set): other processes and the kernel share zoocore's cores".into(),
            "for stable tails boot with isolcpus=<cpus> nohz_full=<cpus> for zoocore's cores, or confine everything else with systemd CPUAffinity",
        )
    } else {
        finding(
            "isolation",
            Level::Ok,
            format!("isolated CPUs {isolated}; nohz_full={}", if nohz.is_empty() { "-" } else { nohz }),
            "",
        )
    });
    let governors: Vec<String> = (0..count)
        .filter_map(|c| {
            read(&format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
        })
        .collect();
    out.push(if governors.is_empty() {
        finding(
            "governor",
            Level::Ok,
            "no cpufreq governor exposed (a VM or a fixed clock)".into(),
            "",
        )
    } else if governors.iter().all(|g| g == "performance") {
        finding("governor", Level::Ok, "performance on every CPU".into(), "")
    } else {
        finding(
            "governor",
            Level::Warn,
            format!("governors: {}", governors.join(",")),
            "cpupower frequency-set -g performance (ramping clocks adds latency)",
        )
    });
    out
}

fn memory() -> Vec<Finding> {
    let thp = read("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let swappiness: u32 = read("/proc/sys/vm/swappiness")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    vec![
        if thp.contains("[always]") {
            finding(
                "thp",
                Level::Warn,
                format!("transparent huge pages: {thp}"),
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (compaction stalls show in tails)",
            )
        } else {
            finding(
                "thp",
                Level::Ok,
                format!("transparent huge pages: {thp}"),
                "",
            )
        },
        if swappiness > 10 {
            finding(
                "swappiness",
                Level::Warn,
                format!(
                    "vm.swappiness={swappiness}: the tree may be swapped out under memory pressure"
                ),
                "sysctl vm.swappiness=1",
            )
        } else {
            finding(
                "swappiness",
                Level::Ok,
                format!("vm.swappiness={swappiness}"),
                "",
            )
        },
    ]
}

/// Writes and syncs 4 KiB `rounds` times in `dir`, as a group commit does.
pub fn fsync_latency(dir: &Path, rounds: usize) -> std::io::Result<Vec<Duration>> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!(".zoocore-tune-{}", std::process::id()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        // Preallocated and synced first, as log segments are.
        file.write_all(&vec![0u8; rounds * 4096])?;
        file.sync_all()?;
        let block = [0x5au8; 4096];
        let mut times = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let started = Instant::now();
            file.write_all_at(&block, (i * 4096) as u64)?;
            file.sync_data()?;
            times.push(started.elapsed());
        }
        Ok(times)
    })();
    let _ = fs::remove_file(&path);
    result
}

fn disk(config: &Config) -> Finding {
    let dir = &config.data_log_dir;
    match fsync_latency(dir, 200) {
        Ok(mut times) => {
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            let (p50, p99) = (at(0.5), at(0.99));
            let detail = format!(
                "4 KiB write + fdatasync in {}: p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
                dir.display(),
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                times[times.len() - 1].as_secs_f64() * 1e6
            );
            if p99 > Duration::from_millis(5) {
                finding(
                    "disk",
                    Level::Warn,
                    detail,
                    "every write waits for one sync: put dataLogDir on a disk with low sync latency (NVMe, or a battery-backed write cache)",
                )
            } else {
                finding("disk", Level::Ok, detail, "")
            }
        }
        Err(e) => finding(
            "disk",
            Level::Fail,
            format!("cannot write and sync in {}: {e}", dir.display()),
            "make dataLogDir writable by zoocore",
        ),
    }
}

/// IRQs of the network interfaces, with the CPUs they may run on.
fn nic_irqs() -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    let Ok(devices) = fs::read_dir("/sys/class/net") else {
        return out;
    };
    for dev in devices.flatten() {
        let name = dev.file_name().to_string_lossy().into_owned();
        let Ok(device) = fs::canonicalize(dev.path().join("device")) else {
            continue;
        };
        let irq_dirs = [device.join("msi_irqs"), device.join("../msi_irqs")];
        let Some(irqs) = irq_dirs.iter().find_map(|d| fs::read_dir(d).ok()) else {
            continue;
        };
        for irq in irqs.flatten() {
            if let Ok(n) = irq.file_name().to_string_lossy().parse::<u32>() {
                let cpus = read(&format!("/proc/irq/{n}/smp_affinity_list")).unwrap_or_default();
                out.push((name.clone(), n, cpus));
            }
        }
    }
    out
}

/// Whether a CPU list such as `0-3,8` holds `cpu`.
fn cpu_list_has(list: &str, cpu: usize) -> bool {
    list.split(',').any(|part| match part.split_once('-') {
        Some((a, b)) => matches!((a.trim().parse::<usize>(), b.trim().parse::<usize>()), (Ok(a), Ok(b)) if (a..=b).contains(&cpu)),
        None => part.trim().parse::<usize>() == Ok(cpu),
    })
}

fn irq_affinity(config: &Config) -> Finding {
    let irqs = nic_irqs();
    if irqs.is_empty() {
        return finding(
            "nic-irqs",
            Level::Ok,
            "no network device IRQs found (loopback only, or not exposed)".into(),
            "",
        );
    }
    let sequencer = config.sequencer_cpu;
    let shown: Vec<String> = irqs
        .iter()
        .map(|(dev, n, cpus)| format!("{dev} irq {n} -> cpus {cpus}"))
        .collect();
    let on_sequencer: Vec<u32> = irqs
        .iter()
        .filter(|(_, _, cpus)| {
            cpu_list_has(cpus, sequencer) && config.shards > 0 && sequencer >= config.shards
        })
        .map(|(_, n, _)| *n)
        .collect();
    if on_sequencer.is_empty() {
        finding("nic-irqs", Level::Ok, shown.join("; "), "")
    } else {
        finding(
            "nic-irqs",
            Level::Warn,
            format!("{}; IRQs {on_sequencer:?} may run on the sequencer's CPU {sequencer}", shown.join("; ")),
            "steer them to the shard cores (which serve the sockets): echo <shard cpus> > /proc/irq/<n>/smp_affinity_list, and stop irqbalance from moving them",
        )
    }
}

/// Every check, in the order printed.
pub fn check(config: &Config) -> Vec<Finding> {
    let mut all = vec![io_uring(), memlock(config)];
    all.extend(cpus(config));
    all.extend(memory());
    all.push(disk(config));
    all.push(irq_affinity(config));
    all
}

/// Prints the findings; returns the exit code.
pub fn report(findings: &[Finding]) -> u8 {
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("[{tag}] {:<11} {}", f.check, f.detail);
        if f.level != Level::Ok {
            println!("       {:<11} fix: {}", "", f.fix);
        }
    }
    u8::from(findings.iter().any(|f| f.level == Level::Fail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_read_as_the_kernel_writes_them() {
        assert!(cpu_list_has("0-3,8", 2));
        assert!(cpu_list_has("0-3,8", 8));
        assert!(!cpu_list_has("0-3,8", 5));
        assert!(cpu_list_has("1", 1));
        assert!(!cpu_list_has("", 0));
    }

    #[test]
    fn fsync_latency_is_measured_in_the_given_dir() {
        let dir = std::env::temp_dir().join(format!("zoocore-tune-test-{}", std::process::id()));
        let times = fsync_latency(&dir, 5).unwrap();
        assert_eq!(times.len(), 5);
        assert!(
            fs::read_dir(&dir).unwrap().next().is_none(),
            "the probe file is removed"
        );
        let _ = fs::remove_dir(&dir);
    }
}
