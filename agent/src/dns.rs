//! Names for members: the agent answers `NAME.NETWORK.cladnet` with the
//! member's overlay address (members of federated networks under their own
//! network's name). Sans-IO: a query's bytes in, the answer's bytes out,
//! parsed and written with hickory-proto. Authoritative for `.cladnet`
//! only: other names are refused (it is not a resolver).

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The zone every name lives under.
pub const SUFFIX: &str = "cladnet";
/// Answers live this long in caches (addresses change rarely; a re-claim
/// shows within this).
const TTL: u32 = 30;

/// The names this node answers for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Zone {
    names: BTreeMap<String, Ipv4Addr>,
}

impl Zone {
    /// A zone of `(member, network, address)`; names that are not valid
    /// DNS labels (a network name with spaces) are left out.
    pub fn new<'a>(members: impl IntoIterator<Item = (&'a str, &'a str, Ipv4Addr)>) -> Zone {
        let names = members
            .into_iter()
            .filter_map(|(name, network, addr)| {
                let network = network.to_ascii_lowercase();
                (label(name) && label(&network))
                    .then(|| (format!("{name}.{network}.{SUFFIX}"), addr))
            })
            .collect();
        Zone { names }
    }

    /// The address of `fqdn` (case-insensitive, with or without the
    /// final dot).
    pub fn lookup(&self, fqdn: &str) -> Option<Ipv4Addr> {
        let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
        self.names.get(&name).copied()
    }
}

/// True if `s` is one DNS label of letters, digits and hyphens.
fn label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The answer to the DNS message `query`, or `None` for what gets no
/// answer at all (not a well-formed query: dropped, the caller counts it).
pub fn answer(query: &[u8], zone: &Zone) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(false);
    let [question] = request.queries() else {
        response.set_response_code(ResponseCode::FormErr);
        return response.to_vec().ok();
    };
    response.add_query(question.clone());
    if request.op_code() != OpCode::Query {
        response.set_response_code(ResponseCode::NotImp);
        return response.to_vec().ok();
    }
    let name = question.name().to_ascii().to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if name != SUFFIX && !name.ends_with(&format!(".{SUFFIX}")) {
        response.set_response_code(ResponseCode::Refused);
        return response.to_vec().ok();
    }
    response.set_authoritative(true);
    match zone.lookup(name) {
        Some(address) => {
            if question.query_type() == RecordType::A {
                response.add_answer(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::A(A(address)),
                ));
            }
        }
        None => {
            response.set_response_code(ResponseCode::NXDomain);
        }
    }
    response.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    fn ask(zone: &Zone, name: &str, kind: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_str(name).expect("a name"), kind));
        let bytes = answer(&q.to_vec().expect("encodes"), zone).expect("an answer");
        Message::from_vec(&bytes).expect("decodes")
    }

    #[test]
    fn members_are_answered_others_are_not() {
        let zone = Zone::new([
            ("b", "acme", Ipv4Addr::new(100, 64, 0, 2)),
            ("b2", "beta", Ipv4Addr::new(10, 2, 0, 5)),
            ("x", "not a label", Ipv4Addr::new(10, 9, 9, 9)),
        ]);
        assert_eq!(zone.lookup("x.not a label.cladnet"), None, "not a DNS name");
        let r = ask(&zone, "B.Acme.cladnet.", RecordType::A);
        assert_eq!(r.id(), 7);
        assert_eq!(r.response_code(), ResponseCode::NoError);
        assert!(r.authoritative());
        let addrs: Vec<RData> = r.answers().iter().map(|a| a.data().clone()).collect();
        assert_eq!(addrs, vec![RData::A(A(Ipv4Addr::new(100, 64, 0, 2)))]);
        assert_eq!(
            ask(&zone, "b2.beta.cladnet.", RecordType::A)
                .answers()
                .len(),
            1
        );
        // A known name, another type: no data, no error.
        let r = ask(&zone, "b.acme.cladnet.", RecordType::AAAA);
        assert_eq!(
            (r.response_code(), r.answers().len()),
            (ResponseCode::NoError, 0)
        );
        // Unknown under .cladnet: NXDOMAIN; anything else: refused.
        assert_eq!(
            ask(&zone, "gone.acme.cladnet.", RecordType::A).response_code(),
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask(&zone, "example.com.", RecordType::A).response_code(),
            ResponseCode::Refused
        );
        // Garbage gets no answer.
        assert_eq!(answer(&[1, 2, 3], &zone), None);
    }
}
