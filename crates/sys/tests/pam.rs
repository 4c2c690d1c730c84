//! The PAM binding against the real libpam and real modules (pam_unix, pam_permit, pam_deny,
//! pam_succeed_if). Tests that need root (to add users and write /etc/pam.d) skip without it.
//! Every test uses its own user and service names (with the process id) and removes them on
//! the way out, failed or not.

#![cfg(feature = "pam")]

use std::time::{Duration, Instant};

use rsockd_sys::pam::{authenticate, PamError, PamRequest, PamStep};
use rsockd_testkit::{is_root, require_root, Service, TestUser, PAM_UNIX as UNIX};

fn unix_request<'a>(service: &'a str, user: &'a str, password: &'a [u8]) -> PamRequest<'a> {
    PamRequest {
        service,
        user: Some(user),
        password: Some(password),
        rhost: Some("192.0.2.7"),
    }
}

fn timed(req: &PamRequest<'_>) -> (Result<(), PamError>, Duration) {
    let start = Instant::now();
    let result = authenticate(req);
    (result, start.elapsed())
}

fn step(result: &Result<(), PamError>) -> Option<PamStep> {
    match result {
        Err(PamError::Pam { step, .. }) => Some(*step),
        _ => None,
    }
}

#[test]
fn right_password_is_accepted() {
    require_root!();
    let user = TestUser::new("ok");
    let service = Service::new("ok", UNIX);
    let (result, took) = timed(&unix_request(
        &service.name,
        &user.name,
        user.password.as_bytes(),
    ));
    eprintln!("pam_unix, right password: {result:?} in {took:?}");
    assert_eq!(result, Ok(()));
}

