//! Parser for WireGuard `wg-quick` configuration files (`cladnet agent --wg-config FILE`).
//!
//! The format is INI-like: exactly one `[Interface]` section and any number of
//! `[Peer]` sections. Section names and keys are case-insensitive, `#` and `;`
//! start comments (full-line or trailing). Keys are 32-byte base64 as printed by
//! `wg genkey`. `Endpoint` hostnames are rejected, never resolved. wg-quick-only
//! keys that do not affect the tunnel (`DNS`, `PostUp`, ...) are accepted and listed
//! in [`WgConfig::ignored_keys`]. Every error names its line and never contains key
//! material. (About 800 lines: one parser with a builder per section and a
//! sentence for every way a line can be wrong; its tests are in `config/tests.rs`.
//! A general INI crate such as rust-ini or configparser could take over the
//! lexing; the checks and the line-numbered, key-hiding errors would stay.)

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
pub use netstack::IpNet;

/// Smallest MTU the IPv4 stack accepts.
const MIN_MTU_V4: u16 = 576;
/// Smallest MTU allowed when an IPv6 address is configured.
const MIN_MTU_V6: u16 = 1280;
/// wg-quick-only `[Interface]` keys that do not affect the tunnel.
const IGNORED_KEYS: [&str; 8] = [
    "DNS",
    "Table",
    "PreUp",
    "PostUp",
    "PreDown",
    "PostDown",
    "SaveConfig",
    "FwMark",
];

/// A parsed wg-quick configuration: our interface and its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgConfig {
    /// The `[Interface]` section.
    pub interface: InterfaceConfig,
    /// The `[Peer]` sections, in file order.
    pub peers: Vec<PeerConfig>,
    /// wg-quick-only keys that were present but ignored (first spelling of each), to warn about.
    pub ignored_keys: Vec<String>,
}

/// The `[Interface]` section: our own key, port, addresses and MTU.
#[derive(Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    /// Our static private key (`PrivateKey`); never printed by `Debug`.
    pub private_key: [u8; 32],
    /// UDP port to listen on (`ListenPort`); `None` lets the system choose.
    pub listen_port: Option<u16>,
    /// Overlay addresses of this interface (`Address`), host bits kept.
    pub addresses: Vec<IpNet>,
    /// Overlay MTU (`MTU`), at least 576, or 1280 if an IPv6 address is configured.
    pub mtu: Option<u16>,
}

/// One `[Peer]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's static public key (`PublicKey`).
    pub public_key: [u8; 32],
    /// Optional symmetric key mixed into the handshake (`PresharedKey`); never printed by `Debug`.
    pub preshared_key: Option<[u8; 32]>,
    /// Where to reach the peer (`Endpoint`), an IP address and port.
    pub endpoint: Option<SocketAddr>,
    /// Networks routed to this peer (`AllowedIPs`), host bits cleared.
    pub allowed_ips: Vec<IpNet>,
    /// Keepalive interval in seconds (`PersistentKeepalive`); `None` when off or 0.
    pub persistent_keepalive: Option<u16>,
}

