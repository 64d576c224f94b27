//! The audit log's own file across a server's life: `serverStart`, the
//! writes, and `serverStop` once SIGTERM stopped it, every line written
//! before the process exits (`server/tests/kazoo/test_audit.py` compares
//! the lines with ZooKeeper's).

use zoocore_net::client::{Client, ConnectOptions};
use zoocore_net::consts::{perms, CreateMode};
use zoocore_net::records::CreateRequest;
use zoocore_net::{Acl, Request};
use zoocore_testkit::zoocore::ZoocoreProcess;

#[test]
fn sigterm_writes_server_stop_after_every_queued_line() {
    let mut server = ZoocoreProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_zoocore")),
        "audit.enable=true",
    );
    let mut c = Client::connect(server.addr, &ConnectOptions::default()).expect("connect");
    for i in 0..100 {
        let reply = c
            .call(&Request::Create(CreateRequest {
                path: format!("/audited-{i}"),
                data: None,
                acl: vec![Acl::new(perms::ALL, "world", "anyone")],
                flags: CreateMode::Persistent as i32,
            }))
            .expect("create");
        assert_eq!(reply.header.err, 0);
    }
    assert_eq!(server.terminate(), Some(0));
    let text = std::fs::read_to_string(server.dir.join("data/zookeeper_audit.log"))
        .expect("the audit log in dataDir");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 102, "{text}");
    assert!(
        lines[0].ends_with("\toperation=serverStart\tresult=success"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "\toperation=create\tznode=/audited-0\tznode_type=persistent\tresult=success"
        ),
        "{}",
        lines[1]
    );
    assert!(
        lines[101].ends_with("\toperation=serverStop\tresult=invoked"),
        "{}",
        lines[101]
    );
}
