//! A provider organisation and the services it holds under contract with the council.

use serde::{Deserialize, Serialize};

use super::{Guid, NameKey, Slug};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    pub name: String,
    pub slug: Slug,
    pub org_ref: Option<Guid>,
    pub services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    pub service_ref: Option<Guid>,
    /// DAPL, LWAH, APL, HTLAH or Spot.
    pub contract: String,
}

impl Organisation {
    pub fn new(name: &str, org_ref: Option<Guid>) -> Organisation {
        Organisation { name: name.trim().to_string(), slug: Slug::from_name(name), org_ref, services: Vec::new() }
    }

    /// Adds or refreshes a service, keyed by its name.
    pub fn upsert_service(&mut self, service: Service) {
        let key = NameKey::new(&service.name);
        match self.services.iter_mut().find(|s| NameKey::new(&s.name) == key) {
            Some(s) => *s = service,
            None => self.services.push(service),
        }
    }

    pub fn is_named(&self, name: &str) -> bool {
        NameKey::new(&self.name) == NameKey::new(name) || self.slug.as_str() == name.trim()
    }
}