/// Why a configuration could not be loaded; each message is one sentence with the line and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read WireGuard config {}: {source} (check that the file exists, is readable and is UTF-8)", .path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A `[` line without a closing `]`.
    #[error("line {line}: section header is missing its closing `]`: write [Interface] or [Peer]")]
    BadHeader {
        /// 1-based line number.
        line: usize,
    },
    /// A section other than `[Interface]` or `[Peer]`.
    #[error("line {line}: unknown section {name}: only [Interface] and [Peer] are allowed")]
    UnknownSection {
        /// 1-based line number.
        line: usize,
        /// The section name as written (quoted).
        name: String,
    },
    /// A second `[Interface]` section.
    #[error("line {line}: a second [Interface] section starts here (the first is on line {first_line}): merge them into one")]
    DuplicateInterface {
        /// 1-based line number.
        line: usize,
        /// Line of the first `[Interface]`.
        first_line: usize,
    },
    /// A setting line without `=`.
    #[error("line {line}: {text} has no `=`: write settings as `Key = Value`")]
    MissingEquals {
        /// 1-based line number.
        line: usize,
        /// The first word of the line (quoted, hidden if it looks like a key).
        text: String,
    },
    /// A setting before the first section header.
    #[error(
        "line {line}: {key} appears before any section header: put it under [Interface] or [Peer]"
    )]
    OutsideSection {
        /// 1-based line number.
        line: usize,
        /// The key as written (quoted).
        key: String,
    },
    /// A key that is not recognised in any section.
    #[error("line {line}: unknown key {key} in {section}: check the spelling (valid keys there: {valid})")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The key as written (quoted).
        key: String,
        /// The section it appeared in.
        section: &'static str,
        /// The keys valid in that section.
        valid: &'static str,
    },
    /// A known key in the wrong section.
    #[error(
        "line {line}: {key} belongs in {belongs}, not in {found}: move it to a {belongs} section"
    )]
    WrongSection {
        /// 1-based line number.
        line: usize,
        /// Canonical key name.
        key: &'static str,
        /// The section the key belongs to.
        belongs: &'static str,
        /// The section it appeared in.
        found: &'static str,
    },
    /// A single-valued key set twice in one section.
    #[error("line {line}: {key} is set a second time in this section (first on line {first_line}): keep only one")]
    DuplicateKey {
        /// 1-based line number.
        line: usize,
        /// Canonical key name.
        key: &'static str,
        /// Line of the first occurrence.
        first_line: usize,
    },
    /// No `[Interface]` section at all.
    #[error("the config has no [Interface] section: add one with a PrivateKey generated by `wg genkey` or `cladnet genkey`")]
    MissingInterface,
    /// `[Interface]` without `PrivateKey`.
    #[error("[Interface] (line {line}) has no PrivateKey: add one generated with `wg genkey` or `cladnet genkey`")]
    MissingPrivateKey {
        /// Line of the `[Interface]` header.
        line: usize,
    },
    /// `[Peer]` without `PublicKey`.
    #[error("peer {peer} (line {line}) has no PublicKey: add the peer's key as printed by `wg pubkey` on that peer")]
    MissingPublicKey {
        /// 1-based peer index.
        peer: usize,
        /// Line of the `[Peer]` header.
        line: usize,
    },
    /// Two peers with the same public key.
    #[error("peer {peer} (line {line}) has the same PublicKey as peer {first_peer} (line {first_line}): remove one of the two [Peer] sections")]
    DuplicatePublicKey {
        /// 1-based index of the later peer.
        peer: usize,
        /// Line of its `[Peer]` header.
        line: usize,
        /// 1-based index of the earlier peer.
        first_peer: usize,
        /// Line of the earlier `[Peer]` header.
        first_line: usize,
    },
    /// A key value that is not 32 bytes of base64 (the value is never shown).
    #[error("line {line}: {key} is not a valid key (expected 44 characters of base64, as printed by {tool})")]
    InvalidKey {
        /// 1-based line number.
        line: usize,
        /// Canonical key name.
        key: &'static str,
        /// The command that prints such a key.
        tool: &'static str,
    },
    /// A numeric value that does not parse or is out of range.
    #[error("line {line}: {key} value {value} is not valid: expected {expected}")]
    InvalidNumber {
        /// 1-based line number.
        line: usize,
        /// Canonical key name.
        key: &'static str,
        /// The value as written (quoted).
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// An MTU below what the stack supports.
    #[error(
        "line {line}: MTU {mtu} is below {min}, the minimum {reason}: raise it to at least {min}"
    )]
    MtuTooSmall {
        /// Line of the `MTU` setting.
        line: usize,
        /// The configured MTU.
        mtu: u16,
        /// The required minimum.
        min: u16,
        /// Why this minimum applies.
        reason: &'static str,
    },
    /// An `Address` or `AllowedIPs` entry that is not `IP[/prefix]`.
    #[error("line {line}: {key} entry {entry} {problem}")]
    InvalidNet {
        /// 1-based line number.
        line: usize,
        /// Canonical key name.
        key: &'static str,
        /// The entry as written (quoted).
        entry: String,
        /// What is wrong with it and how to fix it.
        problem: &'static str,
    },
    /// An `Endpoint` given as a hostname.
    #[error("line {line}: Endpoint host {host} is a hostname, which cladnet does not resolve: use the peer's IP address instead, e.g. 203.0.113.5:51820")]
    EndpointHostname {
        /// 1-based line number.
        line: usize,
        /// The hostname (quoted).
        host: String,
    },
    /// An `Endpoint` that is not `IPv4:port` or `[IPv6]:port`.
    #[error("line {line}: Endpoint {value} is not a valid address: write IPv4:port or [IPv6]:port with a port from 1 to 65535, e.g. 203.0.113.5:51820 or [2001:db8::1]:51820")]
    InvalidEndpoint {
        /// 1-based line number.
        line: usize,
        /// The value as written (quoted).
        value: String,
    },
}

