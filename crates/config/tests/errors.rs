//! Every error path: message, line, column and token.
#![allow(clippy::unwrap_used)]

mod common;

use common::{err_at, err_near, errs, ok, ok_all, socks_rule, warnings};
use rsockd_config::{check_startable, parse_str, parse_str_with, ParseOptions};

const M: &str = "socksmethod: none\n";

fn rule(body: &str) -> String {
    socks_rule(body)
}

#[test]
fn diagnostic_display() {
    let t = rule("from: 0/0 to: 0/0 port = htp");
    let d = err_near(
        &t,
        "htp",
        "expected a port number or a known service name after 'port ='",
    );
    assert_eq!(
        d.to_string(),
        "t.conf:2:39: expected a port number or a known service name after 'port =' (near \"htp\")"
    );
    let e = parse_str("x.conf", "debug: x\nnosuch: 1\n").unwrap_err();
    assert_eq!(e.diagnostics.len(), 2);
    assert_eq!(e.to_string().lines().count(), 2);
}

#[test]
fn top_level_junk() {
    err_near("{ }\n", "{", "expected a keyword");
    err_near("socksmethod: none\n}\n", "}", "expected a keyword");
}

#[test]
fn unknown_keywords_with_hints() {
    let d = err_near(
        "sockmethod: none\n",
        "sockmethod",
        "unknown server setting 'sockmethod'",
    );
    assert!(
        d.message.ends_with("did you mean 'socksmethod'?"),
        "{}",
        d.message
    );
    let d = err_near("frobnicate: 1\n", "frobnicate", "unknown server setting");
    assert!(!d.message.contains("did you mean"));
    let d = err_near(
        &rule("from: 0/0 to: 0/0 lgo: connect"),
        "lgo",
        "unknown rule keyword 'lgo'",
    );
    assert!(d.message.contains("did you mean 'log'?"));
    // An unknown word starting a block skips the whole block.
    err_near(
        "sock pass {\n from: 0/0 to: 0/0\n log: connect\n}\n",
        "sock",
        "did you mean 'socks'?",
    );
    err_near("realm: x\n", "realm", "only used by Covenant");
}

#[test]
fn misplaced_keywords() {
    err_near("log: connect\n", "log", "'log' is only valid inside rules");
    err_near(
        "command: connect\n",
        "command",
        "'command' is only valid inside socks rules",
    );
    err_near("via: 1.2.3.4\n", "via", "'via' is only valid in routes");
    err_near(
        "internal.alarm.data.recv: 0 in 5\n",
        "internal.alarm.data.recv",
        "only valid in monitors",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 internal: 1.2.3.4"),
        "internal",
        "is a server setting",
    );
    let c = format!("{M}client pass {{ from: 0/0 to: 0/0 protocol: tcp }}\n");
    err_near(&c, "protocol", "'protocol' is not valid in a client rule");
    let c = format!("{M}client pass {{ from: 0/0 to: 0/0 command: connect }}\n");
    err_near(&c, "command", "not valid in a client rule");
    let c = format!("{M}client pass {{ from: 0/0 to: 0/0 udp.portrange: 1-2 }}\n");
    err_near(&c, "udp.portrange", "not valid in a client rule");
    err_near(
        &rule("from: 0/0 to: 0/0 client: 1"),
        "client",
        "not valid in a socks rule",
    );
}

#[test]
fn settings_after_rules() {
    let t = format!("{M}socks pass {{ from: 0/0 to: 0/0 }}\ntimeout.io: 5\n");
    err_near(
        &t,
        "timeout.io",
        "server settings must come before rules; 'timeout.io' comes after the rule on line 2",
    );
    let t = format!("{M}route {{ }}\ndebug: 1\n");
    let e = errs(&t);
    assert_eq!(e.len(), 2);
    assert!(e[1].message.contains("must come before rules"));
}

#[test]
fn interface_protocol_after_addresses() {
    let t = "internal: 127.0.0.1\ninternal.protocol: ipv4\n";
    err_near(
        t,
        "internal.protocol",
        "must come before the first 'internal:' line (line 1)",
    );
    let t = "external: 127.0.0.1\nexternal.protocol: ipv6\n";
    err_near(
        t,
        "external.protocol",
        "must come before the first 'external:' line (line 1)",
    );
}

#[test]
fn deny_is_not_a_verdict() {
    err_near(
        &format!("{M}socks deny {{ from: 0/0 to: 0/0 }}\n"),
        "deny",
        "use 'block'",
    );
    err_near(
        &format!("{M}deny {{ from: 0/0 to: 0/0 }}\n"),
        "deny",
        "use 'block'",
    );
}

