use super::*;

#[test]
fn cidr_cover() {
    let n = parse_v4_cidr("100.64.0.1/24").expect("cidr");
    assert!(covers(n, parse_v4_cidr("100.64.0.2/32").expect("cidr")));
    assert!(!covers(n, parse_v4_cidr("100.64.1.2/32").expect("cidr")));
    assert!(!covers(n, parse_v4_cidr("100.64.0.0/16").expect("cidr")));
}

#[test]
fn conf_text() {
    let c = IfaceConf {
        private_key: "PRIV".into(),
        listen_port: 51820,
        addresses: vec!["100.64.0.1/24".into()],
        mtu: Some(1400),
        peers: vec![PeerConf {
            public_key: "PUB".into(),
            endpoint: Some("198.18.0.2:51820".parse().expect("addr")),
            allowed_ips: vec!["100.64.0.2/32".into()],
            persistent_keepalive: Some(25),
            ..PeerConf::default()
        }],
    };
    let q = c.wg_quick();
    assert!(q.contains("Address = 100.64.0.1/24\nMTU = 1400\n"));
    assert!(q.contains("[Peer]\nPublicKey = PUB\nEndpoint = 198.18.0.2:51820\nAllowedIPs = 100.64.0.2/32\nPersistentKeepalive = 25\n"));
    assert!(!c.wg_setconf().contains("Address"));
}

#[test]
fn dump_parse() -> Result<()> {
    let d =
        "priv\tpubA\t51820\toff\npubB\t(none)\t198.18.0.2:51820\t100.64.0.2/32\t0\t10\t20\toff\n";
    let v = wg_dump_to_json("x", d)?;
    assert_eq!(v["listen_port"], 51820);
    assert_eq!(v["peers"][0]["endpoint"], "198.18.0.2:51820");
    assert!(v["peers"][0]["last_handshake_ms"].is_null());
    assert_eq!(v["peers"][0]["tx_bytes"], 20);
    Ok(())
}
