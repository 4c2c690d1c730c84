//! `rsockd.users.file`: every hash kind, plain-text refusal, reload on SIGHUP, and
//! `rsockd --hash-password`.

use super::*;

#[test]
fn password_file_every_hash_kind_from_a_root_only_file() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let kinds = [
        ("yescrypt", "ky", "$y$"),
        ("bcrypt", "kb", "$2b$12$"),
        ("sha512", "ks", "$6$"),
    ];
    let mut text = String::from("# made by rsockd --hash-password\n");
    for (kind, user, prefix) in kinds {
        let line = hash_line(kind, user, &format!("pw-of-{user}"));
        assert!(line.starts_with(&format!("{user}:{prefix}")), "{line}");
        text.push_str(&line);
    }
    write_users(&users, &text);
    let meta = std::fs::metadata(&users).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(meta.uid(), 0, "owned by root");
    }
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    // The mothers could not read the file; the helper did.
    assert_eq!(uids(srv.pid).unwrap()[1], NOBODY);
    srv.wait_log("the load line", 15, |t| {
        t.contains(&format!(
            ": info: password file {} loaded: 3 user(s)",
            users.display()
        ))
    });
    assert!(
        !srv.log_text().contains("readable by every user"),
        "no permission warning for a 0600 file"
    );
    for (_, user, _) in kinds {
        let me = session(srv.addr, user, &format!("pw-of-{user}"), &echo);
        wait_pass_line(&srv, "username", user, me);
        // Twice: the second answer may come from the helper's cache and must agree.
        session(srv.addr, user, &format!("pw-of-{user}"), &echo);
        let me = refused(srv.addr, user.as_bytes(), b"pw-of-someone");
        refusal_line(
            &srv,
            me,
            login_bytes(user.as_bytes(), b"pw-of-someone"),
            &format!(
                "password authentication failed for user \"{user}\" (password file {})",
                users.display()
            ),
        );
    }
    // A system account is no password-file user.
    let me = refused(srv.addr, b"root", b"pw-of-ky");
    refusal_line(
        &srv,
        me,
        login_bytes(b"root", b"pw-of-ky"),
        &format!(
            "user \"root\" is not in the password file {}",
            users.display()
        ),
    );
    session(srv.addr, "ky", "pw-of-ky", &echo);
    let log = srv.log_text();
    assert!(!log.contains("pw-of-"), "a password in the log:\n{log}");
}

#[test]
fn password_file_with_a_plain_text_entry_refuses_to_start() {
    require_root!();
    let prep = Prepared::new();
    let users = prep.path("users");
    let good = hash_line("sha512", "alice", "alice-pw");
    write_users(&users, &format!("{good}bob:bob-secret\n"));
    let err = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .map(|_| ())
        .expect_err("a plain-text entry must refuse the start");
    let want = format!(
        "{}:2: the entry of user \"bob\" is not a crypt(3) hash (plain-text passwords are \
         refused); use yescrypt ($y$), bcrypt ($2b$) or SHA-512 ($6$), for example from \
         'rsockd --hash-password'",
        users.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(err.contains("exited early"), "{err}");
    assert!(
        !err.contains("bob-secret"),
        "the password is not echoed: {err}"
    );
}

#[test]
fn password_file_reloaded_on_sighup() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let alice = hash_line("sha512", "alice", "alice-pw");
    let carl = hash_line("sha512", "carl", "carl-pw");
    let bob = hash_line("sha512", "bob", "bob-pw");
    write_users(&users, &format!("{alice}{carl}"));
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let loaded = format!(
        ": info: password file {} loaded: 2 user(s)",
        users.display()
    );
    srv.wait_log("the first load", 15, |t| count(t, &loaded) == 1);
    session(srv.addr, "alice", "alice-pw", &echo);
    session(srv.addr, "carl", "carl-pw", &echo);
    let me = refused(srv.addr, b"bob", b"bob-pw");
    refusal_line(
        &srv,
        me,
        login_bytes(b"bob", b"bob-pw"),
        &format!(
            "user \"bob\" is not in the password file {}",
            users.display()
        ),
    );

    // carl out, bob in.
    write_users(&users, &format!("{alice}{bob}"));
    srv.signal(SIGHUP);
    srv.wait_log("the reload", 15, |t| count(t, &loaded) == 2);
    session(srv.addr, "bob", "bob-pw", &echo);
    let me = refused(srv.addr, b"carl", b"carl-pw");
    refusal_line(
        &srv,
        me,
        login_bytes(b"carl", b"carl-pw"),
        &format!(
            "user \"carl\" is not in the password file {}",
            users.display()
        ),
    );
    session(srv.addr, "alice", "alice-pw", &echo);

    // A broken file: the error is logged and the loaded users go on working.
    write_users(&users, &format!("{alice}carl:carl-pw\n"));
    srv.signal(SIGHUP);
    let broken = format!(
        "{}:2: the entry of user \"carl\" is not a crypt(3) hash (plain-text passwords are \
         refused); use yescrypt ($y$), bcrypt ($2b$) or SHA-512 ($6$), for example from \
         'rsockd --hash-password'; keeping the previously loaded password file",
        users.display()
    );
    let text = srv.wait_log("the broken file's error", 15, |t| t.contains(&broken));
    let line = text.lines().find(|l| l.contains(&broken)).unwrap();
    assert!(line.contains(": error: "), "{line}");
    session(srv.addr, "alice", "alice-pw", &echo);
    session(srv.addr, "bob", "bob-pw", &echo);
    refused(srv.addr, b"carl", b"carl-pw");
    assert_eq!(count(&srv.log_text(), &loaded), 2, "no third load");
    assert!(!srv.log_text().contains("carl-pw"));
}

