//! `cladnet federate`: the command-line side of federation. The agent
//! signs offers and acceptances with the network's authority key (its own,
//! or one given with `--authority FILE`); an acceptance is handed to a
//! member of the offering network over the control plane — any member
//! takes it for its network, so the offering authority need not be online
//! — and only then does this network carry it.

use super::client;
use super::conversation::{Conversation, UNEXPECTED};
use crate::api::{docs, Request};
use anyhow::{Context, Result};
use federation::contact::Contact;
use federation::protocol::{Request as Ask, Response};
use federation::{NetworkId, NodeKey};
use std::path::Path;
use std::time::Duration;

/// How long a member of the other network has to answer.
const DELIVER_TIMEOUT: Duration = federation::joining::CONNECT_TIMEOUT;

/// The sentence for a missing `--expose`.
const EXPOSE_NEEDED: &str = "--expose is required: say what this network lets the other reach, `all` or TAG[,TAG] (members whose certificates carry one of the tags)";

/// `federate offer`: prints the offer token (stdout) and what to do with
/// it (stderr).
pub fn offer(
    state: &Path,
    (expose, relays): (Option<&str>, Option<&str>),
    ttl: Duration,
    authority: Option<&Path>,
) -> Result<()> {
    let expose = expose.context(EXPOSE_NEEDED)?;
    let request = Request::FederateOffer {
        expose: expose.to_string(),
        relays: relays.map(str::to_string),
        ttl_s: ttl.as_secs(),
        authority: crate::statedir::authority_hex(authority)?,
    };
    let offer: docs::Offer = client::ask(state, request, None)?;
    println!("{}", offer.token);
    eprintln!(
        "offer signed by the authority with fingerprint {} (check it with the other side out of band); the other network's authority runs: cladnet federate accept TOKEN --state DIR --expose all|TAG[,TAG]",
        offer.fingerprint
    );
    Ok(())
}

/// `federate accept`: signs the agreement, hands it to a member of the
/// offering network, then carries it here.
pub fn accept(
    state: &Path,
    token: &str,
    (expose, relays): (Option<&str>, Option<&str>),
    authority: Option<&Path>,
) -> Result<()> {
    let expose = expose.context(EXPOSE_NEEDED)?;
    let request = Request::FederateSign {
        offer: token.to_string(),
        expose: expose.to_string(),
        relays: relays.map(str::to_string),
        authority: crate::statedir::authority_hex(authority)?,
    };
    let signed: docs::Signed = client::ask(state, request, None)?;
    let hand_over = Ask::Federate {
        agreement: Box::new(signed.agreement.clone()),
        contacts: signed.ours,
    };
    let offering = signed.agreement.offer.offerer.network;
    crate::process::runtime()?.block_on(deliver(hand_over, &offering, signed.contacts.clone()))?;
    let adopt = Request::FederateAdopt {
        agreement: Box::new(signed.agreement),
        contacts: signed.contacts,
    };
    let f: docs::Federation = client::ask(state, adopt, None)?;
    println!(
        "federated with {} (id {}, range {}): this network exposes {}, {} exposes {}",
        f.org, f.network_id, f.cidr, f.exposes, f.org, f.exposed_to_us
    );
    for (who, tags) in [("this network", &f.lends), (f.org.as_str(), &f.lent_to_us)] {
        if !tags.is_empty() {
            println!("{who} lends its members tagged {tags} as relays");
        }
    }
    Ok(())
}

/// `federate end ORG`.
pub fn end(state: &Path, org: &str, authority: Option<&Path>) -> Result<()> {
    let request = Request::FederateEnd {
        org: org.to_string(),
        authority: crate::statedir::authority_hex(authority)?,
    };
    let ended: docs::Ended = client::ask(state, request, None)?;
    let f = &ended.federation;
    println!(
        "ended the agreement with {} (id {}) for this network",
        f.org, f.network_id
    );
    let other = federation::NetworkId(
        federation::hex::decode::<16>(&f.network_id)
            .context("the agent named the other network oddly")?,
    );
    let tell = Ask::EndFederation(Box::new(ended.ending));
    match crate::process::runtime()?.block_on(deliver(tell, &other, ended.contacts)) {
        Ok(()) => println!("{} was told and ends it too", f.org),
        Err(e) => eprintln!(
            "WARNING: {} could not be told now ({e:#}); its members learn of the end the next time one of them reaches this network",
            f.org
        ),
    }
    Ok(())
}

/// Hands `request` to a member of `network` among `contacts`; a contact
/// that is no longer a member is passed over.
async fn deliver(request: Ask, network: &NetworkId, contacts: Vec<Contact>) -> Result<()> {
    let mut talk = Conversation::open(&NodeKey::generate(), network, contacts)?;
    loop {
        match talk.ask(&request, DELIVER_TIMEOUT).await? {
            Response::Ack => break,
            Response::Refused(why) => anyhow::bail!("{why}"),
            Response::NotMember => talk.pass_over()?,
            _ => anyhow::bail!(UNEXPECTED),
        }
    }
    talk.close(Duration::from_millis(500)).await;
    Ok(())
}
