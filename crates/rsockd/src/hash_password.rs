//! `rsockd --hash-password [--kind yescrypt|bcrypt|sha512] [USER]`: prints a line for
//! `rsockd.users.file` (our password file), so that nobody writes plain-text passwords there.
//!
//! The password comes from standard input (typed twice, without echo, on a terminal), never
//! from the command line, where other users could read it in `ps`.

const USAGE: &str = "usage: rsockd --hash-password [--kind yescrypt|bcrypt|sha512] [USER]\n\
    \treads the password from standard input and prints USER:HASH (or HASH)\n\
    \tfor rsockd.users.file; default kind yescrypt\n";

pub fn run(args: &[String]) -> i32 {
    let mut kind = "yescrypt";
    let mut user: Option<&str> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kind" => match it.next() {
                Some(k) => kind = k,
                None => return usage_error("--kind needs a value"),
            },
            "-h" | "--help" => {
                print!("{USAGE}");
                return 0;
            }
            s if s.starts_with('-') => return usage_error(&format!("unknown option \"{s}\"")),
            s if user.is_none() => user = Some(s),
            s => return usage_error(&format!("unexpected argument \"{s}\"")),
        }
    }
    let prefix = match kind {
        "yescrypt" => "$y$",
        "bcrypt" => "$2b$",
        "sha512" => "$6$",
        k => return usage_error(&format!("unknown kind \"{k}\"")),
    };
    if let Some(u) = user {
        if u.is_empty() || u.len() > 255 || u.contains(':') || u.chars().any(char::is_whitespace) {
            return usage_error("the user name must be 1-255 bytes without ':' or spaces");
        }
    }
    let pw = match rsockd_sys::passwd::read_password("Password: ") {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot read the password: {e}")),
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        match rsockd_sys::passwd::read_password("Again: ") {
            Ok(again) if again == pw => {}
            Ok(_) => return fail("the passwords differ"),
            Err(e) => return fail(&format!("cannot read the password: {e}")),
        }
    }
    if pw.is_empty() {
        return fail("refusing an empty password");
    }
    if pw.len() > 255 {
        return fail("RFC 1929 passwords are at most 255 bytes");
    }
    // bcrypt's default cost in libxcrypt is 5, too cheap today; 12 is what most tools use.
    let cost = if prefix == "$2b$" { 12 } else { 0 };
    let hash = rsockd_sys::passwd::gensalt(prefix, cost)
        .and_then(|salt| rsockd_sys::passwd::crypt(&pw, &salt));
    match hash {
        Ok(h) => {
            match user {
                Some(u) => println!("{u}:{h}"),
                None => println!("{h}"),
            }
            0
        }
        Err(e) => fail(&format!("cannot hash the password: {e}")),
    }
}

fn usage_error(msg: &str) -> i32 {
    eprint!("rsockd: {msg}\n{USAGE}");
    1
}

fn fail(msg: &str) -> i32 {
    eprintln!("rsockd: {msg}");
    1
}