/// Parses the text of a wg-quick configuration file.
pub fn parse(text: &str) -> Result<WgConfig, ConfigError> {
    let mut parser = Parser::default();
    for (index, raw) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        parser.line(index + 1, raw)?;
    }
    parser.finish()
}

/// Reads and parses a wg-quick configuration file.
pub fn load(path: &Path) -> Result<WgConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

impl fmt::Debug for InterfaceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterfaceConfig")
            .field("private_key", &"(hidden)")
            .field("listen_port", &self.listen_port)
            .field("addresses", &self.addresses)
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("public_key", &STANDARD.encode(self.public_key))
            .field("preshared_key", &self.preshared_key.map(|_| "(hidden)"))
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .field("persistent_keepalive", &self.persistent_keepalive)
            .finish()
    }
}

/// Longest valid prefix for the address family of `addr`.
fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The two section kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Interface,
    Peer,
}

impl Section {
    fn header(self) -> &'static str {
        match self {
            Section::Interface => "[Interface]",
            Section::Peer => "[Peer]",
        }
    }

    fn valid_keys(self) -> &'static str {
        match self {
            Section::Interface => "PrivateKey, ListenPort, Address, MTU",
            Section::Peer => "PublicKey, PresharedKey, Endpoint, AllowedIPs, PersistentKeepalive",
        }
    }
}

/// The settings that affect the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    PrivateKey,
    ListenPort,
    Address,
    Mtu,
    PublicKey,
    PresharedKey,
    Endpoint,
    AllowedIps,
    PersistentKeepalive,
}

impl Setting {
    const ALL: [Setting; 9] = [
        Setting::PrivateKey,
        Setting::ListenPort,
        Setting::Address,
        Setting::Mtu,
        Setting::PublicKey,
        Setting::PresharedKey,
        Setting::Endpoint,
        Setting::AllowedIps,
        Setting::PersistentKeepalive,
    ];

    fn lookup(raw: &str) -> Option<Setting> {
        Setting::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(raw))
    }

    fn name(self) -> &'static str {
        match self {
            Setting::PrivateKey => "PrivateKey",
            Setting::ListenPort => "ListenPort",
            Setting::Address => "Address",
            Setting::Mtu => "MTU",
            Setting::PublicKey => "PublicKey",
            Setting::PresharedKey => "PresharedKey",
            Setting::Endpoint => "Endpoint",
            Setting::AllowedIps => "AllowedIPs",
            Setting::PersistentKeepalive => "PersistentKeepalive",
        }
    }

    fn section(self) -> Section {
        match self {
            Setting::PrivateKey | Setting::ListenPort | Setting::Address | Setting::Mtu => {
                Section::Interface
            }
            _ => Section::Peer,
        }
    }

    /// The command that prints a valid value for a key-typed setting.
    fn tool(self) -> &'static str {
        match self {
            Setting::PublicKey => "`wg pubkey`",
            Setting::PresharedKey => "`wg genpsk`",
            _ => "`wg genkey`",
        }
    }
}

/// A single-valued setting together with the line it was set on.
type Slot<T> = Option<(usize, T)>;

