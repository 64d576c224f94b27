//! The data tree: znodes with data, ACL, children and ZooKeeper's persisted
//! stat, plus the indexes of ephemeral, container and TTL nodes.

use std::sync::Arc;

use zoocore_net::{consts::perms, Acl, Stat};

use crate::acl::open_acl_unsafe;
use crate::ephemeral::{kind_of, EphemeralKind, CONTAINER_OWNER};
use crate::path;
use crate::path_key::{PathKey, Probe};
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

/// A set of full paths, in order. Paths are the tree's own keys, shared.
pub type PathSet = imbl::OrdSet<Arc<str>>;

/// Every node by full path, in path order. Persistent (structurally
/// shared): a clone of the tree costs a few reference counts and a change
/// copies only the B-tree nodes on its way, so the sequencer hands one
/// version of the tree to every shard and to the snapshotter instead of each
/// keeping a copy. Ordered rather than hashed because a node's children are
/// then a range of keys (no child sets to store), and because imbl's B-tree
/// took 40-58 bytes per entry against its hash trie's 134 (measured). The
/// price is lookups: five levels of cache misses in a 1M-node tree, where a
/// hash map took one or two (`benches/README.md`).
type NodeMap = imbl::OrdMap<PathKey, Arc<Node>>;

#[derive(Debug, Clone)]
pub struct Node {
    pub data: Option<Box<[u8]>>,
    pub acl: AclList,
    pub stat: StatPersisted,
    child_count: u32,
}

impl Node {
    pub fn child_count(&self) -> usize {
        self.child_count as usize
    }

    pub fn has_children(&self) -> bool {
        self.child_count > 0
    }
}

/// The children of one node, in name order, found in the ordered key space:
/// after `p/`, a key is either a child or a descendant of the child just
/// seen (a parent sorts before everything under it). Children are read in
/// one pass; each run of descendants costs one seek past it.
pub struct Children<'a> {
    nodes: &'a NodeMap,
    /// `p/`, or `/` for the root.
    prefix: String,
    keys: KeyRange<'a>,
}

type KeyRange<'a> =
    imbl::ordmap::RangedIter<'a, PathKey, Arc<Node>, imbl::shared_ptr::DefaultSharedPtr>;

impl<'a> Children<'a> {
    fn keys_after(nodes: &'a NodeMap, from: std::ops::Bound<&str>) -> KeyRange<'a> {
        let from = from.map(Probe::new);
        nodes.range::<_, Probe>((from.as_ref(), std::ops::Bound::Unbounded))
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let (key, _) = self.keys.next()?;
            let key = &**key.path();
            let rest = key.strip_prefix(self.prefix.as_str())?;
            match rest.find('/') {
                None => return Some(rest),
                // Past every key under that child: '0' follows '/'.
                Some(slash) => {
                    let past = format!("{}0", &key[..self.prefix.len() + slash]);
                    let from = std::ops::Bound::Included(past.as_str());
                    self.keys = Children::keys_after(self.nodes, from);
                }
            }
        }
    }
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

/// The tree with its indexes. Every field is persistent, so `clone` is cheap
/// and the clone is a version that later changes do not touch.
#[derive(Clone)]
pub struct DataTree {
    nodes: NodeMap,
    ephemerals: imbl::HashMap<i64, PathSet>,
    containers: PathSet,
    ttls: PathSet,
    /// Each distinct ACL list in use, with how many nodes use it.
    acls: imbl::HashMap<AclList, u32>,
    sessions: imbl::HashMap<i64, i32>,
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
        let open = open_acl_unsafe();
        let read_only = [Acl::new(perms::READ, "world", "anyone")];
        for (p, acl, aversion) in [
            ("/", &open[..], 0),
            ("/zookeeper", &open[..], 0),
            ("/zookeeper/quota", &open[..], 0),
            ("/zookeeper/config", &read_only[..], -1),
        ] {
            let stat = StatPersisted {
                aversion,
                ..Default::default()
            };
            let acl = tree.intern_acl(acl);
            tree.insert_node(p, Some(Box::default()), acl, stat);
        }
        tree
    }

