//! The data tree: znodes with data, ACL, children and ZooKeeper's persisted
//! stat, plus the indexes of ephemeral, container and TTL nodes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use zoocore_net::{consts::perms, Acl, Stat};

use crate::acl::open_acl_unsafe;
use crate::ephemeral::{kind_of, EphemeralKind, CONTAINER_OWNER};
use crate::path;
use crate::txn::{CreateKind, CreateTxn, Txn, TxnOp};

/// A node's metadata as ZooKeeper persists it. `cversion` here counts child
/// creations only; clients see `2 * cversion - numChildren` (creates + deletes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct StatPersisted {
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
}

impl StatPersisted {
    fn created(zxid: i64, time: i64, ephemeral_owner: i64) -> Self {
        StatPersisted {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            ephemeral_owner,
            pzxid: zxid,
            ..Default::default()
        }
    }
}

/// ACL lists are shared between nodes that have the same list.
pub type AclList = Arc<[Acl]>;

#[derive(Debug, Clone)]
pub struct Node {
    pub data: Option<Box<[u8]>>,
    pub acl: AclList,
    pub stat: StatPersisted,
    pub children: BTreeSet<Box<str>>,
}

/// Why a snapshot's nodes do not make a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("node {0} appears twice")]
    Duplicate(String),
    #[error("node {0} comes before its parent")]
    Orphan(String),
}

/// A deleted node, with the ACLs that decide who may see the events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub path: String,
    pub acl: AclList,
    pub parent_acl: AclList,
}

/// The effect of one applied op, for replies and watch events. ACLs are
/// carried because watch events reach only watchers with READ on the node
/// (the parent, for child-list changes), as in ZooKeeper since CVE-2024-23944.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Created {
        path: String,
        stat: Stat,
        kind: CreateKind,
        acl: AclList,
        parent_acl: AclList,
    },
    Deleted(Deletion),
    DataSet {
        path: String,
        stat: Stat,
        acl: AclList,
    },
    AclSet {
        stat: Stat,
    },
    Checked,
    SessionCreated,
    /// The ephemerals actually deleted, in order.
    SessionClosed {
        deleted: Vec<Deletion>,
    },
    Multi(Vec<Applied>),
    Error(i32),
    MultiError(Vec<i32>),
}

#[derive(Clone)]
pub struct DataTree {
    /// ahash: every read looks a path up here, and SipHash showed in profiles.
    nodes: HashMap<Box<str>, Node, ahash::RandomState>,
    ephemerals: HashMap<i64, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    acls: HashSet<AclList, ahash::RandomState>,
    sessions: HashMap<i64, i32>,
    last_zxid: i64,
    extended_types: bool,
    /// Sum over nodes of path length + data length, kept as nodes change
    /// (ZooKeeper's `approximateDataSize`, shown by `mntr`).
    data_size: u64,
}

/// Paths a client may never delete.
pub fn is_special_path(p: &str) -> bool {
    matches!(
        p,
        "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config"
    )
}

impl DataTree {
    /// A fresh tree as ZooKeeper starts one: `/`, `/zookeeper`,
    /// `/zookeeper/quota` and `/zookeeper/config` (read-only, aversion -1).
    pub fn new(extended_types: bool) -> Self {
        let mut tree = DataTree::restored(extended_types, 0);
        let open = tree.intern_acl(&open_acl_unsafe());
        let read_only = tree.intern_acl(&[Acl::new(perms::READ, "world", "anyone")]);
        for (p, acl, aversion) in [
            ("/", open.clone(), 0),
            ("/zookeeper", open.clone(), 0),
            ("/zookeeper/quota", open, 0),
            ("/zookeeper/config", read_only, -1),
        ] {
            let stat = StatPersisted {
                aversion,
                ..Default::default()
            };
            tree.insert_node(p, Some(Box::default()), acl, stat);
        }
        tree
    }

