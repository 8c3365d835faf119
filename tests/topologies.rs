//! Tests of the topology harness itself, through redis-rs only: a Redis Cluster and a Sentinel
//! group start, route keys, fail over when a primary dies, and clean up. Timings are printed
//! (`cargo test --test topologies -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use common::cluster::{parse_cluster_nodes, slot_map_of, RedisCluster};
use common::sentinel::SentinelGroup;
use common::topology::{Topology, TopologyKind};
use common::TestApp;
use redis::Commands;

/// Far above the ~2 s a failover takes here, so a loaded machine does not make tests flaky.
const FAILOVER_BOUND: Duration = Duration::from_secs(20);

fn var<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn cluster_nodes_and_slot_maps_parse() {
    let text = "a1 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]\n\
                b2 127.0.0.1:7002@17002,host master,fail - 0 0 2 disconnected\n\
                c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
                d4 127.0.0.1:7004@17004 master - 0 0 3 connected 5461 5462-16383\n";
    let view = parse_cluster_nodes(text);
    assert_eq!(view.len(), 4);
    assert_eq!(view[1].port, 7002);
    assert!(view[1].has_flag("fail"));
    assert_eq!(
        slot_map_of(&view),
        vec![(0, 5460, 7001), (5461, 5461, 7004), (5462, 16383, 7004)]
    );
}

