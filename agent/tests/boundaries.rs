//! Trust boundaries, as an attacker and as a clumsy user meet them: an
//! outsider that speaks the real control protocol learns nothing of the
//! network's state; a revoked node knows it and admits nobody; a join
//! refused for a bad `--address` does not spend the invite; an invite
//! request whose use count does not fit is refused, not truncated; an
//! outsider crowding a member with connections locks no member out.

mod common;

use anyhow::{bail, ensure, Context, Result};
use common::net::{setup, Net};
use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testbed::serde_json::Value;
use testbed::Lab;

fn lab(names: &[&str], body: impl FnOnce(&mut Net) -> Result<()>) -> Result<()> {
    let lab = Lab::new()?;
    let mut net = setup(lab, names)?;
    let r = body(&mut net);
    net.lab.check(r)
}

/// Starts a network of `names.len()` members: the first inits, each next
/// one joins through the one before.
fn network(net: &mut Net, names: &[&str]) -> Result<()> {
    net.init(0, names[0])?;
    net.start(0)?;
    for (i, name) in names.iter().enumerate().skip(1) {
        let t = net.invite(i - 1, &[])?;
        net.join(i, name, &t)?;
        net.start(i)?;
    }
    net.wait_alive(0, names, Duration::from_secs(30))
}

/// Sum of a JSON object's integer values (e.g. refusal counters by reason).
fn sum(v: &Value) -> u64 {
    v.as_object()
        .map(|o| o.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0)
}

#[test]
fn an_outsider_speaking_the_protocol_receives_no_records() -> Result<()> {
    if testbed::skip_unless_root("boundaries lab") {
        return Ok(());
    }
    lab(&["a", "b", "c", "x"], |net| {
        network(net, &["a", "b", "c"])?;
        // The outsider knows the network id and a member's control address
        // (say, from a token that leaked after use), but is no member.
        let token = net.invite(0, &[])?;
        let invite = federation::token::Invite::decode(&token)?;
        let x = net.members[3].node.clone();
        let seen = std::thread::scope(|s| {
            let spy = s.spawn(|| net.lab.in_netns(&x, || outsider::listen(&invite)));
            // Meanwhile the network changes: a revokes c, records are gossiped.
            std::thread::sleep(Duration::from_secs(2));
            net.cli(0, &["revoke", "c"])?;
            spy.join()
                .map_err(|_| anyhow::anyhow!("the outsider thread panicked"))?
        })??;
        eprintln!("FIGURE outsider saw: {seen:?}");
        assert!(
            seen.summaries_asked > 0 || seen.connected,
            "the outsider never got in touch: {seen:?}"
        );
        assert_eq!(seen.records, 0, "records reached an outsider: {seen:?}");
        assert_eq!(
            seen.versions, 0,
            "version lists reached an outsider: {seen:?}"
        );
        let refused = sum(&net.status(0)?["refused_outsiders"]);
        assert!(
            refused > 0,
            "a counted nothing it refused the outsider: {}",
            net.status(0)?
        );
        Ok(())
    })
}

#[test]
fn an_outsider_crowding_a_member_with_connections_locks_nobody_out() -> Result<()> {
    if testbed::skip_unless_root("boundaries lab") {
        return Ok(());
    }
    lab(&["a", "b", "x", "d"], |net| {
        network(net, &["a", "b"])?;
        // The crowd reads the network id and a's address from one invite
        // (say, leaked); d joins with another.
        let invite = federation::token::Invite::decode(&net.invite(0, &[])?)?;
        let token = net.invite(0, &[])?;
        let x = net.members[2].node.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let (crowd, during) = std::thread::scope(|s| {
            let crowd = s.spawn(|| x.within(|| outsider::crowd(&invite, CROWD, &stop, &open)));
            // Let the crowd fill a's connection slots, then d joins
            // through a and must be seen alive by b, all while the crowd
            // keeps dialing.
            let full = testbed::wait_until(Duration::from_secs(60), || {
                open.load(Ordering::Relaxed) >= FULL
            });
            eprintln!(
                "crowd: {} connections open at once",
                open.load(Ordering::Relaxed)
            );
            let during = (|| -> Result<()> {
                ensure!(
                    full,
                    "the crowd never held {FULL} connections at once: the test proves little"
                );
                net.join(3, "d", &token).context("d's join through a")?;
                net.start(3)?;
                net.wait_alive(1, &["a", "b", "d"], Duration::from_secs(30))?;
                net.wait_alive(0, &["a", "b", "d"], Duration::from_secs(10))
            })();
            stop.store(true, Ordering::Relaxed);
            let crowd = crowd
                .join()
                .map_err(|_| anyhow::anyhow!("the crowd thread panicked"));
            (crowd, during)
        });
        during.context("while an outsider crowded a with connections")?;
        let crowd = crowd???;
        eprintln!("FIGURE crowd of {CROWD} outsiders: {crowd:?}");
        assert!(
            crowd.stopped,
            "the crowd ended before the checks did: {crowd:?}"
        );

        let st = net.status(0)?;
        assert!(
            sum(&st["refused_outsiders"]) > 0,
            "a counted nothing it refused the crowd: {st}"
        );
        Ok(())
    })
}

