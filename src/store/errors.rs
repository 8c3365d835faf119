//! Why a Redis step failed, as the HTTP layer needs to know it, and the mapping from
//! redis-rs errors. Messages carry Redis's own reason and the node's address where that helps
//! an operator, never a URL or a password.

use redis::{ErrorKind, RedisError, ServerErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Redis is unreachable, refused the login or the command, or no connection came in time:
    /// 503. The message says which, in Redis's own words where Redis gave a reason.
    Unavailable(String),
    /// Redis did not answer in time: 504.
    Timeout,
    /// The connection died after a command that changes data was sent, so whether it ran is
    /// unknown: 503, never a guess.
    OutcomeUnknown,
    /// The key holds a Redis type other than a string: 409.
    WrongType,
    /// The keys of one all-or-nothing step lie in several cluster hash slots.
    CrossSlot,
    /// Anything else; logged, never shown to clients: 500.
    Other(String),
}

impl StoreError {
    /// The label of the `cachegate_redis_errors_total` metric; None for a wrong type.
    pub fn metric_kind(&self) -> Option<&'static str> {
        match self {
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown => Some("unavailable"),
            StoreError::Timeout => Some("timeout"),
            StoreError::WrongType | StoreError::CrossSlot => None,
            StoreError::Other(_) => Some("other"),
        }
    }
}

/// Errors after which the connection must be replaced; a timeout is not one of them, since a
/// slow or paused Redis keeps its connections valid.
pub(crate) fn needs_new_connection(err: &RedisError) -> bool {
    !err.is_timeout()
        && (err.is_unrecoverable_error() || err.is_connection_dropped() || err.is_io_error())
}

/// A demoted primary answers writes with READONLY: the connection points at the wrong node.
pub(crate) fn is_readonly(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || err.code() == Some("READONLY")
}

fn is_auth_failure(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Maps a redis-rs error.
pub(crate) fn classify(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        StoreError::Timeout
    } else if err.code() == Some("WRONGTYPE") {
        StoreError::WrongType
    } else if err.code() == Some("CROSSSLOT")
        || err.kind() == ErrorKind::Server(ServerErrorKind::CrossSlot)
    {
        StoreError::CrossSlot
    } else if is_auth_failure(err) {
        StoreError::Unavailable(
            "Redis authentication failed; check REDIS_USERNAME and REDIS_PASSWORD (or REDIS_URL)"
                .into(),
        )
    } else if err.kind() == ErrorKind::ClusterConnectionNotFound {
        // redis-rs has no connection to the node a command is routed to (a dead primary
        // not yet replaced): the cluster is unreachable for this request, not a bug.
        StoreError::Unavailable("Redis Cluster node unreachable (no connection to it)".into())
    } else if err.kind() == ErrorKind::MasterNameNotFoundBySentinel {
        // No Sentinel names a reachable primary: a failover in progress, or a master name
        // the Sentinels do not monitor.
        StoreError::Unavailable(
            "no Sentinel names a reachable primary for REDIS_SENTINEL_MASTER (a failover in progress, or a name they do not monitor)".into(),
        )
    } else if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
        StoreError::Unavailable(format!("Redis is unreachable ({})", io_summary(err)))
    } else if let Some(reason) = server_reason(err) {
        // Redis refused the command: renamed or disabled, out of memory, a transaction
        // aborted, a database index out of range, a cluster without quorum. That is Redis
        // being unusable for this request, not a bug of ours: 503 with Redis's reason.
        StoreError::Unavailable(format!("Redis refused the command: {reason}"))
    } else {
        StoreError::Other(format!(
            "{}{}",
            err.category(),
            err.code().map(|c| format!(" {c}")).unwrap_or_default()
        ))
    }
}

/// Redis's own words for a refusal, without the arguments it echoes (they hold keys).
fn server_reason(err: &RedisError) -> Option<String> {
    let code = err.code()?;
    let detail = err.detail().unwrap_or_default();
    let detail = detail
        .split(", with args beginning with")
        .next()
        .unwrap_or_default()
        .trim();
    let reason = if detail.is_empty() {
        code.to_string()
    } else {
        format!("{code} {detail}")
    };
    Some(reason.chars().take(300).collect())
}

fn io_summary(err: &RedisError) -> String {
    if err.is_connection_refusal() {
        "connection refused".into()
    } else if err.is_connection_dropped() {
        "connection lost".into()
    } else {
        err.category().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_node_without_a_connection_is_unavailable_not_internal() {
        let err = RedisError::from((ErrorKind::ClusterConnectionNotFound, "not found"));
        assert!(matches!(classify(&err), StoreError::Unavailable(_)));
    }

    #[test]
    fn no_primary_named_by_the_sentinels_is_unavailable_not_internal() {
        let err = RedisError::from((ErrorKind::MasterNameNotFoundBySentinel, "not found"));
        assert!(matches!(classify(&err), StoreError::Unavailable(_)));
    }
}
