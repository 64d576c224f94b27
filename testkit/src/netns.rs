//! A private network for the members of a test ensemble, so that a test can
//! cut some of them off from the others: each member runs in its own network
//! namespace with its own address, all joined by a bridge in a hub
//! namespace, which the test process (in the root namespace) reaches over
//! one more link. A partition is a pair of blackhole routes in the two
//! members' namespaces: their packets to each other vanish, as on a real
//! network, while clients still reach every member.
//!
//! The bridge lives in the hub namespace rather than the root one so that
//! the host's firewall (Docker's FORWARD policy, say) never sees the
//! members' traffic. Needs root and iproute2 (`scripts/install-deps.sh`).
//! Everything is removed on drop.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

pub struct Subnet {
    /// Third octet of 10.213.K.0/24; names every interface and namespace.
    k: u8,
    pub addrs: Vec<Ipv4Addr>,
    cut: Vec<(usize, usize)>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Subnet {
    /// A subnet of `n` member namespaces (addresses 10.213.K.1..=n), the
    /// test process at 10.213.K.254.
    pub fn create(n: usize) -> Result<Subnet, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("partition tests create network namespaces and need root".into());
        }
        let start = (std::process::id() % 200) as u8;
        for step in 0..200u8 {
            let k = (start.wrapping_add(step) % 200) + 20;
            // The root end's name is the lock: whoever creates it owns K.
            let hub = format!("zc{k}hub");
            if ip(&["netns", "add", &hub]).is_err() {
                continue;
            }
            let root_end = format!("zc{k}r");
            if ip(&[
                "link", "add", &root_end, "type", "veth", "peer", "name", "uplink", "netns", &hub,
            ])
            .is_err()
            {
                let _ = ip(&["netns", "del", &hub]);
                continue;
            }
            let mut subnet = Subnet {
                k,
                addrs: (1..=n as u8)
                    .map(|i| Ipv4Addr::new(10, 213, k, i))
                    .collect(),
                cut: Vec::new(),
            };
            subnet.build(&hub, &root_end)?;
            return Ok(subnet);
        }
        Err("no free 10.213.K.0/24 for a test subnet".into())
    }

    fn member_ns(&self, i: usize) -> String {
        format!("zc{}m{}", self.k, i + 1)
    }

    fn build(&mut self, hub: &str, root_end: &str) -> Result<(), String> {
        let k = self.k.to_string();
        ip(&["-n", hub, "link", "add", "name", "hubbr", "type", "bridge"])?;
        ip(&["-n", hub, "link", "set", "dev", "hubbr", "up"])?;
        ip(&[
            "-n", hub, "link", "set", "dev", "uplink", "master", "hubbr", "up",
        ])?;
        ip(&[
            "addr",
            "add",
            &format!("10.213.{k}.254/24"),
            "dev",
            root_end,
        ])?;
        ip(&["link", "set", root_end, "up"])?;
        for i in 0..self.addrs.len() {
            let ns = self.member_ns(i);
            let port = format!("m{}", i + 1);
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&[
                "-n", hub, "link", "set", "dev", &port, "master", "hubbr", "up",
            ])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.addrs[i]),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    /// Opens member `i`'s namespace, for [`enter`] in a child before exec.
    pub fn namespace(&self, i: usize) -> Result<File, String> {
        let path = format!("/run/netns/{}", self.member_ns(i));
        File::open(&path).map_err(|e| format!("{path}: {e}"))
    }

    /// Cuts member `i` off from every other member (both ways).
    pub fn isolate(&mut self, i: usize) -> Result<(), String> {
        for j in 0..self.addrs.len() {
            if j != i {
                self.cut_pair(i, j)?;
            }
        }
        Ok(())
    }

    fn cut_pair(&mut self, a: usize, b: usize) -> Result<(), String> {
        for (from, to) in [(a, b), (b, a)] {
            let target = format!("{}/32", self.addrs[to]);
            ip(&[
                "-n",
                &self.member_ns(from),
                "route",
                "add",
                "blackhole",
                &target,
            ])?;
        }
        self.cut.push((a, b));
        Ok(())
    }

    /// Every member reaches every other again.
    pub fn heal(&mut self) -> Result<(), String> {
        for (a, b) in std::mem::take(&mut self.cut) {
            for (from, to) in [(a, b), (b, a)] {
                let target = format!("{}/32", self.addrs[to]);
                ip(&[
                    "-n",
                    &self.member_ns(from),
                    "route",
                    "del",
                    "blackhole",
                    &target,
                ])?;
            }
        }
        Ok(())
    }
}

/// Moves the calling process into the namespace `ns` refers to: for
/// `CommandExt::pre_exec`, between fork and exec (setns is a plain syscall).
pub fn enter(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns on a descriptor we hold open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Subnet {
    fn drop(&mut self) {
        for i in 0..self.addrs.len() {
            let _ = ip(&["netns", "del", &self.member_ns(i)]);
        }
        // Removing the hub takes its link ends, and so the root end, along.
        let _ = ip(&["netns", "del", &format!("zc{}hub", self.k)]);
    }
}
