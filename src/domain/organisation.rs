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
    /// Adds a service or updates the one of that name. A blank ServiceRef or Contract (an extract
    /// row that leaves it out) keeps what another row gave: the commissioned care export shows the
    /// GUID, and a visits file that copies it must be accepted back.
    pub fn upsert_service(&mut self, service: Service) {
        let key = NameKey::new(&service.name);
        match self.services.iter_mut().find(|s| NameKey::new(&s.name) == key) {
            Some(s) => {
                s.name = service.name;
                if service.service_ref.is_some() {
                    s.service_ref = service.service_ref;
                }
                if !service.contract.is_empty() {
                    s.contract = service.contract;
                }
            }
            None => self.services.push(service),
        }
    }

    pub fn is_named(&self, name: &str) -> bool {
        NameKey::new(&self.name) == NameKey::new(name) || self.slug.as_str() == name.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_row_without_its_guid_or_contract_keeps_what_another_row_gave() {
        let guid = crate::domain::parse_guid("8D116ECE-1738-F7D9-3D9C-172411E20B8F");
        let mut o = Organisation::new("Pearl Carers Ltd", None);
        o.upsert_service(Service { name: "Pearl Carers - DAPL Oxford".into(), service_ref: guid.clone(), contract: "DAPL".into() });
        o.upsert_service(Service { name: "pearl carers - dapl oxford".into(), service_ref: None, contract: String::new() });
        assert_eq!(o.services.len(), 1);
        assert_eq!((o.services[0].service_ref.clone(), o.services[0].contract.as_str()), (guid, "DAPL"));
        let other = crate::domain::parse_guid("36F675CC-81E7-4EF5-E8E2-5D940ED90475");
        o.upsert_service(Service { name: "Pearl Carers - DAPL Oxford".into(), service_ref: other.clone(), contract: "LWAH".into() });
        assert_eq!((o.services[0].service_ref.clone(), o.services[0].contract.as_str()), (other, "LWAH"), "a row that gives them changes them");
    }
}