#[test]
fn dante_hard_errors() {
    err_near(
        "compatibility: reuseaddr\n",
        "reuseaddr",
        "'compatibility: reuseaddr' is no longer supported",
    );
    err_near(
        "socket.recvbuf.tcp: 1000\n",
        "socket.recvbuf.tcp",
        "old buffer syntax",
    );
    err_near(
        "socket.sendbuf.udp: 1000\n",
        "socket.sendbuf.udp",
        "old buffer syntax",
    );
    err_near(
        "compatibility: bogus\n",
        "bogus",
        "expected one of sameport, draft-5.05, reuseaddr",
    );
}

#[test]
fn routes_parse_and_their_errors() {
    use rsockd_config::{Upstream, Via};
    let c = ok(&format!(
        "route.maxfail: 2\nroute.badexpire: 60\n{M}\
         route {{ from: 0/0 to: 10.0.0.0/8 port = 80 via: 192.0.2.1 port = 1080\n\
         proxyprotocol: socks_v4 socks_v5\n command: connect\n method: none\n}}\n\
         route {{ from: 0/0 to: .example.com via: proxy.example.net port = 3128\n proxyprotocol: http_v1.0\n}}\n\
         route {{ from: 0/0 to: 0/0 via: direct }}\n"
    ))
    .config;
    assert_eq!((c.route_maxfail, c.route_badexpire), (2, 60));
    assert_eq!(c.routes.len(), 3);
    assert_eq!(
        c.routes[0].via,
        Some(Via::Proxy {
            host: "192.0.2.1".into(),
            port: 1080
        })
    );
    assert_eq!(c.routes[0].upstream, [Upstream::SocksV4, Upstream::SocksV5]);
    assert_eq!(c.routes[1].upstream, [Upstream::Http]);
    assert_eq!(c.routes[2].via, Some(Via::Direct));
    assert_eq!(c.routes[2].number, 3);
    let route = |body: &str| format!("{M}route {{ from: 0/0 to: 0/0\n{body}\n}}\n");
    err_near(
        &route("via: 192.0.2.1"),
        "192.0.2.1",
        "needs the proxy's port",
    );
    err_near(
        &route("via: 192.0.2.1 port = 1080\nproxyprotocol: socks_v6"),
        "socks_v6",
        "unknown proxy protocol",
    );
    err_near(
        &route("via: 192.0.2.1 port = 1080\nproxyprotocol: upnp"),
        "upnp",
        "not built into rsockd",
    );
    err_near(
        &route("via: 192.0.2.1 port = 1080\nproxyprotocol: http\nmethod: username"),
        "route",
        "method username is a SOCKS5 method",
    );
    // Dante refuses every command but connect in a proxy route; we chain bind and
    // udpassociate through SOCKS5 only.
    err_near(
        &route("via: 192.0.2.1 port = 1080\nproxyprotocol: http\ncommand: connect bind"),
        "route",
        "serverchaining of command bind needs proxyprotocol socks_v5; an upstream speaking http",
    );
    ok(&route(
        "via: 192.0.2.1 port = 1080\nproxyprotocol: socks_v5\ncommand: bind udpassociate",
    ));
    ok(&route("via: direct\ncommand: bind udpassociate"));
    let c = ok(&route("via: 192.0.2.1 port = 1080\nmethod: none username"));
    assert_eq!(c.config.routes[0].socksmethod.len(), 2);
    err_near(&route(""), "route", "has no 'via:'");
}

#[test]
fn error_logs_by_errno_globally_and_in_rules() {
    let c = ok(&format!(
        "external.log.warning.error: ECONNREFUSED no-route\n\
         internal.log.err.error: system-any\n{M}\
         socks pass {{ from: 0/0 to: 0/0\n external.log.notice.error: dns-any EAI_AGAIN\n}}\n"
    ))
    .config;
    assert_eq!(c.error_logs.len(), 2);
    let e = &c.error_logs[0];
    assert_eq!(e.side, rsockd_config::Side::External);
    assert_eq!(e.level, "warning");
    assert!(e.has_errno(111) && e.has_errno(101) && !e.has_errno(104));
    assert!(c.error_logs[1].has_errno(104));
    let r = &c.socks_rules[0].error_logs[0];
    assert!(r.has_gai(-2) && r.has_gai(-3) && !r.has_errno(111));
    // Dante's level names are syslog's: `err`, not `error`.
    err_at(
        "external.log.error.error: ECONNREFUSED\n",
        1,
        1,
        "unknown loglevel: \"error\"",
    );
    err_at(
        "internal.log.warning.error: ECONNREFUSED EBOGUS\n",
        1,
        42,
        "unknown error symbol \"EBOGUS\"",
    );
    // The TCP option forms.
    let c = ok(&format!(
        "internal.log.info.tcp.enabled: timestamps sack\n{M}\
         socks pass {{ from: 0/0 to: 0/0\n external.log.notice.tcp.disabled: ecn wscale\n}}\n"
    ))
    .config;
    assert_eq!(c.error_logs[0].what, rsockd_config::LogWhat::TcpEnabled);
    assert_eq!(c.error_logs[0].symbols, ["timestamps", "sack"]);
    assert!(!c.error_logs[0].has_errno(111));
    let r = &c.socks_rules[0].error_logs[0];
    assert_eq!(
        (r.what, r.side),
        (
            rsockd_config::LogWhat::TcpDisabled,
            rsockd_config::Side::External
        )
    );
    err_at(
        "internal.log.info.tcp.enabled: sack nagle\n",
        1,
        37,
        "unknown TCP option \"nagle\"",
    );
    err_at(
        "internal.log.warning.errors: ECONNREFUSED\n",
        1,
        1,
        "expected 'internal.log.warning.error'",
    );
}

