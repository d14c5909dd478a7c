//! Turning the config JSON Kong sends into the plugin's config type.

use crate::schema::{normalize, Schema};
use serde::de::DeserializeOwned;

/// Decodes `json` (as Kong sends it, bookkeeping keys and all) into `C`, after applying the
/// schema's defaults. The error names the offending field.
pub fn decode<C: DeserializeOwned + Schema>(json: &str) -> Result<C, String> {
    let mut value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| format!("config is not valid JSON: {error}"))?;
    if !value.is_object() {
        return Err(format!("config must be a JSON object, got {value}"));
    }
    normalize(&C::schema(), &mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let field = error.path().to_string();
        let error = error.into_inner();
        if field == "." {
            format!("invalid config: {error}")
        } else {
            format!("invalid config: field `{field}`: {error}")
        }
    })
}
