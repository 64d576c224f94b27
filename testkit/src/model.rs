//! The engine driven in-process the way a standalone server drives it:
//! one zxid counter, sessions with identities, watches per session.

use zoocore_engine::acl::Identity;
use zoocore_engine::tree::DataTree;
use zoocore_engine::txn::{Txn, TxnOp};
use zoocore_engine::{
    handle_watch_request, prepare, read, session, watch_for, write_reply, PrepContext, WatchTable,
};
use zoocore_net::records::WatcherEvent;
use zoocore_net::{Request, Response};

pub struct ModelSession {
    pub id: i64,
    /// Watcher identity: unique per session, never reused.
    pub watcher: usize,
    pub identity: Identity,
    pub events: Vec<WatcherEvent>,
}

pub struct Model {
    pub tree: DataTree,
    pub zxid: i64,
    watches: WatchTable<usize>,
    pub sessions: Vec<ModelSession>,
    next_session_id: i64,
    next_watcher: usize,
    super_digest: Option<String>,
}

/// Reply code, body and the header zxid.
pub type ModelReply = (i32, Response, i64);

impl Model {
    pub fn new(super_digest: Option<String>, now: i64) -> Model {
        Model {
            tree: DataTree::new(true),
            zxid: 0,
            watches: WatchTable::default(),
            sessions: Vec::new(),
            next_session_id: session::first_session_id(1, now),
            next_watcher: 0,
            super_digest,
        }
    }

    fn commit(&mut self, session_id: i64, op: TxnOp, time: i64) -> zoocore_engine::Applied {
        let txn = Txn {
            zxid: self.zxid,
            time,
            session_id,
            cxid: 0,
            op,
        };
        let applied = self.tree.apply(&txn);
        let sessions = &self.sessions;
        let mut can_read = |w: usize, acl: &[zoocore_net::Acl]| {
            sessions.iter().any(|s| {
                s.watcher == w
                    && zoocore_engine::acl::check(
                        acl,
                        zoocore_net::consts::perms::READ,
                        &s.identity,
                    )
            })
        };
        for (watcher, event) in self.watches.fire(&applied, &mut can_read) {
            if let Some(s) = self.sessions.iter_mut().find(|s| s.watcher == watcher) {
                s.events.push(event);
            }
        }
        applied
    }

    /// Opens a session; returns its id.
    pub fn open_session(&mut self, timeout: i32, now: i64) -> i64 {
        let id = self.next_session_id;
        self.next_session_id += 1;
        self.zxid += 1;
        self.commit(id, TxnOp::CreateSession { timeout }, now);
        self.sessions.push(ModelSession {
            id,
            watcher: self.next_watcher,
            identity: Identity::from_ip("127.0.0.1"),
            events: Vec::new(),
        });
        self.next_watcher += 1;
        id
    }

    fn index(&self, session_id: i64) -> usize {
        self.sessions
            .iter()
            .position(|s| s.id == session_id)
            .expect("model session exists")
    }

    pub fn take_events(&mut self, session_id: i64) -> Vec<WatcherEvent> {
        let i = self.index(session_id);
        std::mem::take(&mut self.sessions[i].events)
    }

    /// Serves one request of a session, as a standalone server would.
    pub fn request(&mut self, session_id: i64, request: &Request, now: i64) -> ModelReply {
        let i = self.index(session_id);
        if let Request::Auth(auth) = request {
            let super_digest = self.super_digest.clone();
            let code = match self.sessions[i].identity.authenticate(
                &auth.scheme,
                &auth.auth,
                "127.0.0.1",
                super_digest.as_deref(),
            ) {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
            return (code, Response::Empty, 0);
        }
        let watcher = self.sessions[i].watcher;
        if let Some(((err, body), events)) =
            handle_watch_request(&mut self.watches, &self.tree, watcher, request)
        {
            self.sessions[i].events.extend(events);
            return (err, body, self.tree.last_zxid());
        }
        if request.is_write() {
            self.zxid += 1;
            let ctx = PrepContext {
                session_id,
                identity: &self.sessions[i].identity,
                zxid: self.zxid,
                time: now,
            };
            let op = prepare(&self.tree, &ctx, request);
            let applied = self.commit(session_id, op, now);
            let (err, body) = write_reply(request, &applied);
            if matches!(request, Request::CloseSession) {
                self.watches.remove_watcher(watcher);
                let closed = self.sessions.remove(i);
                assert!(closed.events.is_empty() || err == 0);
            }
            return (err, body, self.tree.last_zxid());
        }
        let s = &self.sessions[i];
        let (err, body) = read(&self.tree, session_id, &s.identity, request);
        if let Some((table, p)) = watch_for(request, err) {
            self.watches.add(table, p, watcher);
        }
        (err, body, self.tree.last_zxid())
    }

    /// Deletes the containers and TTL nodes due at `now`, as ZooKeeper's
    /// container manager would; each deletion takes a zxid.
    pub fn expire(&mut self, now: i64) -> Vec<String> {
        let due = self.tree.expired_nodes(now);
        for p in &due {
            self.zxid += 1;
            let op = zoocore_engine::prep::prepare_expiry_delete(&self.tree, self.zxid, p);
            assert!(
                !matches!(op, TxnOp::Error(_)),
                "expiry of {p} failed: {op:?}"
            );
            self.commit(0, op, now);
        }
        due
    }
}