#[test]
fn socket_options_globally_and_in_rules() {
    use rsockd_config::sockopts::SockLevel;
    use rsockd_config::{OptName, Side};
    let c = ok(&format!(
        "internal.tcp.tcp_nodelay: 1\n\
         external.ip.ip_tos.dscp: af11\n\
         external.ip.ip_tos.prec: flash\n\
         internal.tcp.1: 1\n\
         internal.socket.so_linger: 5\n\
         internal.tcp.so_rcvbuf: 65536\n{M}\
         client pass {{ from: 0/0 to: 0/0 internal.socket.so_sndbuf: 32768 }}\n\
         socks pass {{ from: 0/0 to: 0/0\n external.ip.ip_tos.tos: lowdelay\n}}\n"
    ))
    .config;
    let o = &c.sockopts;
    assert_eq!(o.len(), 6);
    assert_eq!(
        (o[0].side, o[0].level, &o[0].option, o[0].value),
        (
            Side::Internal,
            SockLevel::Tcp,
            &OptName::Named("tcp_nodelay".into()),
            1
        )
    );
    assert_eq!((o[1].side, o[1].value), (Side::External, 40));
    assert_eq!(o[2].value, 0x60);
    assert_eq!(o[3].option, OptName::Number(1));
    // Socket-level options are accepted under tcp., as Dante does, and kept at their level.
    assert_eq!(o[5].level, SockLevel::Socket);
    assert_eq!(o[5].key(), "internal.socket.so_rcvbuf");
    assert_eq!(c.client_rules[0].sockopts[0].value, 32768);
    assert_eq!(c.socks_rules[0].sockopts[0].value, 0x10);
    // A known option at another level: Dante's warning, and it is set where it belongs.
    let w = warnings(&format!("internal.socket.tcp_nodelay: 1\n{M}"));
    assert!(
        w.iter().any(|w| w.contains(
            "to our knowledge socket option \"tcp_nodelay\" is not valid at the protocol level given (socket)"
        )),
        "{w:?}"
    );
    // In rules, as Dante: a warning for options that matter before the connection exists
    // (not for ip_tos), and no external side in a client rule.
    let w = warnings(&format!(
        "{M}client pass {{ from: 0/0 to: 0/0\n internal.tcp.tcp_nodelay: 1\n internal.ip.ip_tos: 8\n}}\n"
    ));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(
        "the socket option \"tcp_nodelay\" can only be correctly applied at pre-connection"
    ));
    err_at(
        &format!("{M}client pass {{ from: 0/0 to: 0/0\n external.tcp.tcp_maxseg: 1000\n}}\n"),
        3,
        2,
        "can not set socket options for the external side in a client-rule",
    );
    err_at(
        "internal.tcp.tcp_bogus: 1\n",
        1,
        1,
        "unknown socket option \"tcp_bogus\"",
    );
    err_at(
        "external.ip.ip_tos.ecn: 1\n",
        1,
        1,
        "unknown socket option \"ip_tos.ecn\"",
    );
    err_at(
        "external.ip.ip_tos.dscp: af99\n",
        1,
        26,
        "unknown ip_tos.dscp value \"af99\"",
    );
    err_at(
        "internal.tcp.tcp_nodelay: yes\n",
        1,
        27,
        "expected a number after 'internal.tcp.tcp_nodelay:'",
    );
    err_at(
        "internal.socket.so_rcvbuf: -1\n",
        1,
        28,
        "expected a number",
    );
    err_at(
        "internal.tcp.tcp_nodelay: 1 2\n",
        1,
        29,
        "unexpected text after the value",
    );
}

