//! Naming a member on the command line: by name (or `NAME@ORG`, names
//! repeat across federated networks), overlay address, id (at least 8 hex
//! digits of it) or control endpoint. One matcher for the
//! agent (which reads its ledger) and the CLI (which reads `members`).

use std::net::SocketAddr;

/// What a member can be called by.
#[derive(Clone, Copy)]
pub struct Names<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its network's name (its organisation).
    pub org: &'a str,
    /// Its overlay address.
    pub address: &'a str,
    /// Its id in hex.
    pub id: &'a str,
    /// Its control endpoints.
    pub control: &'a [SocketAddr],
}

/// The one member `who` names among `members`, or the sentence to show.
pub fn find<'a, T>(
    who: &str,
    members: impl IntoIterator<Item = (T, Names<'a>)>,
) -> Result<T, String> {
    let control = who.parse::<SocketAddr>().ok();
    let qualified = who.split_once('@');
    let mut hits: Vec<(T, Names<'a>)> = members
        .into_iter()
        .filter(|(_, n)| {
            n.name == who
                || qualified == Some((n.name, n.org))
                || n.address == who
                || (who.len() >= 8 && n.id.starts_with(who))
                || control.is_some_and(|c| n.control.contains(&c))
        })
        .collect();
    match hits.len() {
        1 => Ok(hits.remove(0).0),
        0 => Err(format!(
            "no member is called {who:?} (name, NAME@ORG, overlay address, id or control IP:PORT): see `cladnet members`"
        )),
        _ => {
            let candidates: Vec<String> = hits
                .iter()
                .map(|(_, n)| format!("{}@{} ({})", n.name, n.org, n.address))
                .collect();
            Err(format!(
                "{who:?} names several members: {}; say which with NAME@ORG or the node id",
                candidates.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_found_by_any_of_their_names_and_only_once() {
        let control: Vec<SocketAddr> = vec!["198.18.0.1:51821".parse().unwrap()];
        let list = || {
            [
                (
                    1,
                    Names {
                        name: "a",
                        org: "alpha",
                        address: "100.64.0.1",
                        id: "aaaabbbbcccc",
                        control: &control,
                    },
                ),
                (
                    2,
                    Names {
                        name: "b",
                        org: "alpha",
                        address: "100.64.0.2",
                        id: "aaaabbbbdddd",
                        control: &[],
                    },
                ),
            ]
        };
        assert_eq!(find("a", list()), Ok(1));
        assert_eq!(find("100.64.0.2", list()), Ok(2));
        assert_eq!(find("aaaabbbbd", list()), Ok(2));
        assert_eq!(find("198.18.0.1:51821", list()), Ok(1));
        assert!(find("aaaabbbb", list()).unwrap_err().contains("several"));
        assert!(
            find("aaaa", list()).unwrap_err().contains("no member"),
            "too short an id"
        );
        assert!(find("c", list()).unwrap_err().contains("no member"));
        assert_eq!(find("a@alpha", list()), Ok(1));
        assert!(find("a@beta", list()).unwrap_err().contains("no member"));
        // Names repeat across organisations: a bare name naming two is
        // refused with the candidates.
        let twins = [
            (
                1,
                Names {
                    name: "db",
                    org: "alpha",
                    address: "10.1.0.2",
                    id: "11",
                    control: &[],
                },
            ),
            (
                2,
                Names {
                    name: "db",
                    org: "beta",
                    address: "10.2.0.2",
                    id: "22",
                    control: &[],
                },
            ),
        ];
        let why = find("db", twins.iter().map(|(i, n)| (*i, *n))).unwrap_err();
        assert!(
            why.contains("db@alpha (10.1.0.2), db@beta (10.2.0.2)"),
            "{why}"
        );
        assert_eq!(find("db@beta", twins.into_iter()), Ok(2));
    }
}
