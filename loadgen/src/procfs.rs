//! What /proc tells about the servers under load and about loadgen itself:
//! which process listens on a port, its CPU time and resident memory.

use std::time::Duration;

/// The process listening on `port` on this machine, if /proc shows one we may inspect.
pub fn listener_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if listening && on_port {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// User + system CPU time of a process, all threads, from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / per_second))
}

/// Inter-processor interrupts the machine has taken, all CPUs together,
/// from /proc/interrupts: what the runtime's wake-ups cost beyond CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interrupts {
    /// Rescheduling interrupts (`RES`): a running thread kicked (to run
    /// io_uring task work, say) or preempted.
    pub rescheduling: u64,
    /// Function call interrupts (`CAL`): wake-ups of threads sleeping on
    /// another CPU, membarrier, TLB shootdowns.
    pub function_call: u64,
}

impl Interrupts {
    pub fn since(self, earlier: Interrupts) -> Interrupts {
        Interrupts {
            rescheduling: self.rescheduling.saturating_sub(earlier.rescheduling),
            function_call: self.function_call.saturating_sub(earlier.function_call),
        }
    }

    pub fn add(self, other: Interrupts) -> Interrupts {
        Interrupts {
            rescheduling: self.rescheduling + other.rescheduling,
            function_call: self.function_call + other.function_call,
        }
    }
}

pub fn interrupts() -> Option<Interrupts> {
    let table = std::fs::read_to_string("/proc/interrupts").ok()?;
    parse_interrupts(&table)
}

fn parse_interrupts(table: &str) -> Option<Interrupts> {
    let cpus = table.lines().next()?.split_whitespace().count();
    let total = |name: &str| -> Option<u64> {
        let line = table
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name)?.strip_prefix(':'))?;
        line.split_whitespace()
            .take(cpus)
            .map(|n| n.parse::<u64>().ok())
            .sum()
    };
    Some(Interrupts {
        rescheduling: total("RES")?,
        function_call: total("CAL")?,
    })
}

/// Resident set size in bytes, from /proc/PID/status.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

/// CPU time (user + system) loadgen itself has used so far, all threads.
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_add_up_over_cpus() {
        let table = "           CPU0       CPU1       \n \
                     24:          1          0  IO-APIC   5-edge      ACPI:Ged\n\
                     RES:    7658281    3454529   Rescheduling interrupts\n\
                     CAL:   10722676    9339980   Function call interrupts\n";
        assert_eq!(
            parse_interrupts(table),
            Some(Interrupts {
                rescheduling: 7658281 + 3454529,
                function_call: 10722676 + 9339980,
            })
        );
        assert_eq!(parse_interrupts("CPU0\n"), None);
    }

    #[test]
    fn finds_a_listener_of_another_process_and_reads_its_cpu_and_memory() {
        let mut child = std::process::Command::new("python3")
            .args([
                "-c",
                "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen()\n\
                 print(s.getsockname()[1],flush=True)\ntime.sleep(30)",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("port line");
        let port: u16 = line.trim().parse().expect("port");
        let found = listener_pid(port);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, Some(child.id()));
        let me = std::process::id();
        assert!(cpu_time(me).is_some());
        assert!(rss_bytes(me).is_some_and(|b| b > 0));
    }
}