#[test]
fn not_supported_yet_rule_options() {
    for (opt, word) in [
        ("gssapi.servicename: rcmd", "gssapi.servicename"),
        ("gssapi.keytab: FILE:/k", "gssapi.keytab"),
        ("gssapi.enctype: integrity", "gssapi.enctype"),
        ("ldap.url: ldap://x", "ldap.url"),
    ] {
        let t = rule(&format!("from: 0/0 to: 0/0\n{opt}\n"));
        err_near(&t, word, &format!("'{word}' is not supported yet"));
    }
    // Refused as Dante's Linux build refuses them, with the reason.
    for (opt, word, why) in [
        (
            "hostid: 1.2.3.4",
            "hostid",
            "hostid is not supported on this system",
        ),
        (
            "hostindex: 1",
            "hostindex",
            "hostid is not supported on this system",
        ),
        ("bsdauth.stylename: x", "bsdauth.stylename", "bsd_auth(3)"),
        ("pac.sid: x", "pac.sid", "not in Dante's Linux build"),
    ] {
        let t = rule(&format!("from: 0/0 to: 0/0\n{opt}\n"));
        let d = err_near(&t, word, why);
        assert!(d.message.contains("Dante's Linux build"), "{}", d.message);
    }
    let c = format!("{M}client pass {{ from: 0/0 to: 0/0 clientcompatibility: necgssapi }}\n");
    err_near(&c, "clientcompatibility", "is not supported yet");
    err_near(
        &format!("{M}hostid pass {{ from: 0/0 to: 0/0 }}\n"),
        "hostid",
        "hostid is not supported on this system",
    );
}

#[test]
fn deprecated_then_not_yet() {
    let t = rule("from: 0/0 to: 0/0\ngssapi.servicename: rcmd\n");
    let e = parse_str("t.conf", &t).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    assert!(e.diagnostics[0]
        .message
        .contains("'gssapi.servicename' is not supported yet"));
    // The deprecated spelling of an implemented option applies, with a warning.
    let t = rule("from: 0/0 to: 0/0\npamservicename: vpn\n");
    let l = parse_str("t.conf", &t).expect("parses");
    assert_eq!(
        l.config.socks_rules[0].pam_servicename.as_deref(),
        Some("vpn")
    );
    assert!(
        l.warnings[0].message.contains("deprecated"),
        "{:?}",
        l.warnings
    );
}

#[test]
fn methods_not_supported_yet() {
    for m in ["gssapi", "ldapauth"] {
        let t = format!("socksmethod: none {m}\n");
        err_near(&t, m, &format!("'{m}' is not supported yet"));
    }
    // What Dante's Linux build refuses is refused, with the reason.
    err_near(
        "socksmethod: none bsdauth\n",
        "bsdauth",
        "Dante's Linux build refuses it too",
    );
    for m in [
        "username",
        "rfc931",
        "pam.any",
        "pam.address",
        "pam.username",
    ] {
        let t = format!("socksmethod: none {m}\n");
        let l = parse_str("t.conf", &t).expect("implemented methods parse");
        assert_eq!(l.config.socksmethod[1].name(), m);
    }
}

#[test]
fn method_errors() {
    err_near(
        "socksmethod: nonee\n",
        "nonee",
        "unknown method; expected one of: none username",
    );
    err_near(
        "clientmethod: username\n",
        "username",
        "'username' cannot be a clientmethod",
    );
    err_at(
        "socksmethod:\n",
        1,
        13,
        "expected a value after 'socksmethod:'",
    );
    let t = "socksmethod: none\nsocks pass { from: 0/0 to: 0/0 socksmethod: username }\n";
    let e = errs(t);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0]
        .message
        .contains("'username' is not in the global socksmethod list (none)"));
    // Dante's default clientmethod is `none`: a rule's rfc931 is not in it.
    let opts = ParseOptions {
        allow_unsupported: true,
        ..Default::default()
    };
    let t = "socksmethod: none\nclient pass { from: 0/0 to: 0/0 clientmethod: rfc931 }\n";
    let e = parse_str_with("t.conf", t, &opts).unwrap_err();
    assert!(e.diagnostics[0]
        .message
        .contains("not in the global clientmethod list (none)"));
}

#[test]
fn rule_address_errors() {
    err_near(
        &rule("from: 10.0.0.0 to: 0/0"),
        "10.0.0.0",
        "expected a netmask after the address, e.g. '10.0.0.0/32'",
    );
    err_near(&rule("from: ::1 to: 0/0"), "::1", "e.g. '::1/128'");
    err_near(
        &rule("from: 10.0.0.0/255.0.0.0 to: 0/0"),
        "255.0.0.0",
        "the legal range is 0 - 32",
    );
    err_near(
        &rule("from: 10.0.0.0/33 to: 0/0"),
        "33",
        "legal range is 0 - 32",
    );
    err_near(
        &rule("from: ::/129 to: 0/0"),
        "129",
        "legal range is 0 - 128",
    );
    err_near(&rule("from: 0/8 to: 0/0"), "0", "the only legal value is 0");
    err_near(&rule("from: 0 to: 0/0"), "0", "expected '0/0'");
    err_near(&rule("from: lo/8 to: 0/0"), "lo", "takes no netmask");
    err_near(
        &rule("from: 10.0.0.256/8 to: 0/0"),
        "10.0.0.256",
        "not a valid IPv4 or IPv6 address",
    );
    err_near(
        &rule("from: ::ffff:1.2.3.4/128 to: 0/0"),
        "::ffff:1.2.3.4",
        "IPv4-mapped",
    );
    err_near(
        &rule("from: . to: 0/0"),
        ".",
        "expected a domain name after '.'",
    );
    let t = rule("from: to: 0/0");
    err_near(&t, "to", "expected an address after 'from:'");
    let t = format!("{M}socks pass {{ from:\n 0/0 to: 0/0 }}\n");
    let e = errs(&t);
    assert!(e[0].message.contains("expected an address after 'from:'"));
    err_near(&rule("from: 10.0.0.0/x to: 0/0"), "x", "expected a number");
}

