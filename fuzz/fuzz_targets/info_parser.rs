//! The Redis `INFO` parser on arbitrary text: it must never panic, whatever a server (or
//! something posing as one) sends, and the derived numbers must stay consistent.
#![no_main]

use cachegate::store::info::{parse_info, parse_keyspace_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let db = i64::from(first % 16);
    let stats = parse_info(&text, db);
    assert_eq!(
        stats.memory_usage_ratio.is_none(),
        stats.maxmemory_bytes == 0
    );
    // Null only while Redis has counted no lookup.
    let looked_up = stats.keyspace_hits > 0 || stats.keyspace_misses > 0;
    assert_eq!(
        stats.hit_rate.is_some(),
        looked_up,
        "hit rate {:?}",
        stats.hit_rate
    );
    if let Some(rate) = stats.hit_rate {
        assert!((0.0..=1.0).contains(&rate), "hit rate {rate}");
    }
    let _ = parse_keyspace_line(&text);
});
