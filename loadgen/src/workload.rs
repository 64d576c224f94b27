//! The workloads: which request a session sends next, and the znodes they
//! need created before the run.

use zoocore_net::consts::perms;
use zoocore_net::records::{CreateRequest, DeleteRequest, PathWatchRequest, SetDataRequest};
use zoocore_net::{Acl, CreateMode, Request};

use crate::session::Purpose;
use crate::stats::Class;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// getData / setData on the znodes, mixed by --read-pct.
    Mix,
    /// exists on the znodes.
    Exists,
    /// getChildren of /loadgen (the reply lists all --znodes).
    Children,
    /// Each session creates a node and deletes it again (--create-mode).
    CreateDelete,
    /// multi of --multi-ops setData on the znodes.
    Multi,
    /// Connect/close storm: each session slot opens a session, closes it,
    /// and opens the next (closed loop only).
    Connect,
    /// One writer sets /loadgen/n0000000; every other session keeps a data
    /// watch on it and measures the time from the write to its event
    /// (closed loop, one thread).
    Watch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CreateKind {
    Persistent,
    EphemeralSequential,
}

/// The parameters requests are drawn from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Spec {
    pub workload: Workload,
    pub read_pct: u32,
    pub znodes: usize,
    pub value_size: usize,
    pub create_mode: CreateKind,
    pub multi_ops: usize,
}

pub const ROOT: &str = "/loadgen";
/// Where create-delete makes and removes its nodes.
pub const SCRATCH: &str = "/loadgen-cd";

pub fn path(i: usize) -> String {
    format!("{ROOT}/n{i:07}")
}

pub fn open_acl() -> Vec<Acl> {
    vec![Acl::new(perms::ALL, "world", "anyone")]
}

pub fn create(path: String, data: Vec<u8>, mode: CreateMode) -> Request {
    Request::Create(CreateRequest {
        path,
        data: Some(data),
        acl: open_acl(),
        flags: mode as i32,
    })
}

pub fn get_data(path: String, watch: bool) -> Request {
    Request::GetData(PathWatchRequest { path, watch })
}

/// xorshift64: cheap, and good enough to pick paths and mix operations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() >> 11) as usize % n.max(1)
    }
}

/// Per-session state of the generator.
#[derive(Default)]
pub struct SessionOps {
    /// Nodes this session created and has not deleted yet (create-delete).
    pub to_delete: Vec<String>,
    /// Creates of this session sent and not answered (create-delete).
    pub creating: usize,
    created: u64,
}

impl Spec {
    /// The next request of a session of the mixed, read, create-delete and
    /// multi workloads (the storm and watch workloads drive their own).
    pub fn next(
        &self,
        session: usize,
        ops: &mut SessionOps,
        rng: &mut Rng,
        value: &[u8],
    ) -> (Request, Purpose) {
        let target = |rng: &mut Rng| path(rng.below(self.znodes));
        match self.workload {
            Workload::Mix if (rng.next() % 100) < u64::from(self.read_pct) => {
                (get_data(target(rng), false), Purpose::Measure(Class::Read))
            }
            Workload::Mix => (set_data(target(rng), value), Purpose::Measure(Class::Write)),
            Workload::Exists => (
                Request::Exists(PathWatchRequest {
                    path: target(rng),
                    watch: false,
                }),
                Purpose::Measure(Class::Read),
            ),
            Workload::Children => (
                Request::GetChildren(PathWatchRequest {
                    path: ROOT.into(),
                    watch: false,
                }),
                Purpose::Measure(Class::Read),
            ),
            Workload::CreateDelete => {
                if let Some(path) = ops.to_delete.pop() {
                    let delete = Request::Delete(DeleteRequest { path, version: -1 });
                    return (delete, Purpose::Measure(Class::Write));
                }
                ops.creating += 1;
                ops.created += 1;
                match self.create_mode {
                    CreateKind::Persistent => {
                        let path = format!("{SCRATCH}/s{session}-{}", ops.created);
                        // The delete can follow at once: the server keeps a
                        // session's requests in order.
                        ops.to_delete.push(path.clone());
                        ops.creating -= 1;
                        let request = create(path, value.to_vec(), CreateMode::Persistent);
                        (request, Purpose::Measure(Class::Write))
                    }
                    CreateKind::EphemeralSequential => {
                        let path = format!("{SCRATCH}/e-");
                        let request = create(path, value.to_vec(), CreateMode::EphemeralSequential);
                        (request, Purpose::CreateToDelete)
                    }
                }
            }
            Workload::Multi => {
                let ops = (0..self.multi_ops.max(1))
                    .map(|_| set_data(target(rng), value))
                    .collect();
                (Request::Multi(ops), Purpose::Measure(Class::Write))
            }
            Workload::Connect | Workload::Watch => {
                unreachable!("the storm and watch workloads send their own requests")
            }
        }
    }

    /// Whether a session of this workload may send another request now: an
    /// ephemeral-sequential create-delete session waits for its create's
    /// reply before the delete.
    pub fn ready(&self, ops: &SessionOps) -> bool {
        !(self.workload == Workload::CreateDelete
            && self.create_mode == CreateKind::EphemeralSequential
            && ops.creating > 0
            && ops.to_delete.is_empty())
    }
}

pub fn set_data(path: String, value: &[u8]) -> Request {
    Request::SetData(SetDataRequest {
        path,
        data: Some(value.to_vec()),
        version: -1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(workload: Workload) -> Spec {
        Spec {
            workload,
            read_pct: 90,
            znodes: 10,
            value_size: 4,
            create_mode: CreateKind::EphemeralSequential,
            multi_ops: 3,
        }
    }

    #[test]
    fn mix_follows_the_read_percentage() {
        let spec = spec(Workload::Mix);
        let mut rng = Rng::new(7);
        let mut ops = SessionOps::default();
        let reads = (0..10_000)
            .filter(|_| {
                let (r, _) = spec.next(0, &mut ops, &mut rng, b"vvvv");
                matches!(r, Request::GetData(_))
            })
            .count();
        assert!((8_700..9_300).contains(&reads), "{reads}");
    }

    #[test]
    fn ephemeral_sequential_waits_for_the_created_name_before_deleting() {
        let spec = spec(Workload::CreateDelete);
        let mut rng = Rng::new(7);
        let mut ops = SessionOps::default();
        let (first, purpose) = spec.next(3, &mut ops, &mut rng, b"v");
        assert!(matches!(first, Request::Create(ref c) if c.flags == 3));
        assert_eq!(purpose, Purpose::CreateToDelete);
        assert!(!spec.ready(&ops));
        ops.creating -= 1;
        ops.to_delete.push("/loadgen-cd/e-0000000001".into());
        assert!(spec.ready(&ops));
        let (second, _) = spec.next(3, &mut ops, &mut rng, b"v");
        assert!(matches!(second, Request::Delete(ref d) if d.path == "/loadgen-cd/e-0000000001"));
    }

    #[test]
    fn persistent_create_is_followed_by_its_delete() {
        let spec = Spec {
            create_mode: CreateKind::Persistent,
            ..spec(Workload::CreateDelete)
        };
        let mut ops = SessionOps::default();
        let mut rng = Rng::new(1);
        let (a, _) = spec.next(2, &mut ops, &mut rng, b"v");
        let (b, _) = spec.next(2, &mut ops, &mut rng, b"v");
        assert!(matches!(a, Request::Create(ref c) if c.path == "/loadgen-cd/s2-1"));
        assert!(matches!(b, Request::Delete(ref d) if d.path == "/loadgen-cd/s2-1"));
    }
}
