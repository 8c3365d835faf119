//! Standalone mode: links to the one Redis that `REDIS_URL` (or `REDIS_HOST`/`REDIS_PORT`)
//! names.

use std::future::Future;
use std::pin::Pin;

use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo, ProtocolVersion, RedisError};

use super::lanes::{Connect, LossSignal};
use super::link::Link;
use crate::config::RedisConfig;

pub struct StandaloneConnector {
    client: Client,
    address: String,
}

impl StandaloneConnector {
    pub fn new(config: &RedisConfig) -> Result<Self, String> {
        let info = config
            .url
            .expose()
            .into_connection_info()
            .map_err(|e| format!("REDIS_URL is invalid: {}", e.category()))?;
        // RESP3: redis-rs then reports a dropped connection as a push message, so a dead link
        // is replaced before a request is sent on it.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = Client::open(info.set_redis_settings(settings))
            .map_err(|e| format!("REDIS_URL is invalid: {}", e.category()))?;
        Ok(Self {
            client,
            address: format!("{}:{}/{}", config.host, config.port, config.db),
        })
    }
}

impl Connect for StandaloneConnector {
    fn connect(
        &self,
        loss: LossSignal,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
        Box::pin(async move {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(None)
                .set_response_timeout(None)
                .set_push_sender(loss.push_sender());
            let connection = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok(Link::Single(connection))
        })
    }

    fn describe(&self) -> String {
        self.address.clone()
    }
}
