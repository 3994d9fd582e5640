use super::*;

#[test]
fn subnets() {
    assert_eq!(
        parse_subnet("192.168.2.0/24").unwrap(),
        ("192.168.2.0".parse().unwrap(), 24)
    );
    assert!(parse_subnet("10.0.0.0/8").is_ok());
    assert!(parse_subnet("172.16.0.0/12").is_ok());
    assert!(parse_subnet("172.31.7.0/24").is_ok());
    assert!(parse_subnet("192.168.2.1/24").is_err(), "host bits");
    assert!(parse_subnet("198.18.0.0/24").is_err(), "underlay");
    assert!(parse_subnet("8.8.8.0/24").is_err(), "public");
    assert!(parse_subnet("172.32.0.0/24").is_err(), "outside 172.16/12");
    assert!(parse_subnet("192.168.0.0/15").is_err(), "prefix too short");
    assert!(parse_subnet("10.0.0.0/31").is_err());
    assert!(parse_subnet("10.0.0.0").is_err());
}

#[test]
fn rules_differ_by_kind_and_firewall() {
    let net = "192.168.2.0/24";
    let c = ruleset(NatKind::Cone, Firewall::Filtering, net, None);
    let s = ruleset(NatKind::Symmetric, Firewall::Filtering, net, None);
    assert!(c.contains("ip saddr 192.168.2.0/24 masquerade\n"));
    assert!(s.contains("masquerade random,fully-random\n"));
    assert!(c.contains("drop") && !c.contains("dnat to"));
    let open = ruleset(NatKind::Cone, Firewall::Open, net, None);
    assert!(
        !open.contains("chain forward") && !open.contains("chain input"),
        "a bare NAT instance filters nothing"
    );
    // Both stand behind the internet's hops: a short-lived datagram dies.
    for rules in [&c, &open] {
        assert!(
            rules.contains("priority raw; policy accept;\n    iifname \"wan\" ip ttl <= 4 drop")
        );
    }
    let vm = Some("192.168.2.10".parse().unwrap());
    let one = ruleset(NatKind::OneToOne, Firewall::Filtering, net, vm);
    assert!(one.contains("dnat to 192.168.2.10") && one.contains("ct status dnat accept"));
    assert!(
        c.starts_with("table ip cladnet_nat\ndelete table ip cladnet_nat\n"),
        "replaces"
    );
}
