//! The component schemas of the generic envelopes. utoipa names `Data<PostView>` `Data_PostView`
//! and inlines `PostView` in it, which client generators turn into `DataPostView` holding a
//! `DataPostViewData`. Here the envelopes get names that read as what they hold
//! (`PostViewEnvelope`, `PostViewList`, `PostViewPage`) and refer to the type they wrap by
//! its own name.

use std::collections::{BTreeMap, HashSet};

use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::{Components, OpenApi, Ref, RefOr};

use super::conventions::operations;

/// utoipa's name prefix for each envelope (`schemas::Data`, `Items`, `Listing`) and the
/// suffix its own name takes instead.
const ENVELOPES: [(&str, &str); 3] = [
    ("Data_", "Envelope"),
    ("Items_", "List"),
    ("Listing_", "Page"),
];

pub(super) fn name(document: &mut OpenApi) {
    let sparse = sparse_listings(document);
    let Some(components) = document.components.as_mut() else {
        return;
    };
    let mut renamed = BTreeMap::new();
    let generated: Vec<String> = components.schemas.keys().cloned().collect();
    for old in generated {
        let Some((inner, suffix)) = ENVELOPES
            .iter()
            .find_map(|(prefix, suffix)| Some((old.strip_prefix(prefix)?, *suffix)))
        else {
            continue;
        };
        let Some(mut envelope) = components.schemas.remove(&old) else {
            continue;
        };
        let inner = inner.to_owned();
        if let Some(wrapped) = wrapped_mut(&mut envelope) {
            let item = if sparse.contains(&old) {
                partial(components, &inner, wrapped)
            } else {
                refer(components, &inner, wrapped)
            };
            if let Some(item) = item {
                *wrapped = item;
            }
        }
        let new = format!("{inner}{suffix}");
        components.schemas.insert(new.clone(), envelope);
        renamed.insert(old, new);
    }
    rename_references(document, &renamed);
}

/// The schema of `data` in an envelope: the value itself, or a list's item.
fn wrapped_mut(envelope: &mut RefOr<Schema>) -> Option<&mut RefOr<Schema>> {
    let RefOr::T(Schema::Object(envelope)) = envelope else {
        return None;
    };
    match envelope.properties.get_mut("data")? {
        RefOr::T(Schema::Array(list)) => match &mut list.items {
            ArrayItems::RefOrSchema(item) => Some(item.as_mut()),
            ArrayItems::False => None,
        },
        data => Some(data),
    }
}

/// A reference to the component `name`, registered from `inline` when utoipa did not: an
/// inline schema that differs from the component of that name stays inline.
fn refer(components: &mut Components, name: &str, inline: &RefOr<Schema>) -> Option<RefOr<Schema>> {
    if let RefOr::Ref(_) = inline {
        return None;
    }
    match components.schemas.get(name) {
        Some(registered) if !same(registered, inline) => return None,
        Some(_) => {}
        None => {
            components.schemas.insert(name.to_owned(), inline.clone());
        }
    }
    Some(RefOr::Ref(Ref::from_schema_name(name)))
}

fn same(a: &RefOr<Schema>, b: &RefOr<Schema>) -> bool {
    matches!((serde_json::to_value(a), serde_json::to_value(b)), (Ok(a), Ok(b)) if a == b)
}

/// A list that takes `fields` answers items with only the named fields and `id`, so its items
/// are `Partial<name>`, which requires nothing but `id`; the full schema would make every
/// answer to `?fields=title` contradict the document.
fn partial(
    components: &mut Components,
    name: &str,
    inline: &RefOr<Schema>,
) -> Option<RefOr<Schema>> {
    let RefOr::T(Schema::Object(item)) = inline else {
        return None;
    };
    let mut item = item.clone();
    item.required = vec!["id".to_owned()];
    item.description = Some(format!(
        "A `{name}` with every field, or with `fields` only those named (and `id`)."
    ));
    let partial = format!("Partial{name}");
    components
        .schemas
        .insert(partial.clone(), RefOr::T(Schema::Object(item)));
    Some(RefOr::Ref(Ref::from_schema_name(partial)))
}

/// The envelope components that operations taking `fields` answer with.
fn sparse_listings(document: &mut OpenApi) -> HashSet<String> {
    let mut listings = HashSet::new();
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            let Some(operation) = operation.as_ref() else {
                continue;
            };
            let takes_fields = operation
                .parameters
                .iter()
                .flatten()
                .any(|p| p.name == "fields" && p.parameter_in == ParameterIn::Query);
            let schema = operation
                .responses
                .responses
                .get("200")
                .and_then(|response| match response {
                    RefOr::T(response) => response.content.get("application/json"),
                    RefOr::Ref(_) => None,
                })
                .and_then(|content| content.schema.as_ref());
            if let (true, Some(RefOr::Ref(listing))) = (takes_fields, schema) {
                if let Some(name) = listing.ref_location.rsplit('/').next() {
                    listings.insert(name.to_owned());
                }
            }
        }
    }
    listings
}

/// Points the operations' bodies at the envelopes' new names.
fn rename_references(document: &mut OpenApi, renamed: &BTreeMap<String, String>) {
    for item in document.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            let Some(operation) = operation.as_mut() else {
                continue;
            };
            for response in operation.responses.responses.values_mut() {
                let RefOr::T(response) = response else {
                    continue;
                };
                for content in response.content.values_mut() {
                    let Some(RefOr::Ref(body)) = content.schema.as_mut() else {
                        continue;
                    };
                    let name = body.ref_location.rsplit('/').next().unwrap_or_default();
                    if let Some(new) = renamed.get(name) {
                        *body = Ref::from_schema_name(new.as_str());
                    }
                }
            }
        }
    }
}

/// Drops component schemas nothing refers to: utoipa registers types no answer names (a
/// wrapped type before [`name`] referred to it, a list's full item once it is `Partial`), and
/// an unused schema only makes readers wonder where it is returned.
pub(super) fn prune_unused(document: &mut OpenApi) {
    fn collect(value: &serde_json::Value, into: &mut HashSet<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(target)) => {
                            if let Some(name) = target.strip_prefix("#/components/schemas/") {
                                into.insert(name.to_owned());
                            }
                        }
                        _ => collect(value, into),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, into)),
            _ => {}
        }
    }
    // Removing a schema can orphan the ones only it referred to, so repeat until none goes.
    loop {
        let Ok(json) = serde_json::to_value(&*document) else {
            return;
        };
        let mut used = HashSet::new();
        collect(&json, &mut used);
        let Some(components) = document.components.as_mut() else {
            return;
        };
        let before = components.schemas.len();
        components.schemas.retain(|name, _| used.contains(name));
        if components.schemas.len() == before {
            return;
        }
    }
}
