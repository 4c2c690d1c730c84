//! The command line and configuration checks, compared with danted where Dante behaves the same.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn help_version_licence() {
    let (c, out, _) = run(&["-h"]);
    assert_eq!(c, 0);
    assert!(out.contains("usage: rsockd [-DLVdhnv] [-N number] [-f file] [-p file]"));
    let (c, out, _) = run(&["-v"]);
    assert_eq!(c, 0);
    assert!(out.starts_with("rsockd v"));
    let (_, out2, _) = run(&["-vv"]);
    assert!(out2.contains("build:"));
    let (c, out, _) = run(&["-L"]);
    assert_eq!(c, 0);
    assert!(out.contains("licence"));
    let (c, _, err) = run(&["-x"]);
    assert_eq!(c, 1);
    assert!(err.contains("invalid option -- 'x'"), "{err}");
    let (c, _, err) = run(&["-N", "zero"]);
    assert_eq!(c, 1, "{err}");
}

#[test]
fn verify_good_and_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.conf",
        "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n\
         client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 0/0 }\n",
    );
    let (c, _, err) = run(&["-V", "-f", &good]);
    assert_eq!(c, 0, "{err}");
    let bad = write(
        &dir,
        "bad.conf",
        "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n\
         client pass { from: 0/0 to: 0/0 port = nosuchservice }\n",
    );
    let (c, _, err) = run(&["-V", "-f", &bad]);
    assert_eq!(c, 1);
    assert!(
        err.contains("bad.conf:4:"),
        "error names file and line: {err}"
    );
    let missing = dir.path().join("nope.conf").display().to_string();
    let (c, _, err) = run(&["-V", "-f", &missing]);
    assert_eq!(c, 1);
    assert!(err.contains("nope.conf"), "{err}");
}

#[test]
fn unsupported_keyword_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "u.conf",
        "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n\
         client pass { from: 0/0 to: 0/0 }\nsocks pass { from: 0/0 to: 0/0 gssapi.servicename: rcmd }\n",
    );
    let (c, _, err) = run(&["-V", "-f", &f]);
    assert_eq!(c, 1);
    assert!(err.contains("u.conf:5:"), "{err}");
    assert!(err.contains("is not supported yet"), "{err}");
    // Session limits, bandwidth and redirect are supported: a file with them passes -V.
    let f = write(
        &dir,
        "s.conf",
        "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\nsocksmethod: none\n\
         client pass { from: 0/0 to: 0/0 session.max: 9 session.inheritable: no }\n\
         socks pass { from: 0/0 to: 0/0 session.max: 3 session.throttle: 10/1 bandwidth: 1000 }\n\
         socks pass { from: 0/0 to: 0/0 command: connect\nredirect to: 127.0.0.1 }\n",
    );
    let (c, _, err) = run(&["-V", "-f", &f]);
    assert_eq!(c, 0, "{err}");
}

#[test]
fn methods_not_implemented_are_refused_and_password_files_checked() {
    let dir = tempfile::tempdir().unwrap();
    let head = "internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\n";
    let f = write(&dir, "m.conf", &format!("{head}socksmethod: gssapi none\n"));
    let (c, _, err) = run(&["-V", "-f", &f]);
    assert_eq!(c, 1);
    assert!(
        err.contains("m.conf:3:") && err.contains("'gssapi' is not supported yet"),
        "{err}"
    );
    let f = write(
        &dir,
        "u.conf",
        &format!("{head}socksmethod: username none\n"),
    );
    let (c, _, err) = run(&["-V", "-f", &f]);
    assert_eq!(c, 0, "{err}");
    // A plain-text entry in our password file is refused by -V, naming file and line.
    let users = write(&dir, "users", "# users\nalice:secret\n");
    let f = write(
        &dir,
        "p.conf",
        &format!("{head}socksmethod: username\nrsockd.users.file: {users}\n"),
    );
    let (c, _, err) = run(&["-V", "-f", &f]);
    assert_eq!(c, 1);
    assert!(
        err.contains(&format!("{users}:2:")) && err.contains("plain-text passwords are refused"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

/// Dante and rsockd agree on the shipped example files: both refuse them as they are (no
/// internal address), and rsockd accepts them once an internal/external address is added.
#[test]
fn debian_examples_agree_with_danted() {
    let examples = ["danted.conf", "danted-basic.conf", "danted-chaining.conf"];
    let dir = tempfile::tempdir().unwrap();
    for name in examples {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/tests/data")
            .join(name);
        let text =
            std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let as_is = write(&dir, name, &text);
        let (c, _, err) = run(&["-V", "-f", &as_is]);
        assert_eq!(c, 1, "{name}: {err}");
        assert!(err.contains("no internal address"), "{name}: {err}");
        if tool("danted") {
            let d = Command::new("danted")
                .args(["-V", "-f", &as_is])
                .output()
                .unwrap();
            assert_eq!(d.status.code(), Some(1), "danted also refuses {name}");
        }
        let with_addrs = write(
            &dir,
            &format!("full-{name}"),
            &format!("internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\n{text}"),
        );
        let (c, _, err) = run(&["-V", "-f", &with_addrs]);
        assert_eq!(c, 0, "{name} with addresses: {err}");
    }
}

/// The example files with every line uncommented that `danted -V` accepts: `rsockd -V`
/// accepts them too (without any switch for unsupported keywords), as danted does.
#[test]
fn uncommented_debian_examples_pass_check_like_danted() {
    let dir = tempfile::tempdir().unwrap();
    for (name, ours) in [
        ("danted-uncommented.conf", 0),
        ("danted-basic-uncommented.conf", 0),
        ("danted-chaining-uncommented.conf", 0),
    ] {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/tests/data")
            .join(name);
        let text = std::fs::read_to_string(&src).unwrap();
        let f = write(
            &dir,
            name,
            &format!("internal: 127.0.0.1 port = 1080\nexternal: 127.0.0.1\n{text}"),
        );
        let (c, _, err) = run(&["-V", "-f", &f]);
        assert_eq!(c, ours, "{name}: {err}");
        if ours == 1 {
            assert!(
                err.contains("'route' is not supported yet"),
                "{name}: {err}"
            );
        }
        if tool("danted") {
            let d = Command::new("danted")
                .args(["-V", "-f", &f])
                .output()
                .unwrap();
            assert_eq!(d.status.code(), Some(0), "danted accepts {name}");
        }
    }
}

/// And they start: each uncommented example runs and accepts clients (its own `internal:` lines
/// name addresses of the machine it was written for, so ours replaces them).
#[test]
fn uncommented_debian_examples_start_and_serve() {
    for name in [
        "danted-uncommented.conf",
        "danted-basic-uncommented.conf",
        "danted-chaining-uncommented.conf",
    ] {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../config/tests/data")
            .join(name);
        let text: String = std::fs::read_to_string(&src)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("internal:") && !l.starts_with("logoutput"))
            .map(|l| format!("{l}\n"))
            .collect();
        let srv = Server::try_start(
            &format!("internal: {{IP}} port = 0\nexternal: 127.0.0.1\n{text}"),
            &[],
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Up and accepting; what it does with this client is its rules' business (the
        // examples let in only their own networks).
        assert!(std::net::TcpStream::connect(srv.addr).is_ok(), "{name}");
        assert!(srv.log_text().contains("running"), "{name}");
    }
}