#[test]
fn wrong_password_fails_in_authenticate() {
    require_root!();
    let user = TestUser::new("bad");
    let service = Service::new("bad", UNIX);
    let (result, took) = timed(&unix_request(
        &service.name,
        &user.name,
        b"not-the-password",
    ));
    eprintln!("pam_unix, wrong password: {result:?} in {took:?}");
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
    let text = result.expect_err("a wrong password must fail").to_string();
    assert!(text.contains("pam_authenticate"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

#[test]
fn unknown_user_is_refused() {
    require_root!();
    let service = Service::new("nouser", UNIX);
    let name = format!("rsknouser{}", std::process::id());
    let (result, took) = timed(&unix_request(&service.name, &name, b"whatever"));
    eprintln!("pam_unix, unknown user: {result:?} in {took:?}");
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
}

#[test]
fn empty_password_is_refused() {
    require_root!();
    let user = TestUser::new("empty");
    let service = Service::new("empty", UNIX);
    let (result, took) = timed(&unix_request(&service.name, &user.name, b""));
    eprintln!("pam_unix, empty password: {result:?} in {took:?}");
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
}

/// pam_unix prompts, the conversation has nothing to answer with (PAM_CONV_ERR). Observed: the
/// step fails at once (no failure delay) with PAM_AUTHTOK_ERR.
#[test]
fn no_password_is_refused_by_pam_unix() {
    require_root!();
    let user = TestUser::new("nopw");
    let service = Service::new("nopw", UNIX);
    let req = PamRequest {
        password: None,
        ..unix_request(&service.name, &user.name, b"")
    };
    let (result, took) = timed(&req);
    eprintln!("pam_unix, no password: {result:?} in {took:?}");
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
}

#[test]
fn nul_in_password_is_bad_input() {
    // Refused before PAM is called, so no root needed; with root, also against a real user
    // whose password is the part before the NUL (a C-string cut must not let it through).
    let req = PamRequest {
        service: "rsockd-test-none",
        user: Some("nobody"),
        password: Some(b"secret\0more"),
        rhost: None,
    };
    assert_eq!(authenticate(&req), Err(PamError::BadInput("password")));
    if !is_root() {
        return;
    }
    let user = TestUser::new("nul");
    let service = Service::new("nul", UNIX);
    let mut password = user.password.clone().into_bytes();
    password.extend_from_slice(b"\0tail");
    let result = authenticate(&unix_request(&service.name, &user.name, &password));
    assert_eq!(result, Err(PamError::BadInput("password")));
}

#[test]
fn nul_in_other_fields_is_bad_input() {
    let base = PamRequest {
        service: "sockd",
        user: Some("nobody"),
        password: Some(b"x"),
        rhost: Some("127.0.0.1"),
    };
    let cases = [
        (
            PamRequest {
                service: "so\0ckd",
                ..base
            },
            "service",
        ),
        (
            PamRequest {
                user: Some("no\0body"),
                ..base
            },
            "user",
        ),
        (
            PamRequest {
                rhost: Some("127.0.0.1\0"),
                ..base
            },
            "rhost",
        ),
    ];
    for (req, field) in cases {
        assert_eq!(authenticate(&req), Err(PamError::BadInput(field)));
    }
}

#[test]
fn debug_output_hides_the_password() {
    let req = PamRequest {
        service: "sockd",
        user: Some("alice"),
        password: Some(b"hunter2-secret"),
        rhost: Some("127.0.0.1"),
    };
    let text = format!("{req:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("alice") && text.contains("redacted"),
        "{text}"
    );
}

/// A service without a file: Linux-PAM uses /etc/pam.d/other, which on Debian includes the
/// common-* files (pam_unix with nullok). Observed there: the right password passes, a wrong
/// one fails in pam_authenticate.
#[test]
fn missing_service_falls_back_to_other() {
    require_root!();
    let user = TestUser::new("other");
    let name = format!("rsockd-test-{}-missing", std::process::id());
    assert!(!std::path::Path::new("/etc/pam.d").join(&name).exists());

    let (wrong, took) = timed(&unix_request(&name, &user.name, b"not-the-password"));
    eprintln!("missing service, wrong password: {wrong:?} in {took:?}");
    assert_eq!(step(&wrong), Some(PamStep::Authenticate), "{wrong:?}");

    let (result, took) = timed(&unix_request(&name, &user.name, user.password.as_bytes()));
    eprintln!("missing service, right password: {result:?} in {took:?}");
    let other = std::fs::read_to_string("/etc/pam.d/other").unwrap_or_default();
    if other.contains("@include common-auth") && other.contains("@include common-account") {
        assert_eq!(
            result,
            Ok(()),
            "Debian's /etc/pam.d/other should behave as common-*"
        );
    }
}

/// `pam.address`: no user, no password, the client's address as PAM_RHOST.
#[test]
fn address_case_with_pam_permit() {
    require_root!();
    let service = Service::new(
        "permit",
        "auth required pam_permit.so\naccount required pam_permit.so\n",
    );
    let req = PamRequest {
        service: &service.name,
        user: None,
        password: None,
        rhost: Some("127.0.0.1"),
    };
    let (result, took) = timed(&req);
    eprintln!("pam_permit, address: {result:?} in {took:?}");
    assert_eq!(result, Ok(()));
}

#[test]
fn address_case_with_pam_deny() {
    require_root!();
    let service = Service::new(
        "deny",
        "auth required pam_deny.so\naccount required pam_deny.so\n",
    );
    let req = PamRequest {
        service: &service.name,
        user: None,
        password: None,
        rhost: Some("127.0.0.1"),
    };
    let result = authenticate(&req);
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
}

/// The items reach the modules: without a user, PAM_USER and PAM_RUSER are "rhostusr", and
/// PAM_RHOST is the address given.
#[test]
fn address_case_sets_user_ruser_and_rhost() {
    require_root!();
    let service = Service::new(
        "items",
        "auth required pam_succeed_if.so quiet user = rhostusr ruser = rhostusr rhost = 127.0.0.1\n\
         account required pam_permit.so\n",
    );
    let mut req = PamRequest {
        service: &service.name,
        user: None,
        password: None,
        rhost: Some("127.0.0.1"),
    };
    assert_eq!(authenticate(&req), Ok(()));
    req.rhost = Some("10.9.8.7");
    let result = authenticate(&req);
    assert_eq!(step(&result), Some(PamStep::Authenticate), "{result:?}");
}

/// pam_acct_mgmt runs after a successful pam_authenticate, and its failure is reported as such.
#[test]
fn account_step_is_checked() {
    require_root!();
    let service = Service::new(
        "acct",
        "auth required pam_permit.so\naccount required pam_deny.so\n",
    );
    let req = PamRequest {
        service: &service.name,
        user: Some("nobody"),
        password: Some(b"x"),
        rhost: None,
    };
    let result = authenticate(&req);
    assert_eq!(step(&result), Some(PamStep::AcctMgmt), "{result:?}");
}
