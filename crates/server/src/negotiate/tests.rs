#![allow(clippy::unwrap_used)]
//! Negotiation on in-memory pipes: every reply byte the client sees is checked.

use super::*;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

/// Accepts alice/secret (and, for rfc931-like methods without credentials, names "ident").
struct TestAuth;

impl Authenticator for TestAuth {
    async fn authenticate(&self, c: Credentials<'_>) -> Result<Option<String>, String> {
        match (c.user, c.password) {
            (Some(b"alice"), Some(b"secret")) => Ok(None),
            (Some(_), Some(_)) => Err("wrong credentials".into()),
            _ if c.method == Method::Rfc931 => Ok(Some("ident".into())),
            _ => Err("no credentials".into()),
        }
    }
}

async fn run(input: &[u8], methods: &[Method]) -> (Result<Request, NegError>, Vec<u8>, Vec<u8>) {
    let (mut client, server) = duplex(64 * 1024);
    client.write_all(input).await.unwrap();
    // The client sends nothing more: a truncated message must end in EOF, not a wait.
    client.shutdown().await.unwrap();
    let mut wire = Wire::new(server);
    let res = negotiate(&mut wire, methods, &TestAuth).await;
    let (server, rest) = wire.into_parts();
    drop(server);
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    (res, out, rest)
}

#[tokio::test]
async fn socks5_connect_with_data_after_request() {
    let mut input = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 0, 80];
    input.extend_from_slice(b"GET /");
    let (res, out, rest) = run(&input, &[Method::None]).await;
    let req = res.unwrap();
    assert_eq!(req.command, Cmd::Connect);
    assert_eq!(req.target, TargetAddr::Ip("127.0.0.1:80".parse().unwrap()));
    assert_eq!(out, vec![5, 0]);
    assert_eq!(rest, b"GET /");
}

#[tokio::test]
async fn socks5_no_acceptable_method_gets_ff() {
    let (res, out, _) = run(&[5, 1, 2], &[Method::None]).await;
    assert!(matches!(res, Err(NegError::NoAcceptableMethod)));
    assert_eq!(out, vec![5, 0xff]);
    let (res, out, _) = run(&[5, 0], &[Method::None]).await;
    assert!(
        matches!(res, Err(NegError::NoAcceptableMethod)),
        "zero methods"
    );
    assert_eq!(out, vec![5, 0xff]);
}

#[tokio::test]
async fn socks5_255_methods_are_fine() {
    let mut input = vec![5, 255];
    input.extend((0..255u8).rev());
    input.extend_from_slice(&[5, 1, 0, 3, 4, b'h', b'o', b's', b't', 0, 80]);
    let (res, out, _) = run(&input, &[Method::None]).await;
    let req = res.unwrap();
    assert_eq!(req.target, TargetAddr::Domain("host".into(), 80));
    assert_eq!(out, vec![5, 0]);
}

#[tokio::test]
async fn socks5_unknown_command_gets_07_and_address_type_08() {
    let (res, out, _) = run(&[5, 1, 0, 5, 9, 0, 1, 1, 2, 3, 4, 0, 80], &[Method::None]).await;
    assert!(matches!(
        res,
        Err(NegError::UnknownCommand {
            version: 5,
            command: 9
        })
    ));
    assert_eq!(out[..4], [5, 0, 5, 7]);
    let (res, out, _) = run(&[5, 1, 0, 5, 1, 0, 7, 1, 2, 3, 4, 0, 80], &[Method::None]).await;
    assert!(matches!(res, Err(NegError::Socks5(_))));
    assert_eq!(out[..4], [5, 0, 5, 8]);
}

#[tokio::test]
async fn unknown_version_is_refused_silently() {
    let (res, out, _) = run(&[6, 1, 0], &[Method::None]).await;
    assert!(matches!(res, Err(NegError::UnknownVersion(6))));
    assert!(out.is_empty());
}

#[tokio::test]
async fn truncated_request_is_eof() {
    let (res, _, _) = run(&[5, 1, 0, 5, 1, 0], &[Method::None]).await;
    assert!(matches!(res, Err(NegError::Eof)));
}

#[tokio::test]
async fn socks4a_names_are_understood() {
    let mut input = vec![4, 1, 0, 80, 0, 0, 0, 1];
    input.extend_from_slice(b"user\0example.org\0");
    let (res, out, _) = run(&input, &[Method::None]).await;
    let req = res.unwrap();
    assert_eq!(req.version, 4);
    assert_eq!(req.target, TargetAddr::Domain("example.org".into(), 80));
    assert!(out.is_empty(), "no reply before the connect");
}

