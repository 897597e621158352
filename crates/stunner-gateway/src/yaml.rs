//! Stable YAML output: objects go through `serde_json::Value` first, so keys come out
//! sorted and the same input always prints the same text (golden files depend on it).

use serde::Serialize;

/// Serializes `value` as one YAML document with sorted keys.
pub fn to_string<T: Serialize>(value: &T) -> Result<String, crate::Error> {
    let v = serde_json::to_value(value).map_err(|e| crate::Error::Serialize(e.to_string()))?;
    serde_saphyr::to_string(&v).map_err(|e| crate::Error::Serialize(e.to_string()))
}
