//! The agent's local API: one typed request/answer exchange, the same on
//! the root-only Unix socket and over the control plane (`--via`): one JSON
//! line in (a [`Request`]), one JSON line out (a document of [`docs`], or
//! `{"error": "…"}`). Also the socket server every Unix socket of the agent
//! uses (WireGuard's own UAPI too, with its framing), and the client the
//! CLI uses.

pub mod docs;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// A request to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// This node ([`docs::Status`]).
    Status,
    /// Every member ([`docs::Member`]).
    Members,
    /// This node's tunnels ([`docs::Peer`]).
    Peers,
    /// The whole network's measurements ([`docs::Metrics`]).
    Metrics,
    /// Every member's host networks ([`docs::HostNetworks`]).
    HostNetworks,
    /// A one-time token ([`docs::Invite`]).
    Invite {
        /// Its life in seconds.
        ttl_s: u64,
        /// How many joins it allows.
        uses: u32,
        /// Tags the admitted nodes get in their certificates.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<String>,
    },
    /// Change settings after init (`cladnet set`): applied now where the
    /// running agent can, stored for its next start otherwise
    /// ([`docs::Text`]: what changed and when).
    Set(crate::change::Change),
    /// Remove a member for good ([`docs::Revoked`]).
    Revoke {
        /// Name, overlay address or id.
        node: String,
    },
    /// Re-issue a member's certificate with other tags ([`docs::Tagged`]).
    Tag {
        /// Name, overlay address or id.
        node: String,
        /// Its new tags (none: no tags).
        tags: Vec<String>,
    },
    /// Tell the others and stop ([`docs::Left`]).
    Leave,
    /// Sign a federation offer for this network ([`docs::Offer`]).
    FederateOffer {
        /// What this network exposes: `all` or `TAG[,TAG]`.
        expose: String,
        /// The tags of the members it lends as relays (`TAG[,TAG]`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relays: Option<String>,
        /// The offer's life in seconds.
        ttl_s: u64,
        /// The authority key (hex seed) when this node does not hold it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
    },
    /// Accept another network's offer: checked and signed, not yet carried
    /// ([`docs::Signed`]).
    FederateSign {
        /// The offer token.
        offer: String,
        /// What this network exposes.
        expose: String,
        /// The tags of the members it lends as relays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        relays: Option<String>,
        /// The authority key (hex seed) when this node does not hold it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
    },
    /// Carry an agreement the offering network took ([`docs::Federation`]).
    FederateAdopt {
        /// The agreement.
        agreement: Box<federation::agreement::Agreement>,
        /// Members of the offering network (from its offer).
        contacts: Vec<federation::contact::Contact>,
    },
    /// This network's federation agreements ([`docs::Federation`] list).
    FederateList,
    /// End the agreement with another network ([`docs::Ended`]).
    FederateEnd {
        /// The other network's name or id.
        org: String,
        /// The authority key (hex seed) when this node does not hold it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authority: Option<String>,
    },
    /// Prometheus text ([`docs::Text`]).
    Prometheus,
    /// The mesh page ([`docs::Text`]).
    Html,
    /// `request`, answered by the member `target`.
    Via {
        /// Name, overlay address, id or control `IP:PORT`.
        target: String,
        /// What to ask it.
        request: Box<Request>,
    },
    /// The interface in WireGuard-file mode ([`docs::Show`]).
    Show,
}

impl Request {
    /// May another member ask this over the control plane: the read-only
    /// queries, and invite and revoke if it may admit.
    pub fn allowed_remotely(&self, admit: bool) -> bool {
        match self {
            Request::Status
            | Request::Members
            | Request::Peers
            | Request::Metrics
            | Request::HostNetworks
            | Request::FederateList => true,
            Request::Invite { .. } | Request::Revoke { .. } => admit,
            _ => false,
        }
    }

    /// Its name on the wire.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// A request from the local CLI (or the HTTP listener) on its way to the
/// control loop, and where its answer line goes.
pub struct LocalRequest {
    /// The request.
    pub request: Request,
    /// The answer (a JSON line).
    pub reply: tokio::sync::oneshot::Sender<String>,
}

/// An answer line: the JSON of `doc`.
pub fn answer<T: Serialize>(doc: &T) -> String {
    serde_json::to_string(doc)
        .unwrap_or_else(|e| error(&format!("the agent could not encode its answer: {e}")))
}

/// An error answer line.
pub fn error(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Reads an answer line: the document, or its error as an error.
pub fn read_answer<T: DeserializeOwned>(line: &str) -> Result<T> {
    let value: serde_json::Value =
        serde_json::from_str(line).context("the agent sent an unreadable answer")?;
    if let Some(e) = value.get("error").and_then(serde_json::Value::as_str) {
        anyhow::bail!("{e}");
    }
    serde_json::from_value(value).context("the agent's answer does not match this cladnet version")
}

/// Parses a request line; the error is the answer to send back.
pub fn read_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line.trim()).map_err(|e| {
        error(&format!(
            "the request is not valid ({e}); is the CLI the same version as the agent?"
        ))
    })
}

/// Longest JSON request accepted.
pub const MAX_REQUEST: usize = 4096;

/// How requests on one socket are framed.
pub struct Framing {
    /// A request is complete when it ends with this.
    pub terminator: &'static str,
    /// Longest request accepted.
    pub max: usize,
    /// Answer to a request that ended (or hit `max`) before its terminator.
    pub incomplete: &'static str,
}

/// One JSON request per line.
pub const JSON_LINES: Framing = Framing {
    terminator: "\n",
    max: MAX_REQUEST,
    incomplete: "{\"error\": \"request too long or not ended by a newline\"}\n",
};

