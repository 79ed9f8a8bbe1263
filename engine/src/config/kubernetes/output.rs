//! The resources the objects become, collected in one [`Resources`]: each
//! added with the object it came from (its origin names the object and
//! field, so a plugin config the snapshot compiler refuses is reported as
//! `ApisixRoute/aic/r: spec.http[0].plugins...`), and two objects that
//! would make the same resource refused with both named.

use std::collections::BTreeMap;

use serde_json::Value;

use super::documents::Object;
use crate::config::error::{ConfigError, FieldPath};
use crate::config::resources::{Consumer, Credential, GlobalRule, Kind, Resources, Route, Service};

/// Resources made from objects so far.
#[derive(Debug, Default)]
pub struct Output {
    pub res: Resources,
    /// Which object made each resource, for duplicate errors.
    made_by: BTreeMap<(Kind, String), String>,
}

/// The labels a resource made from `obj` carries: the object's own, and
/// where it came from.
pub fn labels(obj: &Object) -> Option<BTreeMap<String, String>> {
    let mut out: BTreeMap<String, String> = obj
        .labels
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect();
    out.insert("k8s/kind".into(), obj.kind.clone());
    out.insert("k8s/namespace".into(), obj.namespace.clone());
    out.insert("k8s/name".into(), obj.name.clone());
    Some(out)
}

impl Output {
    fn claim(
        &mut self,
        kind: Kind,
        id: &str,
        obj: &Object,
        at: &FieldPath,
    ) -> Result<(), ConfigError> {
        if let Some(first) = self.made_by.get(&(kind, id.to_owned())) {
            return Err(at.error(format!(
                "{} `{id}` is made by {first} too (names come from namespace and name: rename one)",
                kind.collection().trim_end_matches('s')
            )));
        }
        self.made_by.insert((kind, id.to_owned()), obj.id());
        self.res
            .origins
            .insert((kind, id.to_owned()), at.to_string());
        Ok(())
    }

    pub fn service(
        &mut self,
        obj: &Object,
        id: String,
        mut svc: Service,
        at: &FieldPath,
    ) -> Result<(), ConfigError> {
        self.claim(Kind::Service, &id, obj, at)?;
        svc.id = Some(Value::from(id.clone()));
        self.res.services.insert(id, svc);
        Ok(())
    }

    pub fn route(
        &mut self,
        obj: &Object,
        id: String,
        mut route: Route,
        at: &FieldPath,
    ) -> Result<(), ConfigError> {
        self.claim(Kind::Route, &id, obj, at)?;
        route.id = Some(Value::from(id.clone()));
        self.res.routes.insert(id, route);
        Ok(())
    }

    /// A consumer and its credentials (id, credential, origin).
    pub fn consumer(
        &mut self,
        obj: &Object,
        consumer: Consumer,
        credentials: Vec<(String, Credential, FieldPath)>,
        at: &FieldPath,
    ) -> Result<(), ConfigError> {
        let username = consumer.username.clone();
        self.claim(Kind::Consumer, &username, obj, at)?;
        let mut by_id = BTreeMap::new();
        for (id, cred, cat) in credentials {
            if by_id.contains_key(&id) {
                return Err(cat
                    .field("name")
                    .error(format!("duplicate credential `{id}`")));
            }
            self.res.origins.insert(
                (Kind::Credential, format!("{username}/{id}")),
                cat.to_string(),
            );
            by_id.insert(id, cred);
        }
        self.res.credentials.insert(username.clone(), by_id);
        self.res.consumers.insert(username, consumer);
        Ok(())
    }

    pub fn global_rule(
        &mut self,
        obj: &Object,
        id: String,
        mut rule: GlobalRule,
        at: &FieldPath,
    ) -> Result<(), ConfigError> {
        self.claim(Kind::GlobalRule, &id, obj, at)?;
        rule.id = Some(Value::from(id.clone()));
        self.res.global_rules.insert(id, rule);
        Ok(())
    }
}
