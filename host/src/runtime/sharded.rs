//! A map split into independently locked shards, so that calls for different events or
//! instances never wait on one lock (the Go plugin server's single lock dominated its profiles).

use parking_lot::Mutex;
use std::collections::HashMap;

const SHARDS: usize = 64;

pub struct ShardedMap<V> {
    shards: Box<[Mutex<HashMap<u64, V>>]>,
}

impl<V: Clone> ShardedMap<V> {
    pub fn new() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, V>> {
        // Ids are sequential: a multiplicative hash spreads neighbours across shards.
        let index = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS;
        &self.shards[index]
    }

    pub fn insert(&self, key: u64, value: V) {
        self.shard(key).lock().insert(key, value);
    }

    pub fn get(&self, key: u64) -> Option<V> {
        self.shard(key).lock().get(&key).cloned()
    }

    pub fn remove(&self, key: u64) -> Option<V> {
        self.shard(key).lock().remove(&key)
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().len()).sum()
    }

    /// Removes every entry for which `drop` is true; returns them.
    pub fn extract_if(&self, mut drop: impl FnMut(&V) -> bool) -> Vec<V> {
        let mut removed = Vec::new();
        for shard in self.shards.iter() {
            shard.lock().retain(|_, value| {
                let gone = drop(value);
                if gone {
                    removed.push(value.clone());
                }
                !gone
            });
        }
        removed
    }

    /// A snapshot of every value.
    pub fn values(&self) -> Vec<V> {
        self.shards
            .iter()
            .flat_map(|shard| shard.lock().values().cloned().collect::<Vec<_>>())
            .collect()
    }
}
