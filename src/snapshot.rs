//! Serde helpers for state snapshots: maps whose keys are not strings (window keys, baseline
//! keys) are written as lists of pairs, so a snapshot is plain JSON.

/// A `HashMap`/`BTreeMap` with any key, as a list of `[key, value]` pairs.
pub mod pairs {
    use serde::de::Deserialize;
    use serde::ser::{SerializeSeq, Serializer};
    use serde::{Deserializer, Serialize};

    pub fn serialize<'a, M, K, V, S>(map: &'a M, s: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        let mut seq = s.serialize_seq(None)?;
        for (k, v) in map {
            seq.serialize_element(&(k, v))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let v: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(v.into_iter().collect())
    }
}

/// [`pairs`] for a field that borrows its map (`&HashMap`): the same serialized form.
pub mod pairs_ref {
    use serde::Serialize;
    use serde::ser::Serializer;

    pub fn serialize<'a, M, K, V, S>(map: &&'a M, s: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        super::pairs::serialize(*map, s)
    }
}

/// A `BTreeMap<i64, HashMap<K, V>>` with any inner key, as nested lists of pairs.
pub mod nested_pairs {
    use std::collections::{BTreeMap, HashMap};
    use std::hash::{BuildHasher, Hash};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Maps of maps by an `i64`, the inner ones with any hasher.
    type Nested<K, V, H> = BTreeMap<i64, HashMap<K, V, H>>;

    pub fn serialize<K, V, H, S>(map: &Nested<K, V, H>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize,
        V: Serialize,
        S: Serializer,
    {
        let v: Vec<(i64, Vec<(&K, &V)>)> =
            map.iter().map(|(p, m)| (*p, m.iter().collect())).collect();
        v.serialize(s)
    }

    pub fn deserialize<'de, K, V, H, D>(d: D) -> Result<Nested<K, V, H>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        H: BuildHasher + Default,
        D: Deserializer<'de>,
    {
        let v: Vec<(i64, Vec<(K, V)>)> = Vec::deserialize(d)?;
        Ok(v.into_iter()
            .map(|(p, kv)| (p, kv.into_iter().collect()))
            .collect())
    }
}
