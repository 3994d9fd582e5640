//! A node's state directory: keys, network, settings, its own record and
//! every record it knows, in the durable store. `init` and `join` create
//! one; `agent` loads it.

/// Where a node keeps its state unless `--state` or `CLADNET_STATE` says
/// otherwise (the systemd unit's `StateDirectory=cladnet`).
pub const DEFAULT_STATE: &str = "/var/lib/cladnet";

/// Default MTU of the overlay: 1500 minus IPv6 + UDP + WireGuard overhead
/// (a new network's, and a wg-quick configuration's without `MTU`).
pub const DEFAULT_MTU: u16 = 1420;

use anyhow::{Context, Result};
use drivers::store::{Store, Table};
use federation::member::{Body, MemberRecord};
use federation::{Ledger, Network, NodeId, NodeKey, SignedRecord};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// What the user chose at `init`/`join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Node name.
    pub name: String,
    /// WireGuard UDP address.
    pub listen: SocketAddr,
    /// QUIC UDP address.
    pub control_listen: SocketAddr,
    /// Where this node is reached from outside (`--advertise`).
    #[serde(default)]
    pub advertise: Vec<crate::advertise::Advertise>,
    /// Serve /metrics and the mesh page here (`cladnet set
    /// --metrics-listen`; the agent's flag wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Never relay for others (`cladnet set --no-relay`, or the agent's
    /// `--no-relay`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_relay: bool,
}

/// Everything loaded from a state directory.
pub struct StateDir {
    /// The store (kept open: it locks the directory against a second agent).
    pub store: Store,
    /// The node's ed25519 key (libp2p identity, record signatures).
    pub key: NodeKey,
    /// The node's WireGuard private key.
    pub wg: netstack::PrivateKey,
    /// The authority key, on the node that created the network.
    pub authority: Option<NodeKey>,
    /// The network.
    pub network: Network,
    /// Settings.
    pub settings: Settings,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The agent's local socket inside the state directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join("agent.sock")
}

const NODE_SEED: &[u8] = b"node_seed";
const WG_KEY: &[u8] = b"wg_private";
const AUTHORITY_SEED: &[u8] = b"authority_seed";
const AUTHORITY_ID: &[u8] = b"authority_id";
const SETTINGS: &[u8] = b"settings";
const OWN: &[u8] = b"own_record";

/// Every exported authority key file starts with this.
const AUTHORITY_PREFIX: &str = "cladnet-authority1.";

/// The one line an exported authority key file holds.
fn authority_file_line(key: &NodeKey) -> String {
    format!("{AUTHORITY_PREFIX}{}", federation::hex::encode(&key.seed()))
}

/// The authority key of an exported file (`--authority FILE`), as the hex
/// seed the agent takes; `None` without a file.
pub fn authority_hex(file: Option<&Path>) -> Result<Option<String>> {
    let Some(path) = file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the authority key file {}", path.display()))?;
    text.trim()
        .strip_prefix(AUTHORITY_PREFIX)
        .filter(|hex| federation::hex::decode::<32>(hex).is_some())
        .map(|hex| Some(hex.to_string()))
        .with_context(|| {
            format!(
                "{} is not an authority key file written by `cladnet authority export`",
                path.display()
            )
        })
}

fn seed(bytes: Option<Vec<u8>>, what: &str) -> Result<[u8; 32]> {
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .with_context(|| format!("the state directory lacks a valid {what}: it is damaged; join again with a new --state directory"))
}

impl StateDir {
    /// Writes a new node's identity and settings into a fresh store.
    pub fn create(
        store: Store,
        key: NodeKey,
        wg: netstack::PrivateKey,
        authority: Option<NodeKey>,
        network: Network,
        settings: Settings,
    ) -> Result<StateDir> {
        let mut items = vec![
            (NODE_SEED.to_vec(), key.seed().to_vec()),
            (WG_KEY.to_vec(), wg.0.to_vec()),
            (AUTHORITY_ID.to_vec(), network.authority.0.to_vec()),
            (SETTINGS.to_vec(), serde_json::to_vec(&settings)?),
        ];
        if let Some(a) = &authority {
            items.push((AUTHORITY_SEED.to_vec(), a.seed().to_vec()));
        }
        store.put_many(Table::Meta, &items)?;
        Ok(StateDir {
            store,
            key,
            wg,
            authority,
            network,
            settings,
        })
    }

    /// Loads the state directory `dir`.
    pub fn load(dir: &Path) -> Result<StateDir> {
        let store = Store::open(dir)?;
        let meta = |k: &[u8]| store.get(Table::Meta, k);
        let key = NodeKey::from_seed(&seed(meta(NODE_SEED)?, "node key")?);
        let wg = netstack::PrivateKey(seed(meta(WG_KEY)?, "WireGuard key")?);
        let authority = meta(AUTHORITY_SEED)?
            .map(|s| seed(Some(s), "authority key").map(|s| NodeKey::from_seed(&s)))
            .transpose()?;
        let network = Network::of(NodeId(seed(meta(AUTHORITY_ID)?, "network authority")?));
        let settings: Settings = serde_json::from_slice(
            &meta(SETTINGS)?.context("the state directory lacks its settings: it is damaged")?,
        )
        .context("the state directory's settings are unreadable: it is damaged")?;
        Ok(StateDir {
            store,
            key,
            wg,
            authority,
            network,
            settings,
        })
    }