    /// Writes an ensemble's membership into `/zookeeper/config`, as a
    /// ZooKeeper member does when it starts: data version -1 (no client
    /// may set it), mtime `now`. Not a txn: every member writes the same
    /// membership (their configurations must agree) before any txn.
    pub fn set_config(&mut self, data: &[u8], now: i64) {
        let before = self
            .get("/zookeeper/config")
            .and_then(|n| n.data.as_deref())
            .map_or(0, <[u8]>::len);
        let node = self.node_mut("/zookeeper/config");
        node.data = Some(data.into());
        node.stat.version = -1;
        node.stat.mtime = now;
        self.data_size = self.data_size + data.len() as u64 - before as u64;
    }

    /// Adds a node under its existing parent; returns its key.
    fn insert_node(
        &mut self,
        p: &str,
        data: Option<Box<[u8]>>,
        acl: AclList,
        stat: StatPersisted,
    ) -> Arc<str> {
        let key: Arc<str> = p.into();
        if let Some((parent, _)) = path::split(p).filter(|(_, c)| !c.is_empty()) {
            self.node_mut(parent).child_count += 1;
        }
        self.data_size += node_size(p, data.as_deref());
        let node = Node {
            data,
            acl,
            stat,
            child_count: 0,
        };
        self.nodes.insert(PathKey::new(key.clone()), Arc::new(node));
        key
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
        self.ephemerals.values().map(PathSet::len).sum()
    }

    /// Sessions that own ephemeral nodes, with their paths, by session id.
    pub fn ephemerals(&self) -> impl Iterator<Item = (i64, &PathSet)> {
        self.ephemerals.iter().map(|(&id, paths)| (id, paths))
    }

    /// Looks a node up; "" names the root, as in ZooKeeper.
    pub fn get(&self, p: &str) -> Option<&Node> {
        self.nodes
            .get(&Probe::new(lookup_key(p)))
            .map(|node| &**node)
    }

