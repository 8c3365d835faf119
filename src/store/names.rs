//! Names of cachegate's internal Redis keys (tag indexes, lease records).
//!
//! Every internal name starts with a NUL byte and `cg`: no key of the API can (keys hold no
//! control characters), so none collides with one, and listings and pattern deletions skip
//! them by that mark whatever the prefix. A name that belongs to one key (its lease record)
//! carries a hash tag that puts it in that key's hash slot, so one script can touch both on a
//! Redis Cluster.

use std::io::Write;
use std::sync::LazyLock;

use redis::{RedisWrite, ToRedisArgs};

use super::cluster::{hash_slot, SLOTS};

/// The first bytes of every internal name.
pub const INTERNAL_MARK: &[u8] = b"\x00cg";

/// Whether a Redis key is one of cachegate's internal names.
pub fn is_internal(redis_key: &[u8]) -> bool {
    redis_key.starts_with(INTERNAL_MARK)
}

/// An internal name of `kind` for one Redis key, in that key's hash slot:
/// `\0cg{<tag of the slot>}<kind>\0<key>`.
pub fn for_key(kind: &str, redis_key: &[u8]) -> Vec<u8> {
    ForKey { kind, redis_key }.parts().concat()
}

/// `for_key`'s name as a command argument, written straight into the command (no buffer of its
/// own).
pub struct ForKey<'a> {
    pub kind: &'a str,
    pub redis_key: &'a [u8],
}

impl ForKey<'_> {
    fn parts(&self) -> [&[u8]; 7] {
        let tag = SLOT_TAGS[usize::from(hash_slot(self.redis_key))].as_bytes();
        [
            INTERNAL_MARK,
            b"{",
            tag,
            b"}",
            self.kind.as_bytes(),
            b"\0",
            self.redis_key,
        ]
    }
}

impl ToRedisArgs for ForKey<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // A command's buffer is a Vec: writing to it cannot fail.
            let _ = arg.write_all(part);
        }
    }
}

/// An internal name of `kind` for something of a keyspace (a tag index):
/// `\0cg:<kind>\0<keyspace prefix>\0<item>`. Its slot is whatever it hashes to.
pub fn for_keyspace(kind: &str, keyspace_prefix: &str, item: &str) -> Vec<u8> {
    let mut name = Vec::with_capacity(
        INTERNAL_MARK.len() + kind.len() + keyspace_prefix.len() + item.len() + 3,
    );
    name.extend_from_slice(INTERNAL_MARK);
    name.push(b':');
    name.extend_from_slice(kind.as_bytes());
    name.push(0);
    name.extend_from_slice(keyspace_prefix.as_bytes());
    name.push(0);
    name.extend_from_slice(item.as_bytes());
    name
}

/// For every hash slot, a short string whose slot it is: a hash tag that places a name in a
/// chosen slot. Found once by counting in base 36 (about 170,000 CRC16s, a few milliseconds).
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags: Vec<Option<String>> = vec![None; usize::from(SLOTS)];
    let mut missing = usize::from(SLOTS);
    let mut n: u64 = 0;
    while missing > 0 {
        let candidate = base36(n);
        let slot = usize::from(hash_slot(candidate.as_bytes()));
        if tags[slot].is_none() {
            tags[slot] = Some(candidate);
            missing -= 1;
        }
        n += 1;
    }
    tags.into_iter().map(Option::unwrap_or_default).collect()
});

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_a_key_share_its_slot() {
        for key in [
            &b"user:1"[..],
            b"{user:1}:profile",
            b"p{x}:k}",
            b"",
            b"\xc3\xa9{}",
        ] {
            let name = for_key("lease", key);
            assert_eq!(hash_slot(&name), hash_slot(key), "{key:?}");
            assert!(is_internal(&name));
            let written = redis::Cmd::new()
                .arg(ForKey {
                    kind: "lease",
                    redis_key: key,
                })
                .args_iter()
                .filter_map(|arg| match arg {
                    redis::Arg::Simple(bytes) => Some(bytes.to_vec()),
                    _ => None,
                })
                .collect::<Vec<_>>();
            assert_eq!(written, [name], "{key:?}");
        }
    }

    #[test]
    fn every_slot_has_a_tag() {
        assert!(SLOT_TAGS.iter().all(|t| !t.is_empty() && !t.contains('}')));
        assert_eq!(SLOT_TAGS.len(), usize::from(SLOTS));
    }

    #[test]
    fn keyspace_names_are_internal_and_distinct() {
        let a = for_keyspace("tag", "p:", "x");
        let b = for_keyspace("tag", "p:ns:", "x");
        assert!(is_internal(&a) && a != b);
        assert!(!is_internal(b"user:1"));
    }
}