#[test]
fn scope_in_rule_address_is_dropped_with_a_warning() {
    let l = ok(&rule("from: fe80::1%eth0/64 to: 0/0"));
    assert!(l
        .warnings
        .iter()
        .any(|w| w.message.contains("scope '%eth0' is ignored")));
}

#[test]
fn port_errors() {
    err_near(
        &rule("from: 0/0 to: 0/0 port = 65536"),
        "65536",
        "number is too large; the maximum is 65535",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 port = 08"),
        "08",
        "expected a number after 'port ='",
    );
    let t = rule("from: 0/0 to: 0/0 port 100-1");
    let (l, c) = common::find(&t, "-1");
    err_at(
        &t,
        l,
        c + 1,
        "end port (1) can not be less than start port (100)",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 port foo"),
        "foo",
        "expected an operator",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 port ="),
        "}",
        "expected a port number or a service name after 'port ='",
    );
}

#[test]
fn server_address_errors() {
    err_near(
        "internal: 127.0.0.1/32 port = 1080\n",
        "127.0.0.1",
        "'internal:' takes an address without a netmask",
    );
    err_near(
        "internal: 0/0\n",
        "0",
        "expected an IP address, interface name or host name",
    );
    err_near(
        "internal: .example.com\n",
        ".example.com",
        "expected an IP address",
    );
    err_near(
        "internal: 127.0.0.1 port 1-2\n",
        "1-2",
        "takes one port, not a range",
    );
    err_at(
        "internal:\n",
        1,
        10,
        "expected an address after 'internal:'",
    );
    err_near(
        "internal: 127.0.0.1 127.0.0.2\n",
        "127.0.0.2",
        "unexpected text after the value of 'internal'",
    );
    let e = errs("external: 127.0.0.1 port = 5\n");
    assert!(e[0].message.contains("'external:' takes no port"));
    err_near("external: 127.0.0.1/8\n", "127.0.0.1", "without a netmask");
}

#[test]
fn structure_errors() {
    err_near("debug 1\n", "1", "expected ':' after 'debug'");
    err_near(
        &format!("{M}socks pass from: 0/0 to: 0/0\n"),
        "from",
        "expected '{' after 'socks pass'",
    );
    err_near(
        &format!("{M}socks {{ from: 0/0 to: 0/0 }}\n"),
        "{",
        "expected 'pass' or 'block' after 'socks'",
    );
    let t = format!("{M}socks pass {{ from: 0/0 to: 0/0\n");
    err_at(
        &t,
        2,
        1,
        "missing '}' at the end of the rule that starts on line 2",
    );
    let t = format!("{M}socks pass {{ from: 0/0 to: 0/0\nsocks block {{ from: 0/0 to: 0/0 }}\n");
    err_at(&t, 2, 1, "missing '}'");
    err_at(
        &format!("{M}socks pass {{ from: 0/0 }}\n"),
        2,
        1,
        "a rule needs both 'from:' and 'to:'",
    );
    let t = rule("from: 0/0 to: 0/0 from: 0/0");
    let (l, c) = common::find(&t, "from: 0/0 }");
    err_at(&t, l, c, "'from:' given twice in one rule");
    err_near(&rule("from: 0/0 to: 0/0 ="), "=", "expected a rule keyword");
    err_near(
        &rule("from: 0/0\nport = 80\nto: 0/0"),
        "port",
        "must follow the address",
    );
}

