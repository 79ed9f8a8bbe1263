//! Compiled consumers: each consumer's own plugins (merged over a route's
//! after authentication, as APISIX does) and an index from API key to
//! consumer for `key-auth`. Keys come from the consumer's `key-auth` plugin
//! and from its credentials; a key used twice is a configuration error.

use std::sync::Arc;

use ahash::AHashMap;

use crate::config::error::{ConfigError, FieldPath};
use crate::config::resources::{Kind, Resources};
use crate::plugins::key_auth::{constant_time_eq, Credential, NAME as KEY_AUTH};
use crate::plugins::{self, PluginChain, Scope};

#[derive(Debug)]
pub struct Consumer {
    pub username: Arc<str>,
    pub plugins: PluginChain,
    /// Its AI-path plugins, which replace a route's of the same name.
    pub ai: plugins::AiChain,
}

/// The key (kept for a constant-time re-check), its consumer and the id
/// of the credential it came from (none for a consumer's own `key-auth`).
type KeyEntry = (Box<[u8]>, Arc<Consumer>, Option<Arc<str>>);

/// A key found in a consumer's config: the key, where it was set, and its
/// credential's id.
type FoundKey = (Box<[u8]>, FieldPath, Option<Arc<str>>);

#[derive(Debug, Default)]
pub struct Consumers {
    /// API key → (the key again, for the constant-time check; consumer).
    /// `AHashMap` hashes with per-process random keys.
    by_key: AHashMap<Box<[u8]>, KeyEntry>,
    by_name: AHashMap<Arc<str>, Arc<Consumer>>,
}

impl Consumers {
    /// Every consumer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Consumer>> {
        self.by_name.values()
    }

    pub fn compile(
        res: &Resources,
        carry: &mut super::shared::Carry<'_>,
        metadata: &crate::plugins::metadata::PluginMetadata,
    ) -> Result<Consumers, ConfigError> {
        let mut out = Consumers::default();
        let mut key_origin: AHashMap<Box<[u8]>, String> = AHashMap::new();
        for (username, c) in &res.consumers {
            let at = FieldPath::from_origin(res.origin(Kind::Consumer, username));
            let plugins = match &c.plugins {
                Some(p) => {
                    let mut cx = plugins::CompileCx {
                        owner: Arc::from(format!("consumer/{username}")),
                        carry,
                        metadata,
                    };
                    plugins::compile(p, &at.field("plugins"), Scope::Consumer, &mut cx)?
                }
                None => PluginChain::default(),
            };
            let consumer = Arc::new(Consumer {
                username: Arc::from(username.as_str()),
                ai: plugins::AiChain::of_scope(&plugins),
                plugins,
            });
            let mut keys: Vec<FoundKey> = Vec::new();
            if let Some(v) = c.plugins.as_ref().and_then(|p| p.get(KEY_AUTH)) {
                let kat = at.field("plugins").field(KEY_AUTH);
                keys.push((Credential::compile(v, &kat)?.key, kat, None));
            }
            for (id, cred) in res.credentials.get(username).into_iter().flatten() {
                let cat = FieldPath::from_origin(
                    res.origin(Kind::Credential, &format!("{username}/{id}")),
                );
                for (name, v) in &cred.plugins {
                    // An ADC credential (`consumers[0].credentials[1]` in
                    // a file) holds its plugin's config under `config`; an
                    // APISIX one (Admin API, standalone document) under
                    // `plugins.<name>`.
                    let pat = if cat.as_str().contains(".credentials[") {
                        cat.field("config")
                    } else {
                        cat.field("plugins").field(name)
                    };
                    if name != KEY_AUTH {
                        return Err(pat.error(format!(
                            "credential type `{name}` is not supported by ringway (supported: key-auth)"
                        )));
                    }
                    keys.push((
                        Credential::compile(v, &pat)?.key,
                        pat,
                        Some(Arc::from(id.as_str())),
                    ));
                }
            }
            for (key, kat, credential) in keys {
                if let Some(other) = key_origin.get(&key) {
                    return Err(kat
                        .field("key")
                        .error(format!("this key is already used by {other}")));
                }
                key_origin.insert(key.clone(), format!("consumer `{username}`"));
                out.by_key
                    .insert(key.clone(), (key, consumer.clone(), credential));
            }
            out.by_name.insert(consumer.username.clone(), consumer);
        }
        Ok(out)
    }

    /// The consumer owning API key `key`, and the id of the credential
    /// holding it (if it came from one).
    pub fn by_key(&self, key: &[u8]) -> Option<(&Arc<Consumer>, Option<&Arc<str>>)> {
        let (stored, consumer, credential) = self.by_key.get(key)?;
        constant_time_eq(stored, key).then_some((consumer, credential.as_ref()))
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.by_name.get(name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
