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

    /// Why `name` cannot be another organisation's: it would get this one's folder (and keys)
    /// although it is not this one's name, differing in more than case, spaces and dashes
    /// ("A&B Care" and "A B Care", "Pearl Carers, Ltd." and "Pearl Carers Ltd"). `None` when it is
    /// this organisation's name or another folder's.
    pub fn folder_clash(&self, name: &str) -> Option<String> {
        (Slug::from_name(name) == self.slug && !self.is_named(name)).then(|| {
            format!(
                "'{}' would share the folder {} with the organisation '{}': names that differ only in punctuation or accents are one organisation here; write '{}' for that organisation, or a name that differs in its letters or digits for another",
                name.trim(), self.slug, self.name, self.name
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_would_share_another_organisations_folder_is_a_folder_clash() {
        let pearl = Organisation::new("Pearl Carers Ltd", None);
        for same in ["Pearl Carers Ltd", "PEARL  carers ltd", "pearl-carers-ltd"] {
            assert_eq!(pearl.folder_clash(same), None, "{same}");
        }
        assert_eq!(pearl.folder_clash("Pearl Home Care Ltd"), None);
        for clash in ["Pearl Carers, Ltd.", "Pearl Carers (Ltd)", "Pearl & Carers Ltd"] {
            let said = pearl.folder_clash(clash).unwrap_or_else(|| panic!("{clash}"));
            assert!(said.contains("share the folder pearl-carers-ltd with the organisation 'Pearl Carers Ltd'"), "{said}");
        }
    }

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