#[test]
fn value_errors() {
    err_near("debug: x\n", "x", "expected a number after 'debug:'");
    err_near(
        "debug: 1 2\n",
        "2",
        "unexpected text after the value of 'debug'",
    );
    err_near(
        "timeout.io: 99999999999\n",
        "99999999999",
        "number is too large; the maximum is 4294967295",
    );
    err_near(
        "timeout.connect: -1\n",
        "-1",
        "expected a number after 'timeout.connect:'",
    );
    err_near("udp.connectdst: maybe\n", "maybe", "expected 'yes' or 'no'");
    err_near(
        "external.rotation: sideways\n",
        "sideways",
        "expected 'none', 'route', 'same-same', 'random' or 'user'",
    );
    err_near(
        "internal.protocol: ipv5\n",
        "ipv5",
        "expected 'ipv4' or 'ipv6'",
    );
    err_near(
        "logoutput: syslog/nosuch\n",
        "syslog/nosuch",
        "unknown syslog facility",
    );
    err_at(
        "user.privileged:\n",
        1,
        17,
        "expected a user name after 'user.privileged:'",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 command: connect bond"),
        "bond",
        "unknown command",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 protocol: sctp"),
        "sctp",
        "unknown protocol",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 proxyprotocol: http"),
        "http",
        "only meaningful in routes",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 proxyprotocol: socks_v6"),
        "socks_v6",
        "unknown proxy protocol",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 log: everything"),
        "everything",
        "unknown log keyword",
    );
    err_near(
        &rule("from: 0/0 to: 0/0 timeout.io: soon"),
        "soon",
        "expected a number after 'timeout.io:'",
    );
}

#[test]
fn udp_portrange_errors() {
    let opts = ParseOptions {
        allow_unsupported: true,
        ..Default::default()
    };
    let e = parse_str_with(
        "t",
        &rule("from: 0/0 to: 0/0 udp.portrange: 3000-2000"),
        &opts,
    )
    .unwrap_err();
    assert!(e.diagnostics[0]
        .message
        .contains("end port (2000) can not be less than start port (3000)"));
    let e = parse_str_with("t", &rule("from: 0/0 to: 0/0 udp.portrange: 3000"), &opts).unwrap_err();
    assert!(e.diagnostics[0]
        .message
        .contains("expected a range 'FIRST-LAST'"));
}

#[test]
fn errors_are_collected_in_file_order() {
    let t = "debug: x\nsockmethod: none\nsocksmethod: none\nsocks pass { from: 1.2.3.4 to: 0/0 }\n";
    let e = errs(t);
    let lines: Vec<u32> = e.iter().map(|d| d.line).collect();
    assert_eq!(lines, vec![1, 2, 4], "{e:#?}");
}

#[test]
fn too_many_errors_stops() {
    let t = "x: 1\n".repeat(200);
    let e = errs(&t);
    assert!(e.len() <= 51);
    assert!(e.last().unwrap().message.contains("too many errors"));
}

#[test]
fn startable() {
    let c = ok_all("internal: 127.0.0.1\nexternal: eth0\n").config;
    assert!(check_startable(&c).is_ok());
    let c = ok_all("").config;
    let e = check_startable(&c).unwrap_err().to_string();
    assert_eq!(
        e,
        "no internal address given for server to listen for clients on\n\
         no external address given for server to use"
    );
    let c = ok_all("internal: 127.0.0.1\n").config;
    assert_eq!(
        check_startable(&c).unwrap_err().to_string(),
        "no external address given for server to use"
    );
}

#[test]
fn load_reports_unreadable_files() {
    let e = rsockd_config::load(std::path::Path::new("/nonexistent/sockd.conf")).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("/nonexistent/sockd.conf: cannot read the config file"));
    let p = format!(
        "{}/tests/data/danted-basic.conf",
        env!("CARGO_MANIFEST_DIR")
    );
    assert!(rsockd_config::load(std::path::Path::new(&p)).is_ok());
}

