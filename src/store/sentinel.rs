//! Sentinel mode: links to the primary that the Sentinels name. redis-rs asks the Sentinels
//! and checks the node's `ROLE`; a link never moves by itself after a failover (redis-rs
//! #1438), so the lanes replace it when it breaks or answers a write with READONLY (a demoted
//! primary), and the next link asks the Sentinels again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, ConnectionAddr, ProtocolVersion, RedisError, TlsMode};

use super::lanes::{Connect, LossSignal};
use super::link::Link;
use crate::config::{NodeAddress, RedisConfig, Secret};

pub struct SentinelConnector {
    client: tokio::sync::Mutex<SentinelClient>,
    master: String,
    sentinels: String,
    /// The primary of the last link made, for log lines.
    last_primary: Mutex<Option<String>>,
}

impl SentinelConnector {
    pub fn new(
        config: &RedisConfig,
        sentinels: &[NodeAddress],
        master: &str,
        sentinel_password: Option<&Secret>,
    ) -> Result<Self, String> {
        let addresses = sentinels.iter().map(|node| address(node, config.tls));
        let mut builder = SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)
            .map_err(|e| format!("REDIS_SENTINELS is invalid: {}", e.category()))?
            .set_client_to_redis_db(config.db)
            .set_client_to_redis_protocol(ProtocolVersion::RESP3);
        if let Some(user) = &config.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &config.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(password) = sentinel_password {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        if config.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        }
        let client = builder
            .build()
            .map_err(|e| format!("the Sentinel settings are invalid: {}", e.category()))?;
        Ok(Self {
            client: tokio::sync::Mutex::new(client),
            master: master.to_string(),
            sentinels: sentinels
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            last_primary: Mutex::new(None),
        })
    }
}

fn address(node: &NodeAddress, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: node.host.clone(),
            port: node.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(node.host.clone(), node.port)
    }
}

impl Connect for SentinelConnector {
    fn connect(
        &self,
        loss: LossSignal,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
        Box::pin(async move {
            let primary = self.client.lock().await.async_get_client().await?;
            if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
                primary.get_connection_info().addr()
            {
                *self.last_primary.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("{host}:{port}"));
            }
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(None)
                .set_response_timeout(None)
                .set_push_sender(loss.push_sender());
            let connection = primary
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok(Link::Single(connection))
        })
    }

    fn describe(&self) -> String {
        let primary = self
            .last_primary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match primary {
            Some(primary) => format!(
                "{primary} (master '{}' of Sentinels {})",
                self.master, self.sentinels
            ),
            None => format!("master '{}' of Sentinels {}", self.master, self.sentinels),
        }
    }
}
