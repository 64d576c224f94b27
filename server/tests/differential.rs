//! The differential test over the wire: the same seeded random operations go
//! to Apache ZooKeeper and to a zoocore server (two shards), both through a
//! real TCP client, and every reply, Stat, ACL and watch event is compared.
//! Defaults: 50 seeds x 250 ops; `ZOOCORE_DIFF_*` variables as documented in
//! `zoocore_testkit::differential`.

use std::path::Path;

use zoocore_testkit::differential::{compare_trees, env_u64, run_seed, Run};
use zoocore_testkit::zoocore::{WireTarget, ZoocoreProcess};

#[test]
fn random_operations_match_apache_zookeeper_over_the_wire() {
    let first = env_u64("ZOOCORE_DIFF_FIRST_SEED", 1);
    let seeds = env_u64("ZOOCORE_DIFF_SEEDS", 50);
    let ops = env_u64("ZOOCORE_DIFF_OPS", 250);
    let mut run = Run::start(86_400_000, |digest, _| {
        let config =
            format!("zoocore.shards=2\nDigestAuthenticationProvider.superDigest={digest}\n");
        WireTarget::new(ZoocoreProcess::start(
            Path::new(env!("CARGO_BIN_EXE_zoocore")),
            &config,
        ))
    });
    let mut checker = run.open(0);
    for seed in first..first + seeds {
        run_seed(&mut run, &mut checker, seed, ops);
    }
    compare_trees(&mut run, 0, &mut checker, "/zookeeper");
    let total = run.ops;
    run.close(0, checker);
    eprintln!("differential over the wire: {seeds} seeds, {total} operations, 0 divergences");
    assert!(total >= seeds * ops, "ran fewer operations than planned");
}