#[test]
fn announce_address_errors() {
    for bad in ["0.0.0.0", "::", "eth0", "proxy.example.com"] {
        err_near(
            &format!("rsockd.announce.udp: {bad}\n"),
            bad,
            "expected an IPv4 or IPv6 address (not a wildcard, name or interface) after \
             'rsockd.announce.udp:'",
        );
    }
    err_near(
        "rsockd.announce.bind: 10.0.0.0/8\n",
        "/8",
        "unexpected text after the value of 'rsockd.announce.bind'",
    );
    let c = ok("rsockd.announce.udp: 203.0.113.7\nrsockd.announce.bind: 2001:db8::7\n");
    assert_eq!(c.config.announce_udp, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(c.config.announce_bind, Some("2001:db8::7".parse().unwrap()));
    assert!(ok("compatibility: sameport\n").config.compat_sameport);
    let sh = ok("srchost: nodnsunknown checkreplyauth\n").config.srchost;
    assert!(sh.nodnsunknown && sh.checkreplyauth && !sh.nodnsmismatch);
}

#[test]
fn balancer_and_agent_settings() {
    let c = ok(
        "rsockd.proxyprotocol.from: 10.0.0.0/8 fd00::/64 127.0.0.7/32\n\
                rsockd.proxyprotocol.from: 10.1.2.3/8\n\
                rsockd.agent: 127.0.0.1 port = 5555\nrsockd.agent: ::1 port = 5556\n",
    );
    let nets: Vec<String> = c
        .config
        .proxyprotocol_from
        .iter()
        .map(|n| n.to_string())
        .collect();
    // Host bits are cleared and a repeated network is kept once.
    assert_eq!(nets, ["10.0.0.0/8", "fd00::/64", "127.0.0.7/32"]);
    assert_eq!(c.config.agent.len(), 2);
    assert_eq!(c.config.agent[1].port, 5556);
    assert_eq!(
        ok("rsockd.drain.timeout: 0\n").config.drain_timeout,
        Some(0)
    );
    assert_eq!(ok("").config.drain_timeout, None);
    err_near(
        "rsockd.drain.timeout: soon\n",
        "soon",
        "expected a number after 'rsockd.drain.timeout:'",
    );
    for (text, near, msg) in [
        (
            "rsockd.proxyprotocol.from: 10.0.0.1\n",
            "10.0.0.1",
            "expected a netmask after the address, e.g. '10.0.0.1/32'",
        ),
        (
            "rsockd.proxyprotocol.from: lb.example.com/32\n",
            "lb.example.com",
            "'rsockd.proxyprotocol.from:' takes IP networks (ADDRESS/BITS)",
        ),
        (
            "rsockd.proxyprotocol.from: 10.0.0.0/33\n",
            "33",
            "bad netmask; the legal range is 0 - 32",
        ),
    ] {
        err_near(text, near, msg);
    }
    // Nothing after the colon, or no port: the error points at the end of the line.
    err_at(
        "rsockd.proxyprotocol.from:\n",
        1,
        27,
        "expected a network after 'rsockd.proxyprotocol.from:'",
    );
    err_at(
        "rsockd.agent: 127.0.0.1\n",
        1,
        24,
        "'rsockd.agent:' needs a port: 'ADDRESS port = P'",
    );
    err_at(
        "srchost: nodnsunknown nodns\n",
        1,
        23,
        "expected one of nodnsmismatch, nodnsunknown, checkreplyauth after 'srchost:'",
    );
}

#[test]
fn session_limit_errors_name_line_and_column() {
    for (opt, near, msg) in [
        (
            "session.max: -1",
            "-1",
            "expected a number after 'session.max:'",
        ),
        ("session.max: 0", "", "'session.max:' must be at least 1"),
        (
            "session.max: zz",
            "zz",
            "expected a number after 'session.max:'",
        ),
        (
            "session.throttle: 5",
            "",
            "expected 'SESSIONS/SECONDS' after 'session.throttle:'",
        ),
        ("session.throttle: 5/0", "", "'/' must be at least 1"),
        (
            "session.inheritable: maybe",
            "maybe",
            "expected 'yes' or 'no'",
        ),
        (
            "session.bogus: 1",
            "session.bogus",
            "unknown rule keyword 'session.bogus'",
        ),
    ] {
        let t = rule(&format!("from: 0/0 to: 0/0\n{opt}\n"));
        let e = errs(&t);
        assert!(
            e.iter().any(|d| d.line == 3 && d.message.contains(msg)),
            "{opt}: {e:#?}"
        );
        if !near.is_empty() {
            err_near(&t, near, msg);
        }
    }
    let t = rule("from: 0/0 to: 0/0\nsession.state.key: somewhere\n");
    err_near(
        &t,
        "somewhere",
        "unknown session.state.key; expected from or user",
    );
    let t = rule("from: 0/0 to: 0/0\nsession.state.key: hostid\n");
    err_near(&t, "hostid", "hostid is not supported on this system");
}

#[test]
fn redirect_errors_name_line_and_column() {
    for (opt, near, msg) in [
        (
            "redirect sideways: 1.2.3.4",
            "sideways",
            "expected 'from:' or 'to:' after 'redirect'",
        ),
        (
            "redirect to: proxy.example",
            "proxy.example",
            "'redirect to:' takes an IP address",
        ),
        (
            "redirect to: 10.0.0.0/8",
            "10.0.0.0",
            "'redirect to:' takes an address, not a network",
        ),
        (
            "redirect to: 10.0.0.1 port > 80",
            ">",
            "a redirect takes one port: 'port = P'",
        ),
    ] {
        let t = rule(&format!("from: 0/0 to: 0/0\n{opt}\n"));
        err_near(&t, near, msg);
    }
    // `to:` is defined for connect only; a rule that may match bind or udpassociate is refused.
    for cmds in ["", "command: connect bind\n", "command: udpassociate\n"] {
        let t = format!(
            "socksmethod: none\nsocks pass {{ from: 0/0 to: 0/0\n{cmds}redirect to: 10.0.0.1 }}\n"
        );
        let e = errs(&t);
        assert!(
            e.iter().any(|d| d.line == 2
                && d.message
                    .contains("'redirect to:' changes only the target of a connect")),
            "{cmds:?}: {e:#?}"
        );
    }
    // `from:` applies to every command.
    ok("socksmethod: none\nsocks pass { from: 0/0 to: 0/0 redirect from: 127.0.0.2 }\n");
    // Socks rules only: a client rule has no target to redirect.
    let t = "socksmethod: none\nclient pass { from: 0/0 to: 0/0 redirect to: 10.0.0.1 }\n";
    let e = errs(t);
    assert!(
        e.iter()
            .any(|d| d.line == 2 && d.message.contains("redirect")),
        "{e:#?}"
    );
}

#[test]
fn monitor_errors_name_line_and_column_in_dantes_words() {
    let mon =
        |body: &str| format!("{M}socks pass {{ from: 0/0 to: 0/0 }}\nmonitor {{\n{body}\n}}\n");
    for (body, near, msg) in [
        (
            "from: 0/0 to: 0/0\ninternal.alarm.nosuch: 1 in 1",
            "internal.alarm.nosuch",
            "'internal.alarm.nosuch' is not valid in a monitor",
        ),
        (
            "from: 0/0 to: 0/0\nlog: connect",
            "log",
            "'log' is not valid in a monitor",
        ),
        (
            "to: 0/0\ninternal.alarm.data.recv: 1 in 1",
            "monitor",
            "a monitor needs both 'from:' and 'to:'",
        ),
        (
            "from: 0/0 to: 0/0 protocol: udp\ninternal.alarm.data.recv: 1 in 1",
            "monitor",
            "'protocol: udp' is not supported yet: monitors watch TCP sessions",
        ),
        (
            "from: 0/0 to: 0/0 hostid: 1.2.3.4\ninternal.alarm.data.recv: 1 in 1",
            "hostid",
            "hostid is not supported on this system",
        ),
    ] {
        err_near(&mon(body), near, msg);
    }
    err_at(
        &mon("from: 0/0 to: 0/0\ninternal.alarm.data.recv: 1 in 0"),
        5,
        32,
        "number (0) must be > 0",
    );
    err_at(
        &mon("from: 0/0 to: 0/0\ninternal.alarm.disconnect: 0/2 in 1"),
        5,
        28,
        "number (0) must be > 0",
    );
    err_at(
        &mon("from: 0/0 to: 0/0\ninternal.alarm.disconnect: 3/2 in 1"),
        5,
        30,
        "internal session limit value (2) cannot be lower than disconnect limit (3)",
    );
    err_at(
        &mon("from: 0/0 to: 0/0\nexternal.alarm.data.send: 1"),
        5,
        28,
        "expected 'in SECONDS' after the value of 'external.alarm.data.send:'",
    );
    // Dante's warning for a monitor without alarms.
    let w = common::warnings(&mon("from: 0/0 to: 0/0"));
    assert!(
        w.iter()
            .any(|w| w.contains("monitor has no alarms configured.  Is this intended?")),
        "{w:?}"
    );
}

#[test]
fn cpu_errors_name_line_and_column() {
    err_near(
        "cpu.schedule.mother: SCHED_FIFO/20\n",
        "SCHED_FIFO",
        "unknown scheduling policy; expected other, fifo, rr, batch or idle",
    );
    err_near(
        "cpu.schedule.nosuch: fifo/1\n",
        "cpu.schedule.nosuch",
        "unknown process 'nosuch'",
    );
    err_near(
        "cpu.mask.relay: x\n",
        "x",
        "expected a CPU number (0 to 1023) or 'any'",
    );
    err_near(
        "cpu.other.relay: 1\n",
        "cpu.other.relay",
        "expected 'cpu.schedule.<process>'",
    );
    err_near(
        "cpu.schedule.relay: fifo 1\n",
        "1",
        "expected '/PRIORITY' after the policy",
    );
}

#[test]
fn rotation_none_warns_only_when_a_family_has_two_external_addresses() {
    let base = "internal: 127.0.0.1\nsocksmethod: none\n";
    let warned = |ext: &str| {
        warnings(&format!("{base}{ext}"))
            .iter()
            .any(|w| w.contains("more than one external address given"))
    };
    // One of each family (the built-in default): both are used.
    assert!(!warned("external: 0.0.0.0\nexternal: ::\n"));
    assert!(!warned("external: 192.0.2.1\nexternal: 2001:db8::1\n"));
    assert!(warned("external: 192.0.2.1\nexternal: 192.0.2.2\n"));
    // An interface or a name may have several addresses of a family.
    assert!(warned("external: eth0\nexternal: ::\n"));
    assert!(!warned(
        "external.rotation: route\nexternal: 192.0.2.1\nexternal: 192.0.2.2\n"
    ));
}
