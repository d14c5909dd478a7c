//! Plugin instances, shared by configuration.
//!
//! Every nginx worker starts its own instance of every plugin entity, so N workers send N
//! identical StartInstance calls. The plugin is constructed once per distinct (plugin, config);
//! each StartInstance still gets its own id because each worker closes its own; the shared
//! instance is dropped when the last id referring to it is closed (and the last event using it
//! has finished).

use crate::{
    loader::LoadedPlugin, runtime::ids::InstanceIds, runtime::sharded::ShardedMap,
    runtime::unix_now,
};
use kong_rust_abi::PluginInstanceBox;
use parking_lot::Mutex;
use std::{collections::HashMap, sync::Arc};

/// A constructed plugin instance.
pub struct Live {
    pub plugin: Arc<LoadedPlugin>,
    pub object: PluginInstanceBox,
    /// The config it was built from, without Kong's bookkeeping keys.
    pub config: serde_json::Value,
}

/// Two configs are the same instance when plugin and canonical config JSON are equal.
type ConfigKey = (String, String);

/// One distinct config's instance, and how many ids refer to it.
struct Slot {
    state: Mutex<SlotState>,
}

enum SlotState {
    /// Being constructed (or construction failed): the first caller holds the lock meanwhile.
    Empty,
    Live {
        instance: Arc<Live>,
        ids: usize,
    },
    /// Its last id was closed; a newcomer must make a new slot.
    Closed,
}

#[derive(Clone)]
struct IdEntry {
    id: i64,
    instance: Arc<Live>,
    slot: Arc<Slot>,
    key: Arc<ConfigKey>,
    started_at: u64,
}

/// A live instance id of the host this one replaces (`serve --upgrade`), to keep serving under
/// the same id.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Adopted {
    pub id: i64,
    pub plugin: String,
    pub config: serde_json::Value,
}

pub struct Instances {
    by_id: ShardedMap<IdEntry>,
    /// Touched only by StartInstance and CloseInstance, never on the per-call path.
    by_config: Mutex<HashMap<Arc<ConfigKey>, Arc<Slot>>>,
    ids: InstanceIds,
    /// Constructions so far, per plugin name: the status report's proof of sharing.
    constructed: Mutex<HashMap<String, u64>>,
}

/// One id's entry in a status report.
pub struct IdStatus {
    pub id: i64,
    pub plugin: String,
    pub started_at: u64,
    pub config: serde_json::Value,
    /// Identifies the shared instance: ids with the same value share one constructed plugin.
    pub instance: usize,
}

impl Instances {
    pub fn new(ids: InstanceIds) -> Self {
        Instances {
            by_id: ShardedMap::new(),
            by_config: Mutex::new(HashMap::new()),
            ids,
            constructed: Mutex::new(HashMap::new()),
        }
    }

    /// StartInstance. Runs the plugin's constructor when this config has no live instance yet:
    /// call it in a loop's coroutine, whose loop the watchdog relieves if it takes long.
    pub fn start(&self, plugin: &Arc<LoadedPlugin>, config_json: &[u8]) -> Result<i64, String> {
        self.start_as(plugin, config_json, None)
    }

    /// Takes over `id` from the host this one replaces (`serve --upgrade`), so Kong's workers
    /// keep using the ids they hold. Runs the constructor like `start`.
    pub fn adopt(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config_json: &[u8],
        id: i64,
    ) -> Result<i64, String> {
        self.start_as(plugin, config_json, Some(id))
    }

    fn start_as(
        &self,
        plugin: &Arc<LoadedPlugin>,
        config_json: &[u8],
        given_id: Option<i64>,
    ) -> Result<i64, String> {
        let config = canonical_config(config_json)?;
        let key = Arc::new((plugin.name.clone(), config.to_string()));
        loop {
            let slot = Arc::clone(
                self.by_config
                    .lock()
                    .entry(Arc::clone(&key))
                    .or_insert_with(|| {
                        Arc::new(Slot {
                            state: Mutex::new(SlotState::Empty),
                        })
                    }),
            );
            let mut state = slot.state.lock();
            let instance = match &mut *state {
                SlotState::Closed => continue,
                SlotState::Live { instance, ids } => {
                    *ids += 1;
                    Arc::clone(instance)
                }
                SlotState::Empty => match plugin.new_instance(&key.1) {
                    Ok(object) => {
                        *self
                            .constructed
                            .lock()
                            .entry(plugin.name.clone())
                            .or_default() += 1;
                        let instance = Arc::new(Live {
                            plugin: Arc::clone(plugin),
                            object,
                            config,
                        });
                        *state = SlotState::Live {
                            instance: Arc::clone(&instance),
                            ids: 1,
                        };
                        instance
                    }
                    Err(error) => {
                        *state = SlotState::Closed;
                        self.forget(&key, &slot);
                        return Err(error);
                    }
                },
            };
            drop(state);
            let id = given_id.unwrap_or_else(|| self.ids.next());
            self.by_id.insert(
                id as u64,
                IdEntry {
                    id,
                    instance,
                    slot,
                    key,
                    started_at: unix_now(),
                },
            );
            return Ok(id);
        }
    }

