use super::*;

#[test]
fn base36_works() {
    assert_eq!(base36(0), "0");
    assert_eq!(base36(35), "z");
    assert_eq!(base36(36), "10");
}

#[test]
fn underlay_range() {
    assert!(check_underlay(Ipv4Addr::new(198, 18, 0, 1)).is_ok());
    assert!(check_underlay(Ipv4Addr::new(198, 19, 255, 1)).is_ok());
    assert!(check_underlay(Ipv4Addr::new(198, 20, 0, 1)).is_err());
    assert!(check_underlay(Ipv4Addr::new(10, 0, 0, 1)).is_err());
}