#[test]
fn cluster_routes_every_key_and_fails_over_keeping_a_replicated_value() {
    let started = Instant::now();
    let topology = TopologyKind::Cluster.start();
    println!("cluster started in {:?}", started.elapsed());
    let Topology::Cluster(cluster) = topology else {
        unreachable!()
    };
    assert_eq!(cluster.primary_ports().len(), 3);
    assert_eq!(cluster.replica_ports().len(), 3);
    assert_eq!(cluster.seeds().split(',').count(), 6);

    // Keys in many slots, written and read through the cluster client.
    let mut connection = cluster.connection();
    for i in 0..50 {
        let () = connection.set(format!("k{i}"), i).unwrap();
    }
    let values: Vec<i64> = connection
        .mget((0..50).map(|i| format!("k{i}")).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(values, (0..50).collect::<Vec<_>>());
    let owners: std::collections::HashSet<u16> = (0..50)
        .map(|i| cluster.primary_of_key(&format!("k{i}")))
        .collect();
    assert_eq!(
        owners.len(),
        3,
        "50 keys should spread over the 3 primaries"
    );

    // The raw helpers reach the node that holds a key.
    let topology = Topology::Cluster(cluster);
    let vars = topology.cachegate_vars();
    assert_eq!(var(&vars, "REDIS_MODE"), Some("cluster"));
    topology.raw_set("survivor", "\"kept\"");
    assert_eq!(topology.raw_get("survivor").as_deref(), Some("\"kept\""));
    assert!(topology.exists("survivor"));
    assert_eq!(topology.ttl_of("survivor"), -1);
    assert_eq!(topology.raw_get("absent"), None);
    // Keys of several slots through the routed connection.
    let counted: i64 = topology.query(redis::cmd("EXISTS").arg("k1").arg("k2").arg("absent"));
    assert_eq!(counted, 2);
    let Topology::Cluster(mut cluster) = topology else {
        unreachable!()
    };

    // Replicated before the kill, so it must survive the failover.
    let old_primary = cluster.primary_of_key("survivor");
    let acked: i64 = cluster
        .node(old_primary)
        .query(redis::cmd("WAIT").arg(1).arg(5000))
        .unwrap();
    assert_eq!(acked, 1, "the replica did not acknowledge the write");

    cluster.kill_primary(old_primary);
    let failover = cluster.wait_until_failed_over();
    println!("cluster failed over {failover:?} after the kill");
    assert!(failover < FAILOVER_BOUND, "failover took {failover:?}");
    let new_primary = cluster.primary_of_key("survivor");
    assert_ne!(new_primary, old_primary);
    assert!(!cluster.primary_ports().contains(&old_primary));
    let value: Option<String> = cluster.connection().get("survivor").unwrap();
    assert_eq!(value.as_deref(), Some("\"kept\""));
    let () = cluster.connection().set("after", 1).unwrap();

    // The old primary comes back as a replica of the node that took over.
    cluster.restart_node(old_primary);
    cluster.wait_until_failed_over();
    assert!(cluster.replica_ports().contains(&old_primary));
}

#[test]
fn cluster_restarts_whole_on_the_same_ports_and_freezes_a_node() {
    let started = Instant::now();
    let mut cluster = RedisCluster::start();
    println!("cluster started in {:?}", started.elapsed());
    let ports = cluster.ports();
    let slots_before = cluster.slot_map();

    let took = cluster.restart_all();
    println!("whole cluster restarted in {took:?}");
    assert_eq!(cluster.ports(), ports);
    assert_eq!(
        cluster.slot_map(),
        slots_before,
        "the cluster re-forms as it was"
    );
    let mut connection = cluster.connection();
    let () = connection.set("k", "v").unwrap();
    let value: String = connection.get("k").unwrap();
    assert_eq!(value, "v");

    // A frozen node answers nothing; thawed, it answers again.
    let port = cluster.primary_of_key("k");
    cluster.freeze(port);
    let frozen = Instant::now();
    assert!(cluster
        .node(port)
        .query::<String>(&redis::cmd("PING"))
        .is_err());
    assert!(
        frozen.elapsed() < Duration::from_secs(5),
        "a query to a frozen node hung"
    );
    cluster.thaw(port);
    let pong: String = cluster.node(port).query(&redis::cmd("PING")).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(cluster.cli(port, &["PING"]), "PONG");
}

#[test]
fn sentinel_group_fails_over_to_a_primary_that_accepts_writes() {
    let started = Instant::now();
    let topology = TopologyKind::Sentinel.start();
    println!("Sentinel group started in {:?}", started.elapsed());
    let vars = topology.cachegate_vars();
    assert_eq!(var(&vars, "REDIS_MODE"), Some("sentinel"));
    assert_eq!(var(&vars, "REDIS_SENTINEL_MASTER"), Some("cachegate"));
    assert_eq!(
        var(&vars, "REDIS_SENTINELS").map(|s| s.split(',').count()),
        Some(3)
    );
    topology.raw_set("k", "1");
    assert_eq!(topology.raw_get("k").as_deref(), Some("1"));
    let Topology::Sentinel(mut group) = topology else {
        unreachable!()
    };

    let old_primary = group.primary_port();
    assert_eq!(
        group.primary_port_by_sentinel(),
        vec![Some(old_primary); 3],
        "every Sentinel names the same primary"
    );
    let old = group.kill_primary();
    assert_eq!(old, old_primary);
    let (new_primary, took) = group.wait_for_new_primary(old);
    println!("Sentinels named a new primary {took:?} after the kill");
    assert!(took < FAILOVER_BOUND, "failover took {took:?}");
    assert_ne!(new_primary, old);
    let mut connection = group.connection_to_primary();
    let () = connection.set("after", "yes").unwrap();
    let value: String = connection.get("after").unwrap();
    assert_eq!(value, "yes");
}

#[test]
fn sentinel_group_with_passwords_fails_over() {
    let started = Instant::now();
    let topology = Topology::Sentinel(SentinelGroup::start_with_auth(
        Some("data-pw-3x"),
        Some("sentinel-pw-9y"),
    ));
    println!(
        "Sentinel group with passwords started in {:?}",
        started.elapsed()
    );
    let vars = topology.cachegate_vars();
    assert_eq!(var(&vars, "REDIS_PASSWORD"), Some("data-pw-3x"));
    assert_eq!(
        var(&vars, "REDIS_SENTINEL_PASSWORD"),
        Some("sentinel-pw-9y")
    );
    let Topology::Sentinel(mut group) = topology else {
        unreachable!()
    };

    // Both kinds of node refuse a client without the password.
    let sentinel = group.sentinel_ports()[0];
    let unauthenticated = redis::Client::open(format!("redis://127.0.0.1:{sentinel}"))
        .unwrap()
        .get_connection()
        .and_then(|mut c| {
            redis::cmd("SENTINEL")
                .arg("MASTERS")
                .query::<redis::Value>(&mut c)
        });
    assert!(
        unauthenticated.is_err(),
        "a Sentinel answered without its password"
    );
    let primary = group.primary_port();
    let unauthenticated = redis::Client::open(format!("redis://127.0.0.1:{primary}"))
        .unwrap()
        .get_connection()
        .and_then(|mut c| redis::cmd("SET").arg("k").arg("v").query::<()>(&mut c));
    assert!(
        unauthenticated.is_err(),
        "the primary accepted a write without its password"
    );

    let old = group.kill_primary();
    let (new_primary, took) = group.wait_for_new_primary(old);
    println!("with passwords: new primary {took:?} after the kill");
    let () = group.connection_to_primary().set("k", "v").unwrap();
    assert_ne!(new_primary, old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cachegate_starts_on_a_standalone_topology() {
    let topology = TopologyKind::Standalone.start();
    assert_eq!(topology.kind(), TopologyKind::Standalone);
    let app = TestApp::start_on(&topology, &[]).await;
    assert_eq!(app.put("greeting", r#""hello""#).await.status(), 204);
    assert_eq!(topology.raw_get("greeting").as_deref(), Some(r#""hello""#));
    assert!(topology.ttl_of("greeting") > 0);
    let values: Vec<Option<String>> =
        topology.query(redis::cmd("MGET").arg("greeting").arg("none"));
    assert_eq!(values, vec![Some(r#""hello""#.to_string()), None]);
    app.stop().await;
}