    /// Live instance ids.
    pub fn count(&self) -> usize {
        self.by_id.len()
    }

    pub fn get(&self, id: i64) -> Option<Arc<Live>> {
        self.by_id.get(id as u64).map(|entry| entry.instance)
    }

    /// CloseInstance; false for an unknown id.
    pub fn close(&self, id: i64) -> bool {
        let Some(entry) = self.by_id.remove(id as u64) else {
            return false;
        };
        let mut state = entry.slot.state.lock();
        if let SlotState::Live { ids, .. } = &mut *state {
            *ids -= 1;
            if *ids == 0 {
                *state = SlotState::Closed;
                drop(state);
                self.forget(&entry.key, &entry.slot);
            }
        }
        true
    }

    fn forget(&self, key: &Arc<ConfigKey>, slot: &Arc<Slot>) {
        let mut by_config = self.by_config.lock();
        if by_config
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, slot))
        {
            by_config.remove(key);
        }
    }

    /// Every live id, in id order.
    pub fn ids(&self) -> Vec<IdStatus> {
        let mut ids: Vec<IdStatus> = self
            .by_id
            .values()
            .into_iter()
            .map(|entry| IdStatus {
                id: entry.id,
                plugin: entry.instance.plugin.name.clone(),
                started_at: entry.started_at,
                config: entry.instance.config.clone(),
                instance: Arc::as_ptr(&entry.instance) as usize,
            })
            .collect();
        ids.sort_by_key(|status| status.id);
        ids
    }

    /// Distinct constructed instances currently live, per plugin.
    pub fn live_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for key in self.by_config.lock().keys() {
            *counts.entry(key.0.clone()).or_default() += 1;
        }
        counts
    }

    pub fn constructed(&self, plugin: &str) -> u64 {
        self.constructed.lock().get(plugin).copied().unwrap_or(0)
    }
}

/// Parses Kong's config JSON and drops Kong's bookkeeping keys (`__seq__`, `__plugin_id`,
/// `__key__`, `__ws_id`, …; protocol.md §7.1, §9), which differ between workers and config
/// generations without changing what the plugin sees. Object keys come out sorted, so equal
/// configs serialize equally whatever order lua-cjson wrote them in.
pub fn canonical_config(json: &[u8]) -> Result<serde_json::Value, String> {
    let mut config: serde_json::Value = serde_json::from_slice(json)
        .map_err(|error| format!("config is not valid JSON: {error}"))?;
    let Some(fields) = config.as_object_mut() else {
        return Err(format!("config must be a JSON object, got {config}"));
    };
    fields.retain(|key, _| !key.starts_with("__"));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::canonical_config;

    #[test]
    fn bookkeeping_keys_and_key_order_do_not_change_the_config() {
        let a = canonical_config(br#"{"message":"hi","__seq__":7,"__key__":"plugins:x","__plugin_id":"a","__ws_id":"w","route_id":"r"}"#).unwrap();
        let b =
            canonical_config(br#"{"route_id":"r","__seq__":9,"message":"hi","__plugin_id":"b"}"#)
                .unwrap();
        assert_eq!(a.to_string(), b.to_string());
        assert_eq!(a.to_string(), r#"{"message":"hi","route_id":"r"}"#);
    }

    #[test]
    fn bad_configs_are_refused_with_a_reason() {
        assert!(canonical_config(b"{nope")
            .unwrap_err()
            .starts_with("config is not valid JSON"));
        assert!(canonical_config(b"[1]")
            .unwrap_err()
            .starts_with("config must be a JSON object"));
    }
}
