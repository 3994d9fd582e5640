//! The member's [`Storage`]: the state directory's store.

use crate::member::Storage;
use crate::statedir::{Settings, StateDir};
use drivers::store::Table;
use federation::NodeId;

impl Storage for StateDir {
    fn own(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.store_own(bytes).map_err(|e| format!("{e:#}"))
    }

    fn records(&mut self, records: &[(NodeId, Vec<u8>)]) -> Result<(), String> {
        self.save_records(records).map_err(|e| format!("{e:#}"))
    }

    fn invite(&self, id: &[u8; 16]) -> Result<Option<Vec<u8>>, String> {
        self.store
            .get(Table::Invites, id)
            .map_err(|e| e.to_string())
    }

    fn put_invite(&mut self, id: &[u8; 16], bytes: &[u8]) -> Result<(), String> {
        self.store
            .put(Table::Invites, id, bytes)
            .map_err(|e| e.to_string())
    }

    fn settings(&mut self, settings: &Settings) -> Result<(), String> {
        self.save_settings(settings.clone())
            .map_err(|e| format!("{e:#}"))
    }
}
