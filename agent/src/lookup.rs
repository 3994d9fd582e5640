//! Naming a member on the command line: by name, overlay address, id (at
//! least 8 hex digits of it) or control endpoint. One matcher for the
//! agent (which reads its ledger) and the CLI (which reads `members`).

use std::net::SocketAddr;

/// What a member can be called by.
pub struct Names<'a> {
    /// Its name.
    pub name: &'a str,
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
    let mut hits = members.into_iter().filter(|(_, n)| {
        n.name == who
            || n.address == who
            || (who.len() >= 8 && n.id.starts_with(who))
            || control.is_some_and(|c| n.control.contains(&c))
    });
    match (hits.next(), hits.next()) {
        (Some((one, _)), None) => Ok(one),
        (None, _) => Err(format!(
            "no member is called {who:?} (name, overlay address, id or control IP:PORT): see `cladnet members`"
        )),
        (Some(_), Some(_)) => Err(format!(
            "{who:?} names several members: give the node id instead"
        )),
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
                        address: "100.64.0.1",
                        id: "aaaabbbbcccc",
                        control: &control,
                    },
                ),
                (
                    2,
                    Names {
                        name: "b",
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
    }
}