    /// A ledger filled with every stored record.
    pub fn ledger(&self) -> Result<Ledger> {
        let mut ledger = Ledger::new(self.network);
        let now = now_ms();
        for (_, bytes) in self.store.all(Table::Records)? {
            if let Err(e) = ledger.ingest(&bytes, now) {
                tracing::warn!("a stored record is no longer valid: {e}");
            }
        }
        Ok(ledger)
    }

    /// This node's latest record and its version.
    pub fn own(&self) -> Result<(MemberRecord, u64)> {
        let bytes = self
            .store
            .get(Table::Meta, OWN)?
            .context("the state directory lacks this node's record: it is damaged")?;
        let rec = SignedRecord::decode(&bytes).context("this node's stored record is damaged")?;
        match Body::parse(&rec.body) {
            Ok(Body::Member(m)) => Ok((m, rec.version)),
            _ => anyhow::bail!("this node's stored record is damaged"),
        }
    }

    /// Signs `record` as `version`, stores it durably (own record and the
    /// records table, in one transaction) and returns the encoded record
    /// to publish.
    pub fn save_own(&self, record: &MemberRecord, version: u64) -> Result<Vec<u8>> {
        let bytes = self
            .key
            .sign(version, Body::Member(record.clone()).to_bytes())
            .encode();
        self.store_own(&bytes)?;
        Ok(bytes)
    }

    /// Stores this node's signed record `bytes` durably: the own record
    /// and its copy in the records table, in one transaction (a crash
    /// leaves both old or both new).
    pub fn store_own(&self, bytes: &[u8]) -> Result<()> {
        self.store.put_across(&[
            (Table::Meta, OWN, bytes),
            (Table::Records, &self.key.id().0, bytes),
        ])?;
        Ok(())
    }

    /// Moves the authority key out of the state directory into a new file
    /// `out` (mode 0600, one line): the file is written and synced before
    /// the key leaves the store, so a crash between the two loses nothing.
    /// This node keeps admitting through its own certificate.
    pub fn export_authority(&mut self, out: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = self.authority.as_ref().context(
            "this state directory holds no authority key (it was exported, or this node joined an existing network)",
        )?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| {
                format!(
                    "cannot create {}: give a path that does not exist yet",
                    out.display()
                )
            })?;
        writeln!(file, "{}", authority_file_line(key))?;
        file.sync_all()?;
        self.store.remove(Table::Meta, AUTHORITY_SEED)?;
        self.authority = None;
        Ok(())
    }

    /// Replaces the stored settings.
    pub fn save_settings(&mut self, settings: Settings) -> Result<()> {
        self.store
            .put(Table::Meta, SETTINGS, &serde_json::to_vec(&settings)?)?;
        self.settings = settings;
        Ok(())
    }

    /// Stores records received from the network.
    pub fn save_records(&self, records: &[(NodeId, Vec<u8>)]) -> Result<()> {
        let items: Vec<(Vec<u8>, Vec<u8>)> = records
            .iter()
            .map(|(w, b)| (w.0.to_vec(), b.clone()))
            .collect();
        self.store.put_many(Table::Records, &items)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh state directory in a temporary folder (removed on drop).
    struct Temp(PathBuf);
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_own_record_and_its_copy_in_the_records_are_written_in_one_transaction() {
        let dir =
            Temp(std::env::temp_dir().join(format!("cladnet-statedir-{}", std::process::id())));
        let net = federation::fixture::TestNetwork::new(3);
        let member = net.member(1);
        let settings = Settings {
            name: "a".into(),
            listen: "0.0.0.0:51820".parse().unwrap(),
            control_listen: "0.0.0.0:51821".parse().unwrap(),
            advertise: Vec::new(),
            metrics_listen: None,
            no_relay: false,
        };
        let state = StateDir::create(
            Store::create(&dir.0).unwrap(),
            NodeKey::from_seed(&member.key.seed()),
            netstack::PrivateKey::generate(),
            None,
            net.network,
            settings,
        )
        .unwrap();
        let before = state.store.commits();
        let bytes = state.save_own(&member.record, 7).unwrap();
        // One commit: a crash leaves both copies old or both new.
        assert_eq!(state.store.commits() - before, 1);
        assert_eq!(
            state.store.get(Table::Meta, OWN).unwrap(),
            Some(bytes.clone())
        );
        assert_eq!(
            state.store.get(Table::Records, &state.key.id().0).unwrap(),
            Some(bytes)
        );
    }
}
