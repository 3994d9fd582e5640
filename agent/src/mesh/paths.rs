//! How each peer is reached: the endpoint echo (where members see us, and
//! whether our address moved), path MTU probes, relay fallback when no
//! direct path works and failover when a relay goes away, and the path
//! shown to users.

use super::*;

impl Mesh {
    /// Falls back to a relay for peers whose direct path gave no handshake
    /// within [`DIRECT_GRACE`], moves relayed peers whose last
    /// [`RELAY_SILENT`] probes were lost to another relay, and tries relayed
    /// peers directly again every [`DIRECT_RETRY`] (a direct packet from
    /// them also moves us back, by WireGuard's roaming).
    pub(super) fn manage_paths(&mut self) {
        let now = Instant::now();
        let me = self.node.key.id();
        let members: Vec<(NodeId, PublicKey, bool)> = self
            .ledger
            .members(now_ms())
            .iter()
            .filter(|m| m.status == Status::Active && m.id != me)
            .filter_map(|m| {
                Some((
                    m.id,
                    PublicKey(m.record.chain.last()?.wg_key),
                    m.record.no_relay,
                ))
            })
            .collect();
        let infos = self.peer_infos();
        let recent = |k: &PublicKey| {
            infos
                .get(&k.0)
                .and_then(|i| i.last_handshake)
                .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(150))
        };
        for (id, key, _) in &members {
            let Some(state) = self.paths.get(id).copied() else {
                continue;
            };
            let endpoint = infos.get(&key.0).and_then(|i| i.endpoint);
            let relayed = endpoint.is_some_and(|e| netstack::relay::is_virtual(&e));
            let since_direct = now.saturating_duration_since(state.direct_since);
            // A live path always has a session (keepalives rekey it); no
            // session DIRECT_GRACE after trying the direct endpoint means
            // the direct path does not work.
            let has_session = recent(key);
            let mut avoid = None;
            if relayed {
                let through = now.saturating_duration_since(state.relay_since) > DIRECT_GRACE;
                if through && self.silent(id) {
                    // The relay no longer gets us through: another one.
                    avoid = state.relay;
                } else {
                    if since_direct > DIRECT_RETRY + DIRECT_GRACE {
                        self.try_direct(id, key, state.relay, now);
                    }
                    continue;
                }
            } else if has_session || since_direct < DIRECT_GRACE {
                continue;
            }
            // No direct handshake: pick a relay among members that relay
            // and that we have a live tunnel with: first those whose last
            // metrics report a live tunnel with the peer, then those not
            // behind a NAT (they reach everyone), then the one we reach
            // fastest. Not waiting for metrics saves up to an interval.
            let reaches = |r: &NodeId| {
                self.ledger.member(r, now_ms()).is_some_and(|m| {
                    m.record.metrics.as_ref().is_some_and(|x| {
                        x.links.iter().any(|l| {
                            l.peer == *id
                                && l.path == "direct"
                                && l.handshake_age_s.is_some_and(|a| a < 150)
                        })
                    })
                })
            };
            let relay = members
                .iter()
                .filter(|(r, rk, no_relay)| {
                    r != id && Some(*r) != avoid && !no_relay && recent(rk) && !self.silent(r)
                })
                .filter_map(|(r, rk, _)| {
                    let at = infos
                        .get(&rk.0)?
                        .endpoint
                        .filter(|e| !netstack::relay::is_virtual(e))?;
                    let rtt = self
                        .prober
                        .as_ref()
                        .and_then(|p| p.window(r))
                        .and_then(|w| w.avg())
                        .unwrap_or(Duration::from_secs(1));
                    let public = self
                        .ledger
                        .member(r, now_ms())
                        .is_some_and(|m| federation::paths::unnatted(m.record));
                    Some((!reaches(r), !public, rtt, *r, at))
                })
                .min();
            let Some((_, _, _, relay_id, relay_at)) = relay else {
                if avoid.is_some() {
                    // No other relay: the direct path is all that is left.
                    self.try_direct(id, key, None, now);
                }
                continue;
            };
            let Some(virtual_endpoint) = self.relays.path(relay_at, netstack::relay::key_id(key))
            else {
                continue;
            };
            let names = telemetry::names(&self.ledger, now_ms());
            let name = |n: &NodeId| names.get(n).cloned().unwrap_or_default();
            match avoid {
                Some(old) => tracing::info!(
                    peer = %name(id), relay = %name(&relay_id), failed = %name(&old),
                    "the relay stopped getting through; relaying elsewhere"
                ),
                None => tracing::info!(
                    peer = %name(id), relay = %name(&relay_id),
                    "no direct path after {DIRECT_GRACE:?}; relaying"
                ),
            }
            self.set_endpoint(key, virtual_endpoint);
            if let Some(p) = self.prober.as_mut() {
                p.forget(id);
            }
            // Keep direct_since: the retry clock runs from the failed attempt.
            self.paths.insert(
                *id,
                PathState {
                    direct_since: state.direct_since,
                    relay: Some(relay_id),
                    relay_since: now,
                },
            );
        }
    }

    /// Tries the direct endpoint chosen for peer `id` again (for
    /// [`DIRECT_GRACE`]; `relay` is the one to fall back to meanwhile).
    fn try_direct(&mut self, id: &NodeId, key: &PublicKey, relay: Option<NodeId>, now: Instant) {
        let Some(direct) = self.chosen.get(id).copied() else {
            return;
        };
        self.set_endpoint(key, direct);
        if let Some(p) = self.prober.as_mut() {
            p.forget(id);
        }
        self.paths.insert(
            *id,
            PathState {
                direct_since: now,
                relay,
                relay_since: now,
            },
        );
    }

    /// True if our last [`RELAY_SILENT`] overlay probes to `id` were lost.
    fn silent(&self, id: &NodeId) -> bool {
        self.prober
            .as_ref()
            .and_then(|p| p.window(id))
            .is_some_and(|w| w.last_lost(RELAY_SILENT))
    }

    /// Points the device at `endpoint` for the peer with `key`.
    pub(super) fn set_endpoint(&self, key: &PublicKey, endpoint: SocketAddr) {
        let mut dev = lock(&self.device);
        if let Some(mut c) = dev.peer_config(key) {
            c.endpoint = Some(endpoint);
            dev.upsert_peer(c);
        }
    }

    /// The path to a peer as shown to users: `direct`, or `relay` and the
    /// relaying member's name.
    pub(super) fn path_of(&self, endpoint: Option<SocketAddr>) -> (String, Option<String>) {
        let Some(e) = endpoint.filter(netstack::relay::is_virtual) else {
            return ("direct".into(), None);
        };
        let relay_at = self.relays.relay_of(&e);
        let key = relay_at.and_then(|r| lock(&self.device).peer_at(r));
        let name = key.and_then(|k| {
            self.ledger
                .members(now_ms())
                .iter()
                .find(|m| m.record.chain.last().is_some_and(|c| c.wg_key == k.0))
                .map(|m| m.record.name.clone())
        });
        ("relay".into(), name)
    }

    /// Asks a few peers with a direct endpoint, over the data-plane
    /// socket, where our datagrams reach them from (`crate::echo`); while a
    /// path's MTU is not known to fit the overlay's, a padded question
    /// probes it too (`netstack::pmtu`).
    pub(super) fn ask_echo(&mut self) {
        let now = Instant::now();
        self.expire_questions(now);
        let direct: Vec<(PublicKey, SocketAddr)> = lock(&self.device)
            .peers()
            .filter_map(|p| {
                let at = p.endpoint.filter(|e| !netstack::relay::is_virtual(e))?;
                Some((p.public_key, at))
            })
            .collect();
        // The largest tunnel datagram the overlay MTU implies, with the
        // whole overhead budget (IPv6 headers, a relay envelope) minus the
        // IPv4 + UDP headers the probe itself travels in.
        let target = self.own.mtu + federation::member::TUNNEL_OVERHEAD - IPV4_UDP;
        for i in 0..ECHO_PER_ROUND.min(direct.len()) {
            let (key, at) = direct[(self.echo_cursor + i) % direct.len()];
            let probe = self
                .path_probes
                .entry(key)
                .or_insert_with(|| PathProbe::new(target));
            probe.set_target(target);
            let sizes = [Some(0), probe.next(now).filter(|_| at.is_ipv4())];
            for len in sizes.into_iter().flatten() {
                self.ask(key, at, len, now);
            }
        }
        self.echo_cursor = self.echo_cursor.wrapping_add(ECHO_PER_ROUND);
    }

    fn ask(&mut self, peer: PublicKey, at: SocketAddr, len: u16, now: Instant) {
        let nonce = OsRng.next_u64();
        let Some(question) = self.echoes.echo.question(&peer, nonce, len) else {
            return;
        };
        if self.asked.len() >= MAX_ASKED {
            self.asked.pop_front();
        }
        self.asked.push_back(Asked {
            nonce,
            peer,
            len: u16::try_from(question.len()).unwrap_or(u16::MAX),
            at: now,
        });
        if let Err(e) = self.echoes.udp.send(at, &question, None) {
            tracing::debug!("cannot send an endpoint echo to {at}: {e}");
        }
    }

    /// Counts questions unanswered for [`ANSWER_WITHIN`] as lost; a lost
    /// probe tells the path MTU search that size may not fit.
    fn expire_questions(&mut self, now: Instant) {
        while let Some(q) = self.asked.front().copied() {
            if now.saturating_duration_since(q.at) < ANSWER_WITHIN {
                break;
            }
            self.asked.pop_front();
            if usize::from(q.len) > netstack::echo::REQUEST_LEN {
                if let Some(p) = self.path_probes.get_mut(&q.peer) {
                    p.unanswered(q.len, q.at, now);
                }
            }
        }
        self.update_path_mtu();
    }

    /// Publishes the narrowest probed path (as an IPv4 packet size) when
    /// probing found one narrower than the overlay needs.
    fn update_path_mtu(&mut self) {
        let limit = self
            .path_probes
            .values()
            .filter_map(PathProbe::limit)
            .min()
            .map(|l| l + IPV4_UDP);
        if limit != self.own.path_mtu {
            tracing::warn!(
                path_mtu = ?limit,
                "probing found a path narrower than the hosts' links; the overlay MTU follows"
            );
            self.own.path_mtu = limit;
            self.refresh_mtu = true;
        }
    }

    /// Takes an answer to one of our questions. A peer that now sees us
    /// somewhere else means our address or our NAT's moved: the control
    /// connections are dead (QUIC here cannot migrate), so they are closed
    /// and redialled at once instead of timing out, and the new endpoint
    /// goes out in our record.
    pub(super) async fn on_echo(&mut self, answer: Answer) {
        let Some(i) = self
            .asked
            .iter()
            .position(|q| q.nonce == answer.nonce && q.peer == answer.from)
        else {
            return; // not asked, or answered already (a replay)
        };
        let Some(question) = self.asked.remove(i) else {
            return;
        };
        if let Some(p) = self.path_probes.get_mut(&answer.from) {
            p.reached(question.at);
            if usize::from(answer.len) > netstack::echo::REQUEST_LEN {
                p.answered(answer.len);
            }
        }
        let before = self.echoed.insert(answer.from, answer.seen);
        let now = Instant::now();
        if let Some((_, last)) = self.observed.get_mut(&answer.seen) {
            *last = now;
            return;
        }
        // Seen somewhere new by a peer that saw us elsewhere: we moved.
        if let Some(before) = before.filter(|b| *b != answer.seen) {
            tracing::info!(
                from = %before, to = %answer.seen,
                "peers see this node at a new endpoint; reconnecting the control plane"
            );
            for id in self.shell.connected() {
                self.shell.disconnect(&id);
            }
        }
        if self.observed.len() < MAX_OBSERVED {
            self.observed.insert(answer.seen, (now, now));
            // Tell everyone now.
            if let Err(e) = self.refresh_own().await {
                tracing::warn!("cannot refresh this node's record: {e:#}");
            }
        }
    }
}
