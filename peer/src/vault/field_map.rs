//! An item's fields by name, as a vector sorted by name.
//!
//! Why not a `BTreeMap`: an item has a handful of fields, and a map's leaf node takes room for
//! eleven (about 540 bytes for three fields, against 144 here), which made the fields the
//! largest part of a 100k vault's memory. Lookups are a binary search; encoding is a map in
//! name order, the same bytes a `BTreeMap` gives.

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, Serializer};
use std::collections::BTreeMap;

use super::merge::MvReg;

/// A field's register: `None` values mean removed.
pub type FieldReg = MvReg<Option<String>>;

/// Field name → register, sorted by name, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMap(Vec<(String, FieldReg)>);

impl FieldMap {
    /// The register of field `name`.
    pub fn get(&self, name: &str) -> Option<&FieldReg> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| &self.0[i].1)
    }

    /// The register of field `name`, made empty if there was none.
    pub(super) fn get_or_default(&mut self, name: &str) -> &mut FieldReg {
        let i = match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (name.to_owned(), FieldReg::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    /// Every field in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &FieldReg)> + ExactSizeIterator {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Every field name in order.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Every register in name order.
    pub fn values(&self) -> impl Iterator<Item = &FieldReg> {
        self.0.iter().map(|(_, v)| v)
    }

    /// Number of fields (removed ones included: their registers still merge).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the item never had a field.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Index<&str> for FieldMap {
    type Output = FieldReg;

    /// The register of field `name`; panics when there is none (as a map's index does).
    fn index(&self, name: &str) -> &FieldReg {
        self.get(name).unwrap_or_else(|| panic!("no field {name:?}"))
    }
}

impl<'a> IntoIterator for &'a FieldMap {
    type Item = (&'a String, &'a FieldReg);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (String, FieldReg)>, fn(&'a (String, FieldReg)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl IntoIterator for FieldMap {
    type Item = (String, FieldReg);
    type IntoIter = std::vec::IntoIter<(String, FieldReg)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for FieldMap {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for FieldMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a map: sorted and unique whatever the input's order.
        let m = BTreeMap::<String, FieldReg>::deserialize(d)?;
        Ok(Self(m.into_iter().collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stay_sorted_and_unique_and_encode_as_a_map_does() {
        let mut f = FieldMap::default();
        for name in ["user", "pin", "url", "pin", "a"] {
            f.get_or_default(name);
        }
        assert_eq!(f.keys().map(String::as_str).collect::<Vec<_>>(), ["a", "pin", "url", "user"]);
        assert_eq!(f.len(), 4);
        assert!(f.get("url").is_some() && f.get("nope").is_none() && f.get("").is_none());
        let as_map: BTreeMap<String, FieldReg> = f.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(postcard::to_allocvec(&f).unwrap(), postcard::to_allocvec(&as_map).unwrap());
        let back: FieldMap = postcard::from_bytes(&postcard::to_allocvec(&as_map).unwrap()).unwrap();
        assert_eq!(back, f);
        assert_eq!(f.0.capacity(), 4, "room for exactly its fields");
        assert!(FieldMap::default().is_empty() && !f.is_empty());
        assert_eq!(f.values().count(), 4);
        let owned: Vec<String> = f.into_iter().map(|(k, _)| k).collect();
        assert_eq!(owned, ["a", "pin", "url", "user"]);
    }
}
