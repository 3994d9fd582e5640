//! The one line `status` starts with: healthy, or what is wrong and what
//! to do; and whether a human is needed (`status --check` exits non-zero).

use federation::Status;

/// What the verdict is drawn from.
#[derive(Debug, Default)]
pub struct Inputs {
    /// This node's standing (`None` before its record is known).
    pub standing: Option<Status>,
    /// Other active members of the network.
    pub members: usize,
    /// Of them: heard from recently, directly reached, relayed.
    pub alive: usize,
    /// Reached directly.
    pub direct: usize,
    /// Reached through a relay.
    pub relayed: usize,
    /// Silent for a while (not yet a problem).
    pub suspect: usize,
    /// Names of those silent for over 2 minutes.
    pub down: Vec<String>,
    /// Names of those whose published measurements are dated more than a
    /// minute ahead of this node's clock (one of the two clocks is wrong).
    pub skewed: Vec<String>,
}

/// The verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// False when a human is needed.
    pub healthy: bool,
    /// One sentence.
    pub line: String,
}

/// Draws the verdict.
pub fn verdict(i: &Inputs) -> Verdict {
    let bad = |line: String| Verdict {
        healthy: false,
        line,
    };
    match i.standing {
        Some(Status::Revoked) => return bad("revoked: this node was revoked from the network and admits, invites and routes for nobody; join again with a new state directory if that was a mistake".into()),
        Some(Status::Expired) => return bad("expired: this node's certificate expired; it admits, invites and routes for nobody until it joins again".into()),
        Some(Status::Left) => return bad("left: this node left the network".into()),
        None => return bad("unknown: this node's own record is not in its state yet; wait a few seconds and ask again".into()),
        Some(Status::Active) => {}
    }
    if !i.down.is_empty() {
        let shown: Vec<&str> = i.down.iter().take(5).map(String::as_str).collect();
        let more = i.down.len().saturating_sub(shown.len());
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return bad(format!(
            "needs attention: {} of {} members unreachable for over 2 minutes ({}{tail}); check that they run and that their UDP ports (WireGuard and control plane, `cladnet members` lists them) reach them, or revoke them",
            i.down.len(),
            i.members,
            shown.join(", ")
        ));
    }
    if !i.skewed.is_empty() {
        return bad(format!(
            "needs attention: the clock of {} is over a minute ahead of this node's (certificates and invites expire by the clock): check time synchronisation (NTP) on both",
            i.skewed.join(", ")
        ));
    }
    let line = if i.members == 0 {
        "healthy: the only member so far; add others with `cladnet invite`".to_string()
    } else {
        let suspect = if i.suspect > 0 {
            format!(", {} silent for a moment", i.suspect)
        } else {
            String::new()
        };
        format!(
            "healthy: {} of {} members reachable, {} direct, {} relayed{suspect}",
            i.alive, i.members, i.direct, i.relayed
        )
    };
    Verdict {
        healthy: true,
        line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_says_what_is_wrong_and_only_then_needs_a_human() {
        let ok = Inputs {
            standing: Some(Status::Active),
            members: 12,
            alive: 12,
            direct: 11,
            relayed: 1,
            ..Inputs::default()
        };
        assert_eq!(
            verdict(&ok),
            Verdict {
                healthy: true,
                line: "healthy: 12 of 12 members reachable, 11 direct, 1 relayed".into()
            }
        );
        let alone = Inputs {
            standing: Some(Status::Active),
            ..Inputs::default()
        };
        assert!(verdict(&alone).healthy && verdict(&alone).line.contains("only member"));
        let down = Inputs {
            down: vec!["b".into(), "c".into()],
            alive: 10,
            ..ok
        };
        let v = verdict(&down);
        assert!(!v.healthy);
        assert!(
            v.line.contains("2 of 12 members unreachable") && v.line.contains("(b, c)"),
            "{}",
            v.line
        );
        let skewed = Inputs {
            skewed: vec!["d".into()],
            ..Inputs {
                standing: Some(Status::Active),
                members: 3,
                alive: 3,
                ..Inputs::default()
            }
        };
        let v = verdict(&skewed);
        assert!(
            !v.healthy && v.line.contains("clock of d is over a minute ahead"),
            "{}",
            v.line
        );
        let revoked = Inputs {
            standing: Some(Status::Revoked),
            ..Inputs::default()
        };
        assert!(!verdict(&revoked).healthy && verdict(&revoked).line.starts_with("revoked:"));
    }
}