    fn insert_node(&mut self, p: &str, data: Option<Box<[u8]>>, acl: AclList, stat: StatPersisted) {
        if let Some((parent, child)) = path::split(p).filter(|(_, c)| !c.is_empty()) {
            let parent = self
                .nodes
                .get_mut(lookup_key(parent))
                .expect("parent exists when inserting");
            parent.children.insert(child.into());
        }
        self.data_size += node_size(p, data.as_deref());
        let node = Node {
            data,
            acl,
            stat,
            children: BTreeSet::new(),
        };
        self.nodes.insert(p.into(), node);
    }

    pub fn extended_types(&self) -> bool {
        self.extended_types
    }

    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Path and data bytes of every node (ZooKeeper's `approximateDataSize`).
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Ephemeral nodes of live sessions.
    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// Sessions that own ephemeral nodes, with their paths, by session id.
    pub fn ephemerals(&self) -> impl Iterator<Item = (i64, &BTreeSet<String>)> {
        self.ephemerals.iter().map(|(&id, paths)| (id, paths))
    }

    /// Looks a node up; "" names the root, as in ZooKeeper.
    pub fn get(&self, p: &str) -> Option<&Node> {
        self.nodes.get(lookup_key(p))
    }

    /// The Stat clients see for a node.
    pub fn stat_of(&self, node: &Node) -> Stat {
        let num_children = node.children.len() as i32;
        let owner = node.stat.ephemeral_owner;
        Stat {
            czxid: node.stat.czxid,
            mzxid: node.stat.mzxid,
            ctime: node.stat.ctime,
            mtime: node.stat.mtime,
            version: node.stat.version,
            cversion: node
                .stat
                .cversion
                .wrapping_mul(2)
                .wrapping_sub(num_children),
            aversion: node.stat.aversion,
            ephemeral_owner: match kind_of(owner, self.extended_types) {
                EphemeralKind::Normal => owner,
                _ => 0,
            },
            data_length: node.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children,
            pzxid: node.stat.pzxid,
        }
    }

    /// Ephemeral paths owned by a session, in path order.
    pub fn ephemerals_of(&self, session_id: i64) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session_id).into_iter().flatten()
    }

    pub fn containers(&self) -> &BTreeSet<String> {
        &self.containers
    }

    pub fn ttls(&self) -> &BTreeSet<String> {
        &self.ttls
    }

    /// Live sessions and their negotiated timeouts.
    pub fn sessions(&self) -> &HashMap<i64, i32> {
        &self.sessions
    }

    /// Iterates over every (path, node).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (&**p, n))
    }

    /// Number of nodes strictly below `p` (getAllChildrenNumber). For the
    /// root alias "" ZooKeeper's prefix scan ("/") counts the root too.
    pub fn descendant_count(&self, p: &str) -> usize {
        if p == "/" {
            return self.nodes.len() - 1;
        }
        let prefix = format!("{p}/");
        self.nodes.keys().filter(|k| k.starts_with(&prefix)).count()
    }

    fn intern_acl(&mut self, acl: &[Acl]) -> AclList {
        if let Some(existing) = self.acls.get(acl) {
            return existing.clone();
        }
        let list: AclList = acl.into();
        self.acls.insert(list.clone());
        list
    }

    /// Drops an interned list nobody uses any more (the table holds one reference).
    fn release_acl(&mut self, acl: AclList) {
        if Arc::strong_count(&acl) == 2 {
            self.acls.remove(&acl);
        }
    }

    /// Applies a transaction. Panics if the txn does not fit the tree: only
    /// validated txns, applied in zxid order, reach here (design invariant 1).
    pub fn apply(&mut self, txn: &Txn) -> Applied {
        assert!(
            txn.zxid > self.last_zxid,
            "txn zxid {:#x} not after last applied {:#x}",
            txn.zxid,
            self.last_zxid
        );
        self.last_zxid = txn.zxid;
        self.apply_op(txn, &txn.op)
    }

    fn apply_op(&mut self, txn: &Txn, op: &TxnOp) -> Applied {
        match op {
            TxnOp::CreateSession { timeout } => {
                self.sessions.insert(txn.session_id, *timeout);
                Applied::SessionCreated
            }
            TxnOp::CloseSession { ephemerals } => {
                let mut deleted = Vec::new();
                let owned: Vec<String> = self.ephemerals_of(txn.session_id).cloned().collect();
                for p in ephemerals.iter().chain(owned.iter()) {
                    if self.get(p).is_some() {
                        deleted.push(self.delete(p, txn.zxid));
                    }
                }
                self.ephemerals.remove(&txn.session_id);
                self.sessions.remove(&txn.session_id);
                Applied::SessionClosed { deleted }
            }
            TxnOp::Create(create) => self.create(txn, create),
            TxnOp::Delete { path } => Applied::Deleted(self.delete(path, txn.zxid)),
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                let node = self.node_mut(path);
                let before = node_size(path, node.data.as_deref());
                node.data = data.as_deref().map(Into::into);
                self.data_size = self.data_size - before + node_size(path, data.as_deref());
                let node = self.node_mut(path);
                node.stat.mtime = txn.time;
                node.stat.mzxid = txn.zxid;
                node.stat.version = *version;
                let node = self.node(path);
                Applied::DataSet {
                    path: path.clone(),
                    stat: self.stat_of(node),
                    acl: node.acl.clone(),
                }
            }
            TxnOp::SetAcl { path, acl, version } => {
                let acl = self.intern_acl(acl);
                let node = self.node_mut(path);
                node.stat.aversion = *version;
                let old = std::mem::replace(&mut node.acl, acl);
                self.release_acl(old);
                Applied::AclSet {
                    stat: self.stat_of(self.node(path)),
                }
            }
            TxnOp::Check { .. } => Applied::Checked,
            TxnOp::Multi(ops) => {
                Applied::Multi(ops.iter().map(|op| self.apply_op(txn, op)).collect())
            }
            TxnOp::Error(code) => Applied::Error(*code),
            TxnOp::MultiError(codes) => Applied::MultiError(codes.clone()),
        }
    }

    fn node(&self, p: &str) -> &Node {
        self.get(p)
            .unwrap_or_else(|| panic!("txn names missing node {p}"))
    }

    fn node_mut(&mut self, p: &str) -> &mut Node {
        self.nodes
            .get_mut(lookup_key(p))
            .unwrap_or_else(|| panic!("txn names missing node {p}"))
    }

    fn create(&mut self, txn: &Txn, create: &CreateTxn) -> Applied {
        let owner = match create.kind {
            CreateKind::Plain { ephemeral: true } => txn.session_id,
            CreateKind::Plain { ephemeral: false } => 0,
            CreateKind::Container => CONTAINER_OWNER,
            CreateKind::Ttl(ttl) => crate::ephemeral::ttl_owner(ttl).expect("validated ttl"),
        };
        let (parent_path, _) = path::split(&create.path).expect("validated path");
        let parent = self.node_mut(parent_path);
        let parent_acl = parent.acl.clone();
        // Guarded as ZooKeeper does, so replaying an older create never lowers it.
        if create.parent_cversion > parent.stat.cversion {
            parent.stat.cversion = create.parent_cversion;
            parent.stat.pzxid = txn.zxid;
        }
        let acl = self.intern_acl(&create.acl);
        let node_acl = acl.clone();
        let stat = StatPersisted::created(txn.zxid, txn.time, owner);
        assert!(
            self.get(&create.path).is_none(),
            "create of existing node {}",
            create.path
        );
        self.insert_node(
            &create.path,
            create.data.as_deref().map(Into::into),
            acl,
            stat,
        );
        match kind_of(owner, self.extended_types) {
            EphemeralKind::Container => {
                self.containers.insert(create.path.clone());
            }
            EphemeralKind::Ttl(_) => {
                self.ttls.insert(create.path.clone());
            }
            EphemeralKind::Normal => {
                self.ephemerals
                    .entry(owner)
                    .or_default()
                    .insert(create.path.clone());
            }
            EphemeralKind::Void => {}
        }
        Applied::Created {
            path: create.path.clone(),
            stat: self.stat_of(self.node(&create.path)),
            kind: create.kind,
            acl: node_acl,
            parent_acl,
        }
    }

    fn delete(&mut self, p: &str, zxid: i64) -> Deletion {
        let (parent_path, child) = path::split(p).expect("validated path");
        let parent = self.node_mut(parent_path);
        let parent_acl = parent.acl.clone();
        parent.children.remove(child);
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let node = self
            .nodes
            .remove(lookup_key(p))
            .unwrap_or_else(|| panic!("delete of missing node {p}"));
        assert!(node.children.is_empty(), "delete of non-empty node {p}");
        self.data_size -= node_size(p, node.data.as_deref());
        let acl = node.acl.clone();
        self.release_acl(node.acl);
        let owner = node.stat.ephemeral_owner;
        match kind_of(owner, self.extended_types) {
            EphemeralKind::Container => {
                self.containers.remove(p);
            }
            EphemeralKind::Ttl(_) => {
                self.ttls.remove(p);
            }
            EphemeralKind::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    set.remove(p);
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            EphemeralKind::Void => {}
        }
        Deletion {
            path: p.to_owned(),
            acl,
            parent_acl,
        }
    }

    /// An empty tree, without even `/`, to be filled by [`DataTree::restore_node`]
    /// (parents first) from a snapshot taken at `last_zxid`.
    pub fn restored(extended_types: bool, last_zxid: i64) -> Self {
        DataTree {
            nodes: HashMap::default(),
            ephemerals: HashMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            acls: HashSet::default(),
            sessions: HashMap::new(),
            last_zxid,
            extended_types,
            data_size: 0,
        }
    }

    /// Makes room for `nodes` more nodes at once (restoring a big tree
    /// otherwise rehashes it many times over).
    pub fn reserve(&mut self, nodes: usize) {
        self.nodes.reserve(nodes);
    }

    /// Adds a node read from a snapshot. Its parent must already be there;
    /// `/` comes first. Errors name what is wrong with the snapshot.
    pub fn restore_node(
        &mut self,
        p: &str,
        data: Option<&[u8]>,
        acl: &[Acl],
        stat: StatPersisted,
    ) -> Result<(), RestoreError> {
        if self.nodes.contains_key(p) {
            return Err(RestoreError::Duplicate(p.to_owned()));
        }
        if p != "/" {
            let parent = path::split(p)
                .filter(|(_, child)| !child.is_empty())
                .map(|(parent, _)| parent);
            match parent {
                Some(parent) if self.get(parent).is_some() => {}
                _ => return Err(RestoreError::Orphan(p.to_owned())),
            }
        } else if !self.nodes.is_empty() {
            return Err(RestoreError::Orphan(p.to_owned()));
        }
        let acl = self.intern_acl(acl);
        self.insert_node(p, data.map(Into::into), acl, stat);
        match kind_of(stat.ephemeral_owner, self.extended_types) {
            EphemeralKind::Container => {
                self.containers.insert(p.to_owned());
            }
            EphemeralKind::Ttl(_) => {
                self.ttls.insert(p.to_owned());
            }
            EphemeralKind::Normal => {
                self.ephemerals
                    .entry(stat.ephemeral_owner)
                    .or_default()
                    .insert(p.to_owned());
            }
            EphemeralKind::Void => {}
        }
        Ok(())
    }

    /// Deletes ephemerals whose session is not in the session table, as
    /// Apache ZooKeeper does when it loads its data (without a txn: parents'
    /// pzxid moves to the last zxid). Returns the sessions and paths removed.
    pub fn remove_orphan_ephemerals(&mut self) -> Vec<(i64, String)> {
        let orphaned: Vec<i64> = self
            .ephemerals
            .keys()
            .filter(|owner| !self.sessions.contains_key(owner))
            .copied()
            .collect();
        let mut removed = Vec::new();
        for owner in orphaned {
            let paths: Vec<String> = self.ephemerals_of(owner).cloned().collect();
            for p in paths {
                self.delete(&p, self.last_zxid);
                removed.push((owner, p));
            }
        }
        removed
    }

    /// Adds a live session read from a snapshot.
    pub fn restore_session(&mut self, id: i64, timeout: i32) {
        self.sessions.insert(id, timeout);
    }

    /// The distinct ACL lists in use (each node's list is one of them).
    pub fn acl_lists(&self) -> impl Iterator<Item = &AclList> {
        self.acls.iter()
    }

    /// Applies a txn logged after a *fuzzy* snapshot began, as Apache
    /// ZooKeeper replays its own: the snapshot may already reflect it, so
    /// ops that no longer fit are skipped instead of asserted, and a create
    /// that finds its node still advances the parent's cversion and pzxid.
    pub fn apply_over_fuzzy(&mut self, txn: &Txn) {
        assert!(txn.zxid > self.last_zxid, "replay goes forward");
        self.last_zxid = txn.zxid;
        self.apply_op_over_fuzzy(txn, &txn.op);
    }

    fn apply_op_over_fuzzy(&mut self, txn: &Txn, op: &TxnOp) {
        let fits = match op {
            TxnOp::Create(create) => match self.get(&create.path) {
                Some(_) => {
                    let (parent, _) = path::split(&create.path).expect("logged path");
                    if let Some(parent) = self.nodes.get_mut(lookup_key(parent)) {
                        if create.parent_cversion > parent.stat.cversion {
                            parent.stat.cversion = create.parent_cversion;
                            parent.stat.pzxid = txn.zxid;
                        }
                    }
                    false
                }
                None => path::split(&create.path).is_some_and(|(p, _)| self.get(p).is_some()),
            },
            TxnOp::Delete { path } => self.get(path).is_some_and(|n| n.children.is_empty()),
            TxnOp::SetData { path, .. } | TxnOp::SetAcl { path, .. } => self.get(path).is_some(),
            TxnOp::Multi(ops) => {
                for op in ops {
                    self.apply_op_over_fuzzy(txn, op);
                }
                false
            }
            TxnOp::CloseSession { ephemerals } => {
                // A listed path may since have become someone else's node.
                let owned = ephemerals
                    .iter()
                    .filter(|p| {
                        self.get(p)
                            .is_some_and(|n| n.stat.ephemeral_owner == txn.session_id)
                    })
                    .cloned()
                    .collect();
                self.apply_op(txn, &TxnOp::CloseSession { ephemerals: owned });
                false
            }
            _ => true,
        };
        if fits {
            self.apply_op(txn, op);
        }
    }

    /// Containers and TTL nodes due for deletion at wall-clock `now` (ms), as
    /// ZooKeeper's container manager selects them: empty containers that once
    /// had a child, and childless TTL nodes unmodified for longer than their TTL.
    pub fn expired_nodes(&self, now: i64) -> Vec<String> {
        let containers = self.containers.iter().filter(|p| {
            self.get(p)
                .is_some_and(|n| n.children.is_empty() && n.stat.cversion > 0)
        });
        let ttls = self.ttls.iter().filter(|p| {
            self.get(p).is_some_and(|n| {
                n.children.is_empty()
                    && matches!(kind_of(n.stat.ephemeral_owner, self.extended_types),
                        EphemeralKind::Ttl(ttl) if ttl != 0 && now - n.stat.mtime > ttl)
            })
        });
        containers.chain(ttls).cloned().collect()
    }
}