/// `[Interface]` settings collected so far.
struct InterfaceBuilder {
    line: usize,
    private_key: Slot<[u8; 32]>,
    listen_port: Slot<u16>,
    mtu: Slot<u16>,
    addresses: Vec<IpNet>,
}

/// `[Peer]` settings collected so far.
struct PeerBuilder {
    line: usize,
    index: usize,
    public_key: Slot<[u8; 32]>,
    preshared_key: Slot<[u8; 32]>,
    endpoint: Slot<SocketAddr>,
    keepalive: Slot<Option<u16>>,
    allowed_ips: Vec<IpNet>,
}

/// A section in file order; settings always go to the last one.
enum SectionBuilder {
    Interface(InterfaceBuilder),
    Peer(PeerBuilder),
}

/// Line-by-line parser state.
#[derive(Default)]
struct Parser {
    sections: Vec<SectionBuilder>,
    interface_line: Option<usize>,
    peer_count: usize,
    ignored: Vec<String>,
}

impl Parser {
    fn line(&mut self, line: usize, raw: &str) -> Result<(), ConfigError> {
        let text = raw.find(['#', ';']).map_or(raw, |i| &raw[..i]).trim();
        if text.is_empty() {
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix('[') {
            return self.header(line, rest);
        }
        let first_word = text.split_whitespace().next().unwrap_or(text);
        // `PrivateKey <key>=` lacks its `=` but splits at the key's padding: report the missing `=`.
        let split = text.split_once('=').filter(|(key, _)| {
            key.trim_end() == first_word || Setting::lookup(first_word).is_none()
        });
        let Some((key, value)) = split else {
            return Err(ConfigError::MissingEquals {
                line,
                text: shown(first_word),
            });
        };
        let (key, value) = (key.trim(), value.trim());
        match self.sections.last_mut() {
            None => Err(ConfigError::OutsideSection {
                line,
                key: shown(key),
            }),
            Some(SectionBuilder::Interface(b)) => {
                if IGNORED_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                    if !self.ignored.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                        self.ignored.push(key.to_string());
                    }
                    return Ok(());
                }
                b.apply(line, key, value)
            }
            Some(SectionBuilder::Peer(b)) => b.apply(line, key, value),
        }
    }

    fn header(&mut self, line: usize, rest: &str) -> Result<(), ConfigError> {
        let Some(name) = rest.strip_suffix(']').map(str::trim) else {
            return Err(ConfigError::BadHeader { line });
        };
        if name.eq_ignore_ascii_case("Interface") {
            if let Some(first_line) = self.interface_line {
                return Err(ConfigError::DuplicateInterface { line, first_line });
            }
            self.interface_line = Some(line);
            self.sections
                .push(SectionBuilder::Interface(InterfaceBuilder::new(line)));
        } else if name.eq_ignore_ascii_case("Peer") {
            self.peer_count += 1;
            self.sections.push(SectionBuilder::Peer(PeerBuilder::new(
                line,
                self.peer_count,
            )));
        } else {
            return Err(ConfigError::UnknownSection {
                line,
                name: shown(name),
            });
        }
        Ok(())
    }

    fn finish(self) -> Result<WgConfig, ConfigError> {
        let mut interface = None;
        let mut peers = Vec::with_capacity(self.peer_count);
        let mut seen: HashMap<[u8; 32], (usize, usize)> = HashMap::new();
        for section in self.sections {
            match section {
                SectionBuilder::Interface(b) => interface = Some(b.finish()?),
                SectionBuilder::Peer(b) => {
                    let (peer, line) = (b.index, b.line);
                    let config = b.finish()?;
                    if let Some(&(first_peer, first_line)) = seen.get(&config.public_key) {
                        return Err(ConfigError::DuplicatePublicKey {
                            peer,
                            line,
                            first_peer,
                            first_line,
                        });
                    }
                    seen.insert(config.public_key, (peer, line));
                    peers.push(config);
                }
            }
        }
        Ok(WgConfig {
            interface: interface.ok_or(ConfigError::MissingInterface)?,
            peers,
            ignored_keys: self.ignored,
        })
    }
}