/// A root-only Unix socket this process created: removed when dropped,
/// unless another process has put its own socket at that path since.
pub struct Listening {
    listener: tokio::net::UnixListener,
    path: std::path::PathBuf,
    /// The socket file's inode, to remove only what we created.
    inode: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a root-only Unix socket at `path`, refusing to steal one that a
/// live agent serves (and then leaving that one alone).
pub fn bind(path: &Path) -> Result<Listening> {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another agent already serves {}: stop it or pass another socket path",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    let inode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .ino();
    let listening = Listening {
        listener,
        path: path.to_path_buf(),
        inode,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {} to root", path.display()))?;
    Ok(listening)
}

/// Serves requests on the socket at `path` until the future is dropped
/// (which removes the socket if it is still ours): a
/// complete request is answered by `handler`, an incomplete one is
/// refused unprocessed, and the connection is closed.
pub async fn serve<F, Fut>(path: &Path, framing: Framing, handler: F) -> Result<()>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    let listening = bind(path)?;
    let (handler, framing) = (Arc::new(handler), Arc::new(framing));
    let mut backoff = crate::accept::Backoff::new("local socket");
    loop {
        let Some((stream, _)) = backoff.accept(listening.listener.accept()).await else {
            continue;
        };
        let (handler, framing) = (handler.clone(), framing.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut request = Vec::new();
            let mut reader = tokio::io::BufReader::new(read).take(framing.max as u64);
            while !request.ends_with(framing.terminator.as_bytes()) {
                match reader.read_until(b'\n', &mut request).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let reply = if request.ends_with(framing.terminator.as_bytes()) {
                handler(String::from_utf8_lossy(&request).into_owned()).await
            } else {
                framing.incomplete.to_string()
            };
            let _ = write.write_all(reply.as_bytes()).await;
            if !reply.ends_with('\n') {
                let _ = write.write_all(b"\n").await;
            }
        });
    }
}

/// Sends `request` to the agent at `socket` and reads its answer.
pub fn ask<T: DeserializeOwned>(socket: &Path, request: &Request) -> Result<T> {
    let stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "no agent answers on {} (is `cladnet agent` running, and are you root?)",
            socket.display()
        )
    })?;
    exchange(stream, request)
}

/// Sends one request on a connected socket and reads the answer.
pub fn exchange<T: DeserializeOwned>(
    stream: std::os::unix::net::UnixStream,
    request: &Request,
) -> Result<T> {
    try_exchange(stream, request)?.context(
        "the agent is stopping (it left the network or was told to stop): ask again once it runs",
    )
}

/// [`exchange`], or `None` when the agent closed the connection without
/// an answer (it was stopping).
pub fn try_exchange<T: DeserializeOwned>(
    mut stream: std::os::unix::net::UnixStream,
    request: &Request,
) -> Result<Option<T>> {
    let line = serde_json::to_string(request).context("cannot encode the request")?;
    if stream.write_all(format!("{line}\n").as_bytes()).is_err() {
        return Ok(None);
    }
    let mut answer = String::new();
    match BufReader::new(stream).read_line(&mut answer) {
        Ok(0) | Err(_) => Ok(None),
        Ok(_) => read_answer(&answer).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_wire_form_and_bad_ones_are_refused() {
        let invite = Request::Invite {
            ttl_s: 3600,
            uses: 2,
            tags: vec![],
        };
        let line = serde_json::to_string(&invite).unwrap();
        assert_eq!(line, r#"{"cmd":"invite","ttl_s":3600,"uses":2}"#);
        assert_eq!(read_request(&line), Ok(invite));
        let via = r#"{"cmd":"via","target":"b","request":{"cmd":"peers"}}"#;
        assert_eq!(
            read_request(via),
            Ok(Request::Via {
                target: "b".into(),
                request: Box::new(Request::Peers)
            })
        );
        // A count past u32 is refused, never truncated to 1.
        let huge = r#"{"cmd":"invite","ttl_s":3600,"uses":4294967297}"#;
        assert!(read_request(huge).unwrap_err().contains("not valid"));
        assert!(read_request(r#"{"cmd":"reboot"}"#).is_err());
        assert!(read_request("not json").is_err());
        assert!(!Request::Leave.allowed_remotely(true));
        assert!(Request::Peers.allowed_remotely(false));
        assert!(!invite_req().allowed_remotely(false) && invite_req().allowed_remotely(true));
        assert_eq!(Request::HostNetworks.name(), "host_networks");
        // Federation: anyone of the network may read the list; offers,
        // acceptances and endings only from the local socket.
        assert!(Request::FederateList.allowed_remotely(false));
        let offer = Request::FederateOffer {
            expose: "all".into(),
            relays: None,
            ttl_s: 60,
            authority: None,
        };
        assert!(!offer.allowed_remotely(true));
        assert_eq!(
            serde_json::to_string(&offer).unwrap(),
            r#"{"cmd":"federate_offer","expose":"all","ttl_s":60}"#
        );
    }

    fn invite_req() -> Request {
        Request::Invite {
            ttl_s: 1,
            uses: 1,
            tags: vec!["shared".into()],
        }
    }

    #[test]
    fn answers_carry_documents_or_one_error() {
        let doc = docs::Left { left: true };
        assert_eq!(read_answer::<docs::Left>(&answer(&doc)).unwrap(), doc);
        let e = read_answer::<docs::Left>(&error("no such member")).unwrap_err();
        assert_eq!(e.to_string(), "no such member");
    }
}