/// What a node counts for in the approximate data size, as ZooKeeper counts it.
fn node_size(p: &str, data: Option<&[u8]>) -> u64 {
    (p.len() + data.map_or(0, <[u8]>::len)) as u64
}

fn lookup_key(p: &str) -> &str {
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zoocore_net::consts::perms;

    fn txn(zxid: i64, session_id: i64, op: TxnOp) -> Txn {
        Txn {
            zxid,
            time: zxid,
            session_id,
            cxid: 0,
            op,
        }
    }

    fn create(path: &str, ephemeral: bool, parent_cversion: i32) -> TxnOp {
        TxnOp::Create(CreateTxn {
            path: path.into(),
            data: None,
            acl: vec![Acl::new(perms::ALL, "world", "anyone")],
            kind: CreateKind::Plain { ephemeral },
            parent_cversion,
        })
    }

    #[test]
    fn replay_over_a_fuzzy_snapshot_skips_what_the_snapshot_already_holds() {
        // The "snapshot" already has /a (created at zxid 1) and /a/x, whose
        // later deletion and the session's re-created /e are also replayed.
        let mut tree = DataTree::new(false);
        tree.apply(&txn(1, 0, create("/a", false, 1)));
        tree.apply(&txn(2, 0, create("/a/x", false, 1)));
        tree.apply(&txn(3, 0, create("/e", false, 2)));
        tree.apply(&txn(4, 0, create("/e/child", false, 1)));
        // Create of a node that exists: skipped, but the parent's cversion
        // and pzxid move forward as ZooKeeper's replay does.
        tree.apply_over_fuzzy(&txn(5, 0, create("/a/x", false, 3)));
        let a = tree.get("/a").unwrap();
        assert_eq!((a.stat.cversion, a.stat.pzxid), (3, 5));
        // Ops on nodes that are gone are skipped.
        tree.apply_over_fuzzy(&txn(
            6,
            0,
            TxnOp::Delete {
                path: "/gone".into(),
            },
        ));
        tree.apply_over_fuzzy(&txn(
            7,
            0,
            TxnOp::SetData {
                path: "/gone".into(),
                data: None,
                version: 1,
            },
        ));
        // A session's close lists /e, which is now a persistent node with a
        // child: it stays.
        tree.apply_over_fuzzy(&txn(
            8,
            42,
            TxnOp::CloseSession {
                ephemerals: vec!["/e".into()],
            },
        ));
        assert!(tree.get("/e/child").is_some());
        assert_eq!(tree.last_zxid(), 8);
        // A delete that fits is applied.
        tree.apply_over_fuzzy(&txn(
            9,
            0,
            TxnOp::Delete {
                path: "/a/x".into(),
            },
        ));
        assert!(tree.get("/a/x").is_none());
    }

    #[test]
    fn ephemerals_of_sessions_that_are_gone_are_removed_as_zookeeper_does_at_start() {
        let mut tree = DataTree::new(false);
        tree.apply(&txn(1, 7, TxnOp::CreateSession { timeout: 4000 }));
        tree.apply(&txn(2, 7, create("/live", true, 1)));
        tree.apply(&txn(3, 9, create("/dead", true, 2)));
        tree.apply(&txn(4, 0, create("/kept", false, 3)));
        let removed = tree.remove_orphan_ephemerals();
        assert_eq!(removed, [(9, "/dead".to_owned())]);
        assert!(tree.get("/dead").is_none() && tree.get("/live").is_some());
        let root = tree.get("/").unwrap();
        assert_eq!((root.stat.pzxid, root.stat.cversion), (4, 3));
        assert_eq!(tree.last_zxid(), 4);
    }

    #[test]
    fn approximate_data_size_follows_creates_sets_and_deletes() {
        let recount = |t: &DataTree| -> u64 {
            t.iter()
                .map(|(p, n)| (p.len() + n.data.as_ref().map_or(0, |d| d.len())) as u64)
                .sum()
        };
        let mut t = DataTree::new(false);
        assert_eq!(t.approximate_data_size(), recount(&t));
        t.apply(&txn(1, 1, create("/a", false, 1)));
        t.apply(&txn(
            2,
            1,
            TxnOp::SetData {
                path: "/a".into(),
                data: Some(vec![0; 100]),
                version: 1,
            },
        ));
        assert_eq!(t.approximate_data_size(), recount(&t));
        t.apply(&txn(3, 1, TxnOp::Delete { path: "/a".into() }));
        assert_eq!(t.approximate_data_size(), recount(&t));
    }

    #[test]
    fn restore_refuses_orphans_and_duplicates() {
        let mut tree = DataTree::restored(false, 10);
        let acl = [Acl::new(perms::ALL, "world", "anyone")];
        let stat = StatPersisted::default();
        assert_eq!(
            tree.restore_node("/a", None, &acl, stat),
            Err(RestoreError::Orphan("/a".into()))
        );
        tree.restore_node("/", None, &acl, stat).unwrap();
        tree.restore_node("/a", Some(b"x"), &acl, stat).unwrap();
        assert_eq!(
            tree.restore_node("/a", None, &acl, stat),
            Err(RestoreError::Duplicate("/a".into()))
        );
        assert_eq!(tree.get("/").unwrap().children.len(), 1);
    }
}