/// Outsiders in the crowd test (more than a member accepts connections
/// from all peers together: 256).
const CROWD: usize = 400;
/// Crowd connections open at once before the newcomer joins: a's slots
/// are (nearly) all taken.
const FULL: usize = 250;

#[test]
fn a_revoked_node_knows_it_and_admits_nobody() -> Result<()> {
    if testbed::skip_unless_root("boundaries lab") {
        return Ok(());
    }
    lab(&["a", "b", "c", "d"], |net| {
        network(net, &["a", "b", "c"])?;
        // c invites before it is revoked; that token must stop working too.
        let early = net.invite(2, &[])?;
        net.cli(0, &["revoke", "c"])?;
        let known = testbed::wait_until(Duration::from_secs(10), || {
            net.status(2).is_ok_and(|s| s["standing"] == "revoked")
        });
        assert!(known, "c does not know it was revoked: {}", net.status(2)?);
        let refused = net
            .lab
            .exec(&net.members[2].node, &cli_argv(net, 2, &["invite"]))?;
        let msg = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && msg.contains("revoked"),
            "a revoked node issued an invite: {msg}"
        );
        let join = net
            .lab
            .exec(&net.members[3].node, &net.join_cmd(3, "d", &early))?;
        let msg = String::from_utf8_lossy(&join.stderr);
        assert!(
            !join.status.success() && msg.contains("revoked"),
            "a join through a revoked node went through: {msg}"
        );
        assert_eq!(msg.trim().lines().count(), 1, "one sentence: {msg}");
        assert!(
            !net.members[3].state.join("state.redb").exists(),
            "a refused join left state behind"
        );
        Ok(())
    })
}

#[test]
fn a_refused_join_does_not_spend_the_invite() -> Result<()> {
    if testbed::skip_unless_root("boundaries lab") {
        return Ok(());
    }
    lab(&["a", "b", "c"], |net| {
        network(net, &["a", "b"])?;
        let token = net.invite(0, &[])?;
        let taken = net.address(1)?;
        for (bad, why) in [
            ("10.1.2.3", "not a usable address"),
            (taken.as_str(), "already used"),
        ] {
            let mut argv = net.join_cmd(2, "c", &token);
            argv.extend(["--address".to_string(), bad.to_string()]);
            let out = net.lab.exec(&net.members[2].node, &argv)?;
            let msg = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && msg.contains(why),
                "--address {bad}: {msg}"
            );
        }
        // The same one-time token still works without the bad address.
        net.join(2, "c", &token)
            .context("the refused joins spent the invite")?;
        Ok(())
    })
}