impl InterfaceBuilder {
    fn new(line: usize) -> Self {
        InterfaceBuilder {
            line,
            private_key: None,
            listen_port: None,
            mtu: None,
            addresses: Vec::new(),
        }
    }

    fn apply(&mut self, line: usize, raw_key: &str, value: &str) -> Result<(), ConfigError> {
        let key = known_key(line, raw_key, Section::Interface)?;
        match key {
            Setting::PrivateKey => set_once(
                &mut self.private_key,
                key,
                line,
                parse_key(line, key, value)?,
            ),
            Setting::ListenPort => {
                let port = parse_u16(line, key, value, "a port number from 0 to 65535")?;
                set_once(&mut self.listen_port, key, line, port)
            }
            Setting::Mtu => {
                let mtu = parse_u16(line, key, value, "an MTU from 576 to 65535")?;
                if mtu < MIN_MTU_V4 {
                    return Err(ConfigError::MtuTooSmall {
                        line,
                        mtu,
                        min: MIN_MTU_V4,
                        reason: "for IPv4",
                    });
                }
                set_once(&mut self.mtu, key, line, mtu)
            }
            _ => parse_nets(line, key, value, false, &mut self.addresses),
        }
    }

    fn finish(self) -> Result<InterfaceConfig, ConfigError> {
        let Some((_, private_key)) = self.private_key else {
            return Err(ConfigError::MissingPrivateKey { line: self.line });
        };
        if let Some((line, mtu)) = self.mtu {
            if mtu < MIN_MTU_V6 && self.addresses.iter().any(|a| a.addr.is_ipv6()) {
                return Err(ConfigError::MtuTooSmall {
                    line,
                    mtu,
                    min: MIN_MTU_V6,
                    reason: "for IPv6 (an IPv6 Address is configured)",
                });
            }
        }
        Ok(InterfaceConfig {
            private_key,
            listen_port: self.listen_port.map(|(_, v)| v),
            addresses: self.addresses,
            mtu: self.mtu.map(|(_, v)| v),
        })
    }
}

impl PeerBuilder {
    fn new(line: usize, index: usize) -> Self {
        PeerBuilder {
            line,
            index,
            public_key: None,
            preshared_key: None,
            endpoint: None,
            keepalive: None,
            allowed_ips: Vec::new(),
        }
    }

    fn apply(&mut self, line: usize, raw_key: &str, value: &str) -> Result<(), ConfigError> {
        let key = known_key(line, raw_key, Section::Peer)?;
        match key {
            Setting::PublicKey => set_once(
                &mut self.public_key,
                key,
                line,
                parse_key(line, key, value)?,
            ),
            Setting::PresharedKey => set_once(
                &mut self.preshared_key,
                key,
                line,
                parse_key(line, key, value)?,
            ),
            Setting::Endpoint => {
                set_once(&mut self.endpoint, key, line, parse_endpoint(line, value)?)
            }
            Setting::PersistentKeepalive => {
                let seconds = if value.eq_ignore_ascii_case("off") {
                    None
                } else {
                    let expected = "a number of seconds from 0 to 65535, or `off`";
                    Some(parse_u16(line, key, value, expected)?).filter(|&s| s != 0)
                };
                set_once(&mut self.keepalive, key, line, seconds)
            }
            _ => parse_nets(line, key, value, true, &mut self.allowed_ips),
        }
    }

    fn finish(self) -> Result<PeerConfig, ConfigError> {
        let Some((_, public_key)) = self.public_key else {
            return Err(ConfigError::MissingPublicKey {
                peer: self.index,
                line: self.line,
            });
        };
        Ok(PeerConfig {
            public_key,
            preshared_key: self.preshared_key.map(|(_, v)| v),
            endpoint: self.endpoint.map(|(_, v)| v),
            allowed_ips: self.allowed_ips,
            persistent_keepalive: self.keepalive.and_then(|(_, v)| v),
        })
    }
}