#[tokio::test]
async fn socks4_refused_where_a_password_is_required() {
    let input = [4, 1, 0, 80, 127, 0, 0, 1, 0];
    let (res, out, _) = run(&input, &[Method::Username]).await;
    assert!(matches!(res, Err(NegError::Socks4NeedsAuth)));
    assert_eq!(out, vec![0, 91, 0, 0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn request_split_byte_by_byte() {
    let (mut client, server) = duplex(1024);
    let input = [5u8, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 1, 187];
    let feeder = async move {
        for b in input {
            client.write_all(&[b]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    };
    let mut wire = Wire::new(server);
    let methods = [Method::None];
    let (res, _client) = tokio::join!(negotiate(&mut wire, &methods, &NoAuth), feeder);
    assert_eq!(
        res.unwrap().target,
        TargetAddr::Ip("10.0.0.1:443".parse().unwrap())
    );
}

#[test]
fn server_preference_order_wins() {
    assert_eq!(
        choose_method(&[Method::Username, Method::None], &[0, 2]),
        Some((Method::Username, 2))
    );
    assert_eq!(
        choose_method(&[Method::None, Method::Username], &[2, 0]),
        Some((Method::None, 0))
    );
    // rfc931 and pam.address take whatever the client offers; pam.any prefers a password.
    assert_eq!(
        choose_method(&[Method::Rfc931], &[2]),
        Some((Method::Rfc931, 2))
    );
    assert_eq!(
        choose_method(&[Method::PamAny], &[0, 2]),
        Some((Method::PamAny, 2))
    );
    assert_eq!(choose_method(&[Method::Username], &[0, 1]), None);
    assert_eq!(choose_method(&[Method::None], &[2]), None);
}

const CONNECT: [u8; 10] = [5, 1, 0, 1, 10, 0, 0, 1, 0, 80];

fn login(ver: u8, user: &[u8], pw: &[u8]) -> Vec<u8> {
    let mut v = vec![ver, user.len() as u8];
    v.extend_from_slice(user);
    v.push(pw.len() as u8);
    v.extend_from_slice(pw);
    v
}

#[tokio::test]
async fn username_password_right_and_version_5_accepted() {
    for ver in [1u8, 5] {
        let mut input = vec![5, 2, 0, 2];
        input.extend(login(ver, b"alice", b"secret"));
        input.extend(CONNECT);
        let (res, out, rest) = run(&input, &[Method::Username]).await;
        let req = res.unwrap();
        assert_eq!(req.user.as_deref(), Some("alice"));
        assert_eq!(req.method, Method::Username);
        // Method 02 selected, then RFC 1929 success with version 1 whatever the client sent.
        assert_eq!(out, vec![5, 2, 1, 0]);
        assert!(rest.is_empty());
    }
}

#[tokio::test]
async fn username_password_wrong_gets_status_1_and_no_request_is_read() {
    let mut input = vec![5, 1, 2];
    input.extend(login(1, b"alice", b"guess"));
    input.extend(CONNECT);
    let (res, out, _) = run(&input, &[Method::Username]).await;
    match res {
        Err(NegError::AuthFailed(why)) => {
            assert_eq!(why, "wrong credentials");
            assert!(!why.contains("guess"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out, vec![5, 2, 1, 1]);
}

#[tokio::test]
async fn bad_subnegotiation_gets_status_1() {
    // Version 2, then an empty user name: both refused with status 01.
    for bad in [login(2, b"alice", b"secret"), login(1, b"", b"secret")] {
        let mut input = vec![5, 1, 2];
        input.extend(&bad);
        let (res, out, _) = run(&input, &[Method::Username]).await;
        assert!(matches!(res, Err(NegError::BadAuthRequest(_))), "{res:?}");
        assert_eq!(out, vec![5, 2, 1, 1]);
    }
}

#[tokio::test]
async fn lying_length_ends_in_eof_without_a_verdict() {
    // ULEN says 200, 3 bytes follow, the client closes: no status is sent.
    let input = [5, 1, 2, 1, 200, b'a', b'b', b'c'];
    let (res, out, _) = run(&input, &[Method::Username]).await;
    assert!(matches!(res, Err(NegError::Eof)), "{res:?}");
    assert_eq!(out, vec![5, 2]);
}

#[tokio::test]
async fn longest_names_pass() {
    let user = vec![b'u'; 255];
    let pw = vec![b'p'; 255];
    let mut input = vec![5, 1, 2];
    input.extend(login(1, &user, &pw));
    let (res, out, _) = run(&input, &[Method::Username]).await;
    // TestAuth refuses them, but only after reading both 255-byte fields whole.
    assert!(matches!(res, Err(NegError::AuthFailed(_))), "{res:?}");
    assert_eq!(out, vec![5, 2, 1, 1]);
}

#[tokio::test]
async fn rfc931_without_credentials_names_the_ident_user() {
    let mut input = vec![5, 1, 0];
    input.extend(CONNECT);
    let (res, out, _) = run(&input, &[Method::Rfc931]).await;
    let req = res.unwrap();
    assert_eq!(req.user.as_deref(), Some("ident"));
    assert_eq!(out, vec![5, 0]);
}

#[tokio::test]
async fn failed_address_check_answers_the_request_with_02() {
    // pam.address needs nothing from the client: 00 is chosen, the request is read, and a
    // refusal is the SOCKS reply 02, as Dante answers a failed rfc931 lookup.
    let mut input = vec![5, 1, 0];
    input.extend(CONNECT);
    let (res, out, _) = run(&input, &[Method::PamAddress]).await;
    assert!(matches!(res, Err(NegError::AuthFailed(_))), "{res:?}");
    assert_eq!(out, vec![5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
}
