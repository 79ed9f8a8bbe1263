//! What the health prober probes, read from the current snapshot: every
//! `ai-proxy-multi` instance with `checks.active`.

use super::{Handler, SnapshotCell};
use crate::health::prober::{Probed, ProbedInstance};
use crate::providers::Api;
use crate::upstream::TlsClients;

impl Probed for SnapshotCell {
    fn generation(&self) -> u64 {
        SnapshotCell::generation(self)
    }

    fn instances(&self) -> Vec<ProbedInstance> {
        let snap = self.load();
        let mut out = Vec::new();
        for route in &snap.routes {
            let Handler::Ai(plugin) = &route.handler else {
                continue;
            };
            for inst in &plugin.instances {
                let Some(check) = &inst.checks else {
                    continue;
                };
                let endpoint = inst
                    .target(Api::Chat)
                    .or_else(|_| inst.target(Api::Embeddings))
                    .ok()
                    .map(|t| (t.endpoint.clone(), t.url.host.clone(), t.url.port));
                out.push(ProbedInstance {
                    name: inst.name.clone(),
                    state: inst.state.clone(),
                    check: check.clone(),
                    endpoint,
                });
            }
        }
        out
    }

    fn tls(&self) -> TlsClients {
        self.load().tls.clone()
    }
}
