//! The supervised parts of the gateway, as named in logs and in the
//! `component` label of `ringway_panics_total`.

/// A long-lived part of the gateway that [`super`] supervises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// A worker thread's runtime (restarted on the same listeners).
    Worker,
    /// A worker's accept loop on one listener.
    Accept,
    /// A client's TLS handshake.
    TlsHandshake,
    /// One client connection's request loop.
    Connection,
    /// A worker's timer wheel driver.
    Timer,
    /// A worker's sweep of idle pooled upstream connections.
    PoolSweeper,
    /// A worker's hand-off of access-log lines and logger entries.
    LogShipper,
    /// A busy-polling worker's poll loop.
    BusyPoll,
    /// The health-check thread.
    Health,
    /// One instance's active probe loop.
    HealthProbe,
    /// The upstream DNS refresh thread.
    Dns,
    /// The Admin API thread.
    Admin,
    /// One Admin API connection.
    AdminRequest,
    /// The metrics endpoint's thread.
    Metrics,
    /// One metrics scrape connection.
    MetricsRequest,
    /// The access-log writer thread.
    AccessLog,
    /// A logger plugin's sending thread (http-logger, kafka-logger).
    LoggerSink,
    /// The signal-handling thread.
    Signals,
    /// The thread probing Redis deployments that went down.
    RedisProbe,
    /// The thread re-reading the configuration file.
    ConfigSource,
    /// The Status API's thread (`/status`, `/status/ready`).
    Status,
    /// One Status API connection.
    StatusRequest,
}

impl Component {
    /// Every component, in label order.
    pub const ALL: [Component; 22] = [
        Component::Worker,
        Component::Accept,
        Component::TlsHandshake,
        Component::Connection,
        Component::Timer,
        Component::PoolSweeper,
        Component::LogShipper,
        Component::BusyPoll,
        Component::Health,
        Component::HealthProbe,
        Component::Dns,
        Component::Admin,
        Component::AdminRequest,
        Component::Metrics,
        Component::MetricsRequest,
        Component::AccessLog,
        Component::LoggerSink,
        Component::Signals,
        Component::RedisProbe,
        Component::ConfigSource,
        Component::Status,
        Component::StatusRequest,
    ];

    /// The label value.
    pub const fn name(self) -> &'static str {
        match self {
            Component::Worker => "worker",
            Component::Accept => "accept",
            Component::TlsHandshake => "tls_handshake",
            Component::Connection => "connection",
            Component::Timer => "timer",
            Component::PoolSweeper => "pool_sweeper",
            Component::LogShipper => "log_shipper",
            Component::BusyPoll => "busy_poll",
            Component::Health => "health",
            Component::HealthProbe => "health_probe",
            Component::Dns => "dns",
            Component::Admin => "admin",
            Component::AdminRequest => "admin_request",
            Component::Metrics => "metrics",
            Component::MetricsRequest => "metrics_request",
            Component::AccessLog => "access_log",
            Component::LoggerSink => "logger_sink",
            Component::Signals => "signals",
            Component::RedisProbe => "redis_probe",
            Component::ConfigSource => "config_source",
            Component::Status => "status",
            Component::StatusRequest => "status_request",
        }
    }

    /// The component with label `name`.
    pub fn by_name(name: &str) -> Option<Component> {
        Component::ALL.into_iter().find(|c| c.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_each_component_at_its_index() {
        for (i, c) in Component::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "{c:?}");
            assert_eq!(Component::by_name(c.name()), Some(c));
        }
    }
}
