//! The differential test over the wire: the same seeded random operations go
//! to Apache ZooKeeper and to a zoocore server (two shards), both through a
//! real TCP client, and every reply, Stat, ACL and watch event is compared.
//! Defaults: 50 seeds x 250 ops; `ZOOCORE_DIFF_*` variables as documented in
//! `zoocore_testkit::differential`.

use std::path::Path;

use zoocore_testkit::differential::{run_random, Run};
use zoocore_testkit::zoocore::{WireTarget, ZoocoreProcess};

#[test]
fn random_operations_match_apache_zookeeper_over_the_wire() {
    // Both servers check containers as rarely: a check during the run would
    // delete empty containers on one side only.
    let check_ms = 86_400_000;
    let mut run = Run::start(check_ms, |digest, _| {
        let config = format!(
            "zoocore.shards=2\nDigestAuthenticationProvider.superDigest={digest}\n\
             znode.container.checkIntervalMs={check_ms}\n"
        );
        WireTarget::new(ZoocoreProcess::start(
            Path::new(env!("CARGO_BIN_EXE_zoocore")),
            &config,
        ))
    });
    run_random(&mut run, "differential over the wire");
}