/// Resolves `raw_key` to a key valid in `section`, or explains why it is not.
fn known_key(line: usize, raw_key: &str, section: Section) -> Result<Setting, ConfigError> {
    match Setting::lookup(raw_key) {
        Some(key) if key.section() == section => Ok(key),
        Some(key) => Err(ConfigError::WrongSection {
            line,
            key: key.name(),
            belongs: key.section().header(),
            found: section.header(),
        }),
        None => Err(ConfigError::UnknownKey {
            line,
            key: shown(raw_key),
            section: section.header(),
            valid: section.valid_keys(),
        }),
    }
}

/// Stores a single-valued setting, rejecting a second occurrence.
fn set_once<T>(slot: &mut Slot<T>, key: Setting, line: usize, value: T) -> Result<(), ConfigError> {
    if let Some((first_line, _)) = slot {
        return Err(ConfigError::DuplicateKey {
            line,
            key: key.name(),
            first_line: *first_line,
        });
    }
    *slot = Some((line, value));
    Ok(())
}

/// Decodes a 32-byte base64 key; the error never contains the value.
fn parse_key(line: usize, key: Setting, value: &str) -> Result<[u8; 32], ConfigError> {
    let decoded = Some(value)
        .filter(|v| v.len() == 44)
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok());
    decoded.ok_or(ConfigError::InvalidKey {
        line,
        key: key.name(),
        tool: key.tool(),
    })
}

/// Parses a decimal `u16` (digits only).
fn parse_u16(
    line: usize,
    key: Setting,
    value: &str,
    expected: &'static str,
) -> Result<u16, ConfigError> {
    Some(value)
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ConfigError::InvalidNumber {
            line,
            key: key.name(),
            value: shown(value),
            expected,
        })
}

/// Parses a comma-separated `IP[/prefix]` list into `out`, optionally clearing host bits.
fn parse_nets(
    line: usize,
    key: Setting,
    value: &str,
    clear_host_bits: bool,
    out: &mut Vec<IpNet>,
) -> Result<(), ConfigError> {
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let net = parse_net(entry).map_err(|problem| ConfigError::InvalidNet {
            line,
            key: key.name(),
            entry: shown(entry),
            problem,
        })?;
        out.push(if clear_host_bits { net.masked() } else { net });
    }
    Ok(())
}

/// Parses `IP[/prefix]`; a missing prefix means a single host.
fn parse_net(entry: &str) -> Result<IpNet, &'static str> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix.trim())),
        None => (entry, None),
    };
    let addr: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| "is not an IP address: write it like 10.0.0.1/24 or fd00::1/64")?;
    let max = max_prefix(addr);
    let Some(prefix) = prefix else {
        return Ok(IpNet { addr, prefix: max });
    };
    let prefix: u32 = Some(prefix)
        .filter(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .ok_or("has an invalid prefix length: write a number after `/`, like 10.0.0.0/24")?;
    match u8::try_from(prefix) {
        Ok(prefix) if prefix <= max => Ok(IpNet { addr, prefix }),
        _ if max == 32 => Err("has a prefix longer than 32 for IPv4: use /0 to /32"),
        _ => Err("has a prefix longer than 128 for IPv6: use /0 to /128"),
    }
}

/// Parses `IPv4:port` or `[IPv6]:port`, explaining hostnames separately.
fn parse_endpoint(line: usize, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        if addr.port() != 0 {
            return Ok(addr);
        }
    }
    let host = value.rsplit_once(':').map_or(value, |(host, _)| host);
    let is_hostname = host.bytes().any(|b| b.is_ascii_alphabetic())
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if is_hostname {
        return Err(ConfigError::EndpointHostname {
            line,
            host: shown(host),
        });
    }
    Err(ConfigError::InvalidEndpoint {
        line,
        value: shown(value),
    })
}

/// Quotes user text for an error message, hiding anything that looks like a key and
/// shortening long text.
fn shown(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let longest_base64_run = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_base64_run >= 40 {
        return "(text hidden because it looks like a key)".to_string();
    }
    if text.chars().count() > MAX_CHARS {
        let head: String = text.chars().take(MAX_CHARS).collect();
        return format!("{head:?}…");
    }
    format!("{text:?}")
}

#[cfg(test)]
mod tests;
