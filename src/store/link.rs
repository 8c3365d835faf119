//! A connection to the data: one Redis (standalone, or the primary that Sentinel names), or a
//! whole Redis Cluster. Both are multiplexed and cheap to clone; commands, pipelines and
//! scripts run on either through redis-rs's `ConnectionLike` (single commands through
//! `Link::query`).

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub enum Link {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    /// Runs one command, as `Cmd::query_async` does. On one Redis the connection's own
    /// future is awaited in place: through `ConnectionLike` it is boxed, an allocation per
    /// command.
    pub async fn query<T: FromRedisValue>(&mut self, cmd: &Cmd) -> RedisResult<T> {
        let reply = match self {
            Link::Single(connection) => connection.send_packed_command(cmd).await?,
            Link::Cluster(connection) => connection.req_packed_command(cmd).await?,
        };
        Ok(redis::from_redis_value(reply.extract_error()?)?)
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(connection) => connection.req_packed_command(cmd),
            Link::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Link::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(connection) => connection.get_db(),
            Link::Cluster(connection) => connection.get_db(),
        }
    }
}