    /// The names of a node's children, in order ("" names the root).
    pub fn child_names(&self, p: &str) -> Children<'_> {
        let p = lookup_key(p);
        let prefix = if p == "/" {
            "/".to_owned()
        } else {
            format!("{p}/")
        };
        Children {
            nodes: &self.nodes,
            keys: Children::keys_after(&self.nodes, std::ops::Bound::Excluded(&prefix)),
            prefix,
        }
    }

    /// The Stat clients see for a node.
    pub fn stat_of(&self, node: &Node) -> Stat {
        let num_children = node.child_count as i32;
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
    pub fn ephemerals_of(&self, session_id: i64) -> impl Iterator<Item = &str> {
        self.ephemerals
            .get(&session_id)
            .into_iter()
            .flatten()
            .map(|p| &**p)
    }

    pub fn containers(&self) -> &PathSet {
        &self.containers
    }

    pub fn ttls(&self) -> &PathSet {
        &self.ttls
    }

    /// Live sessions and their negotiated timeouts.
    pub fn sessions(&self) -> &imbl::HashMap<i64, i32> {
        &self.sessions
    }

    /// Iterates over every (path, node) in path order, so every parent comes
    /// before its children.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.nodes.iter().map(|(p, n)| (&**p.path(), &**n))
    }

    /// Number of nodes strictly below `p` (getAllChildrenNumber). For the
    /// root alias "" ZooKeeper's prefix scan ("/") counts the root too.
    pub fn descendant_count(&self, p: &str) -> usize {
        use std::ops::Bound;
        if p == "/" {
            return self.nodes.len() - 1;
        }
        let prefix = format!("{p}/");
        let from = Probe::new(&prefix);
        self.nodes
            .range::<_, Probe>((Bound::Included(&from), Bound::Unbounded))
            .take_while(|(k, _)| k.path().starts_with(&prefix))
            .count()
    }

    fn intern_acl(&mut self, acl: &[Acl]) -> AclList {
        if let Some((existing, uses)) = self.acls.get_key_value_mut(acl) {
            *uses += 1;
            return existing.clone();
        }
        let list: AclList = acl.into();
        self.acls.insert(list.clone(), 1);
        list
    }

    /// Drops an interned list once no node uses it.
    fn release_acl(&mut self, acl: &AclList) {
        let uses = self
            .acls
            .get_mut(&**acl)
            .expect("a node's ACL list is interned");
        *uses -= 1;
        if *uses == 0 {
            self.acls.remove(&**acl);
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
                let owned: Vec<Arc<str>> = self
                    .ephemerals
                    .get(&txn.session_id)
                    .map(|paths| paths.iter().cloned().collect())
                    .unwrap_or_default();
                let listed = ephemerals.iter().map(String::as_str);
                for p in listed.chain(owned.iter().map(|p| &**p)) {
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
                let slot = self
                    .nodes
                    .get_mut(&Probe::new(lookup_key(path)))
                    .unwrap_or_else(|| panic!("txn names missing node {path}"));
                let before = node_size(path, slot.data.as_deref());
                let stat = StatPersisted {
                    mtime: txn.time,
                    mzxid: txn.zxid,
                    version: *version,
                    ..slot.stat
                };
                let after = node_size(path, data.as_deref());
                let data = data.as_deref().map(Into::into);
                match Arc::get_mut(slot) {
                    Some(node) => {
                        node.data = data;
                        node.stat = stat;
                    }
                    // Shared with an older version: a new node, without
                    // copying the data about to be replaced.
                    None => {
                        *slot = Arc::new(Node {
                            data,
                            acl: slot.acl.clone(),
                            stat,
                            child_count: slot.child_count,
                        })
                    }
                }
                self.data_size = self.data_size - before + after;
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
                self.release_acl(&old);
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

    /// The node to change, copied first if an older version shares it.
    fn node_mut(&mut self, p: &str) -> &mut Node {
        self.existing_mut(p)
            .unwrap_or_else(|| panic!("txn names missing node {p}"))
    }

    fn existing_mut(&mut self, p: &str) -> Option<&mut Node> {
        self.nodes
            .get_mut(&Probe::new(lookup_key(p)))
            .map(Arc::make_mut)
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
        let key = self.insert_node(
            &create.path,
            create.data.as_deref().map(Into::into),
            acl,
            stat,
        );
        self.index_owner(key, owner);
        Applied::Created {
            path: create.path.clone(),
            stat: self.stat_of(self.node(&create.path)),
            kind: create.kind,
            acl: node_acl,
            parent_acl,
        }
    }

    /// Records a new node in the index its owner field puts it in.
    fn index_owner(&mut self, key: Arc<str>, owner: i64) {
        match kind_of(owner, self.extended_types) {
            EphemeralKind::Container => {
                self.containers.insert(key);
            }
            EphemeralKind::Ttl(_) => {
                self.ttls.insert(key);
            }
            EphemeralKind::Normal => {
                self.ephemerals.entry(owner).or_default().insert(key);
            }
            EphemeralKind::Void => {}
        }
    }

    fn delete(&mut self, p: &str, zxid: i64) -> Deletion {
        let (parent_path, _) = path::split(p).expect("validated path");
        let parent = self.node_mut(parent_path);
        let parent_acl = parent.acl.clone();
        parent.child_count -= 1;
        if zxid > parent.stat.pzxid {
            parent.stat.pzxid = zxid;
        }
        let node = self
            .nodes
            .remove(&Probe::new(lookup_key(p)))
            .unwrap_or_else(|| panic!("delete of missing node {p}"));
        assert!(!node.has_children(), "delete of non-empty node {p}");
        self.data_size -= node_size(p, node.data.as_deref());
        self.release_acl(&node.acl);
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
            acl: node.acl.clone(),
            parent_acl,
        }
    }

    /// An empty tree, without even `/`, to be filled by [`DataTree::restore_node`]
    /// (parents first) from a snapshot taken at `last_zxid`.
    pub fn restored(extended_types: bool, last_zxid: i64) -> Self {
        DataTree {
            nodes: NodeMap::default(),
            ephemerals: imbl::HashMap::new(),
            containers: PathSet::new(),
            ttls: PathSet::new(),
            acls: imbl::HashMap::new(),
            sessions: imbl::HashMap::new(),
            last_zxid,
            extended_types,
            data_size: 0,
        }
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
        if self.nodes.contains_key(&Probe::new(p)) {
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
        let key = self.insert_node(p, data.map(Into::into), acl, stat);
        self.index_owner(key, stat.ephemeral_owner);
        Ok(())
    }

    /// Deletes ephemerals whose session is not in the session table, as
    /// Apache ZooKeeper does when it loads its data (without a txn: parents'
    /// pzxid moves to the last zxid). Returns the sessions and paths removed.
    pub fn remove_orphan_ephemerals(&mut self) -> Vec<(i64, String)> {
        let orphaned: Vec<i64> = self
            .ephemerals
            .keys()
            .filter(|owner| !self.sessions.contains_key(*owner))
            .copied()
            .collect();
        let mut removed = Vec::new();
        for owner in orphaned {
            let paths: Vec<String> = self.ephemerals_of(owner).map(String::from).collect();
            for p in paths {
                self.delete(&p, self.last_zxid);
                removed.push((owner, p));
            }
        }
        removed.sort();
        removed
    }

    /// Adds a live session read from a snapshot.
    pub fn restore_session(&mut self, id: i64, timeout: i32) {
        self.sessions.insert(id, timeout);
    }

    /// The distinct ACL lists in use (each node's list is one of them).
    pub fn acl_lists(&self) -> impl Iterator<Item = &AclList> {
        self.acls.keys()
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
                    if let Some(parent) = self.existing_mut(parent) {
                        if create.parent_cversion > parent.stat.cversion {
                            parent.stat.cversion = create.parent_cversion;
                            parent.stat.pzxid = txn.zxid;
                        }
                    }
                    false
                }
                None => path::split(&create.path).is_some_and(|(p, _)| self.get(p).is_some()),
            },
            TxnOp::Delete { path } => self.get(path).is_some_and(|n| !n.has_children()),
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
                .is_some_and(|n| !n.has_children() && n.stat.cversion > 0)
        });
        let ttls = self.ttls.iter().filter(|p| {
            self.get(p).is_some_and(|n| {
                !n.has_children()
                    && matches!(kind_of(n.stat.ephemeral_owner, self.extended_types),
                        EphemeralKind::Ttl(ttl) if ttl != 0 && now - n.stat.mtime > ttl)
            })
        });
        containers.chain(ttls).map(|p| p.to_string()).collect()
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
    fn a_clone_is_a_version_that_later_changes_leave_alone() {
        let mut tree = DataTree::new(false);
        tree.apply(&txn(1, 5, TxnOp::CreateSession { timeout: 4000 }));
        tree.apply(&txn(2, 5, create("/a", false, 1)));
        let version = tree.clone();
        let set = TxnOp::SetData {
            path: "/a".into(),
            data: Some(b"new".to_vec()),
            version: 1,
        };
        tree.apply(&txn(3, 5, set));
        tree.apply(&txn(4, 5, create("/a/e", true, 1)));
        tree.apply(&txn(
            5,
            5,
            TxnOp::Delete {
                path: "/zookeeper/quota".into(),
            },
        ));
        let a = version.get("/a").unwrap();
        assert_eq!((a.data.as_deref(), a.child_count()), (None, 0));
        assert!(version.get("/a/e").is_none() && version.get("/zookeeper/quota").is_some());
        assert_eq!((version.last_zxid(), version.ephemeral_count()), (2, 0));
        let a = tree.get("/a").unwrap();
        assert_eq!(a.data.as_deref(), Some(&b"new"[..]));
        assert_eq!(tree.child_names("/a").collect::<Vec<_>>(), ["e"]);
        assert_eq!(tree.ephemerals_of(5).collect::<Vec<_>>(), ["/a/e"]);
    }

    #[test]
    fn children_are_listed_in_name_order_past_their_descendants() {
        let mut tree = DataTree::new(false);
        // Names that sort around '/' (0x2f): '-' before it, '0' after it.
        let paths = [
            "/a", "/a/x", "/a/x/y", "/a/x/y/z", "/a/x-1", "/a/x0", "/a-b", "/a0",
        ];
        for (i, p) in paths.iter().enumerate() {
            tree.apply(&txn(i as i64 + 1, 0, create(p, false, 1)));
        }
        let names = |p: &str| tree.child_names(p).collect::<Vec<_>>();
        assert_eq!(names("/a"), ["x", "x-1", "x0"]);
        assert_eq!(names("/a/x"), ["y"]);
        assert_eq!(names("/a/x/y/z"), Vec::<&str>::new());
        assert_eq!(names("/"), ["a", "a-b", "a0", "zookeeper"]);
        assert_eq!(names(""), names("/"));
        assert_eq!(tree.descendant_count("/a"), 5);
        assert_eq!(tree.descendant_count("/a/x"), 2);
        let counted: Vec<usize> = paths
            .iter()
            .map(|p| tree.get(p).unwrap().child_count())
            .collect();
        let listed: Vec<usize> = paths.iter().map(|p| tree.child_names(p).count()).collect();
        assert_eq!(counted, listed);
    }

    #[test]
    fn children_match_a_scan_of_every_path_in_a_tree_of_awkward_names() {
        // Every path up to three levels over names that sort just before,
        // at and after the separator.
        let names = ["a", "a!", "a-", "a0", "b"];
        let mut paths = vec![String::new()];
        let mut tree = DataTree::new(false);
        let mut zxid = 0;
        for _ in 0..3 {
            let mut deeper = Vec::new();
            for parent in &paths {
                for name in names {
                    let p = format!("{parent}/{name}");
                    zxid += 1;
                    tree.apply(&txn(zxid, 0, create(&p, false, zxid as i32)));
                    deeper.push(p);
                }
            }
            paths = deeper;
        }
        for (parent, node) in tree.iter() {
            let prefix = if parent == "/" {
                "/".to_owned()
            } else {
                format!("{parent}/")
            };
            let mut expected: Vec<&str> = tree
                .iter()
                .filter_map(|(p, _)| p.strip_prefix(prefix.as_str()))
                .filter(|rest| !rest.is_empty() && !rest.contains('/'))
                .collect();
            expected.sort_unstable();
            let listed: Vec<&str> = tree.child_names(parent).collect();
            assert_eq!(listed, expected, "{parent}");
            assert_eq!(node.child_count(), listed.len(), "{parent}");
        }
    }

    #[test]
    fn an_acl_list_is_kept_while_some_node_uses_it() {
        let mut tree = DataTree::new(false);
        let lists = |t: &DataTree| t.acl_lists().count();
        let before = lists(&tree);
        let digest = vec![Acl::new(perms::ALL, "digest", "u:x")];
        tree.apply(&txn(1, 0, create("/a", false, 1)));
        tree.apply(&txn(2, 0, create("/b", false, 2)));
        for (zxid, path) in [(3, "/a"), (4, "/b")] {
            let op = TxnOp::SetAcl {
                path: path.into(),
                acl: digest.clone(),
                version: 1,
            };
            tree.apply(&txn(zxid, 0, op));
        }
        assert_eq!(lists(&tree), before + 1);
        tree.apply(&txn(5, 0, TxnOp::Delete { path: "/a".into() }));
        assert_eq!(lists(&tree), before + 1, "/b still uses it");
        tree.apply(&txn(6, 0, TxnOp::Delete { path: "/b".into() }));
        assert_eq!(lists(&tree), before);
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
        assert_eq!(tree.get("/").unwrap().child_count(), 1);
    }
}