#[test]
fn hash_password_cli() {
    // Output: one line USER:HASH, a fresh salt each time.
    let (code, out, err) = hash_password(&["alice"], b"correct horse");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("alice:$y$") && out.ends_with('\n'), "{out}");
    assert_eq!(out.lines().count(), 1);
    let hash = out.trim_end().strip_prefix("alice:").unwrap();
    assert!(!hash.contains(':') && !hash.contains(' '), "{hash}");
    assert!(!out.contains("correct horse"));
    let (_, again, _) = hash_password(&["alice"], b"correct horse");
    assert_ne!(out, again, "a new salt each time");

    // Without a user: the hash alone.
    let (code, out, _) = hash_password(&["--kind", "sha512"], b"pw");
    assert_eq!(code, 0);
    assert!(out.starts_with("$6$") && !out.contains(':'), "{out}");
    let (code, out, _) = hash_password(&["--kind", "bcrypt", "bee"], b"pw");
    assert_eq!(code, 0);
    assert!(out.starts_with("bee:$2b$12$"), "{out}");

    // Refusals.
    let name_rule = "the user name must be 1-255 bytes without ':' or spaces";
    let too_long = "u".repeat(256);
    for bad in ["a:b", "a b", "", too_long.as_str()] {
        let (code, out, err) = hash_password(&[bad], b"pw");
        assert_eq!(code, 1, "user {bad:?}");
        assert!(out.is_empty());
        assert!(err.contains(name_rule), "{bad:?}: {err}");
    }
    let (code, out, err) = hash_password(&["alice"], b"");
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "rsockd: refusing an empty password\n");
    let (code, _, err) = hash_password(&["alice"], &[b'p'; 256]);
    assert_eq!(code, 1);
    assert_eq!(err, "rsockd: RFC 1929 passwords are at most 255 bytes\n");
    let (code, _, err) = hash_password(&["--kind", "md5", "alice"], b"pw");
    assert_eq!(code, 1);
    assert!(err.contains("unknown kind \"md5\""), "{err}");
}

#[test]
fn hash_password_output_verifies_in_a_password_file() {
    require_root!();
    let echo = echo_server();
    let prep = Prepared::new();
    let users = prep.path("users");
    let (code, line, _) = hash_password(&["dora"], b"dora's pass phrase");
    assert_eq!(code, 0);
    write_users(&users, &line);
    let srv = prep
        .start(
            &format!(
                "rsockd.users.file: {}\n{}",
                users.display(),
                open("username")
            ),
            &[],
        )
        .unwrap();
    let me = session(srv.addr, "dora", "dora's pass phrase", &echo);
    wait_pass_line(&srv, "username", "dora", me);
    refused(srv.addr, b"dora", b"dora's pass phrase ");
    refused(srv.addr, b"Dora", b"dora's pass phrase");
}