#[test]
fn an_invite_use_count_that_does_not_fit_is_refused() -> Result<()> {
    if testbed::skip_unless_root("boundaries lab") {
        return Ok(());
    }
    lab(&["a"], |net| {
        network(net, &["a"])?;
        // What `cladnet invite` sends, with a count past u32 (2^32 + 1).
        let answer = raw_request(net, 0, r#"{"cmd":"invite","ttl_s":3600,"uses":4294967297}"#)?;
        assert!(
            answer.get("token").is_none() && answer.get("error").is_some(),
            "an invite for 2^32+1 uses was issued: {answer}"
        );
        Ok(())
    })
}

fn cli_argv(net: &Net, i: usize, args: &[&str]) -> Vec<String> {
    let mut argv = vec![common::bin().to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.push("--state".into());
    argv.push(net.members[i].state.to_string_lossy().into_owned());
    argv
}

/// One JSON line to member `i`'s local socket, as the CLI sends it.
fn raw_request(net: &Net, i: usize, line: &str) -> Result<Value> {
    let path = net.members[i].state.join("agent.sock");
    let mut stream = std::os::unix::net::UnixStream::connect(&path)
        .with_context(|| format!("connect {}", path.display()))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    if answer.trim().is_empty() {
        bail!("no answer to {line}");
    }
    Ok(testbed::serde_json::from_str(&answer)?)
}

/// An outsider that knows the network id and a member's control address.
mod outsider {
    use anyhow::{Context, Result};
    use federation::net::{Event, Shell};
    use federation::protocol::{Request, Response};
    use federation::replica::Verdict;
    use federation::sync::{Summary, Versions, BUCKETS};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A replica of nothing for the outsider: what makes its answers (a
    /// shell sends only answers a replica counted).
    fn answers(me: &federation::NodeKey) -> federation::replica::Replica {
        let ledger = federation::Ledger::new(federation::Network::of(me.id()));
        federation::replica::Replica::new(ledger, me.id())
    }

    /// What reached the outsider.
    #[derive(Debug, Default)]
    pub struct Seen {
        pub connected: bool,
        pub summaries_asked: usize,
        pub records: usize,
        pub versions: usize,
        pub refusals: usize,
    }

    /// Connects to the inviter of `invite`, answers every summary with
    /// "I have nothing", asks for summaries and records itself, and counts
    /// every record and version list that reaches it for 12 s.
    pub fn listen(invite: &federation::token::Invite) -> Result<Seen> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let me = federation::NodeKey::generate();
            let mut shell = Shell::member(me.seed(), &invite.network, "0.0.0.0:0".parse()?)?;
            let mut replica = answers(&me);
            let addrs = invite.addrs.clone();
            shell.dial(&invite.inviter, &addrs);
            let mut seen = Seen::default();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
            let mut ask = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    e = shell.next() => match e {
                        Event::Connected(..) => seen.connected = true,
                        Event::Gossip { ticket, data, .. } => {
                            seen.records += usize::from(!data.is_empty());
                            shell.validated(&ticket, Verdict::Ignore);
                        }
                        Event::Request { request, reply, .. } => {
                            let answer = match request {
                                Request::Summary(_) => {
                                    seen.summaries_asked += 1;
                                    Response::Versions(Versions::default())
                                }
                                Request::Push(r) => {
                                    seen.records += r.len();
                                    Response::Ack
                                }
                                Request::Pull(_) => Response::Records(vec![]),
                                _ => Response::Refused("no".into()),
                            };
                            shell.respond(reply, replica.answer(answer));
                        }
                        Event::Response { response, .. } => match response {
                            Response::Records(r) => seen.records += r.len(),
                            Response::Admitted { records, .. } => seen.records += records.len(),
                            Response::Versions(v) => seen.versions += v.versions.len(),
                            Response::Refused(_) | Response::NotMember => seen.refusals += 1,
                            _ => {}
                        },
                        _ => {}
                    },
                    _ = ask.tick() => {
                        let nothing = Summary(vec![0; BUCKETS]);
                        shell.request(&invite.inviter, &addrs, Request::Summary(nothing))
                            .context("bad inviter id")?;
                        shell.request(&invite.inviter, &addrs, Request::Pull(vec![invite.inviter]))
                            .context("bad inviter id")?;
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            Ok(seen)
        })
    }

    /// What a crowd of outsiders achieved.
    #[derive(Debug, Default)]
    pub struct Crowd {
        /// Connections that came up (redials included).
        pub connections: usize,
        /// Connections the member closed.
        pub closed: usize,
        /// Whether `stop` ended the crowd (not its own deadline).
        pub stopped: bool,
    }

    /// `n` outsiders, each with a fresh identity and socket, dial the
    /// inviter of `invite`, ask it for a summary once connected and, while
    /// not connected (refused, closed), dial again every 2 s, until `stop`
    /// (at most 180 s). `open` counts the connections open at the moment.
    pub fn crowd(
        invite: &federation::token::Invite,
        n: usize,
        stop: &Arc<AtomicBool>,
        open: &Arc<AtomicUsize>,
    ) -> Result<Crowd> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
            let mut tasks = Vec::new();
            for _ in 0..n {
                let me = federation::NodeKey::generate();
                let mut shell =
                    Shell::member(me.seed(), &invite.network, "0.0.0.0:0".parse()?)?;
                let mut replica = answers(&me);
                let (inviter, addrs) = (invite.inviter, invite.addrs.clone());
                let (stop, open) = (stop.clone(), open.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let mut seen = Crowd::default();
                    let mut connected = false;
                    let mut redial = tokio::time::interval(Duration::from_secs(2));
                    while !stop.load(Ordering::Relaxed) {
                        tokio::select! {
                            e = shell.next() => match e {
                                Event::Connected(..) => {
                                    connected = true;
                                    seen.connections += 1;
                                    open.fetch_add(1, Ordering::Relaxed);
                                    let nothing = Summary(vec![0; BUCKETS]);
                                    let _ = shell.request(&inviter, &addrs, Request::Summary(nothing));
                                }
                                Event::Disconnected(_) => {
                                    if connected {
                                        open.fetch_sub(1, Ordering::Relaxed);
                                    }
                                    connected = false;
                                    seen.closed += 1;
                                }
                                Event::Request { reply, .. } => {
                                    let no = replica.answer(Response::Refused("no".into()));
                                    shell.respond(reply, no);
                                }
                                _ => {}
                            },
                            // Dials refused or closed are tried again.
                            _ = redial.tick() => {
                                if !connected {
                                    shell.dial(&inviter, &addrs);
                                }
                            }
                            _ = tokio::time::sleep_until(deadline) => break,
                        }
                    }
                    seen
                }));
            }
            let mut all = Crowd::default();
            for t in tasks {
                let seen = t.await?;
                all.connections += seen.connections;
                all.closed += seen.closed;
            }
            all.stopped = stop.load(Ordering::Relaxed);
            Ok(all)
        })
    }
}
