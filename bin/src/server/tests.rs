#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use shoal_net::{ClientRequest, ClientResponse, FaultCommand, ReadConsistency, RequestKind};
use shoal_shop::{
    Action, Auth, PrepareConfig, Profile, Query, Reply, Request, Response, ShopError, decode_reply,
};

use super::memory::MemoryNode;
use super::{ServerContext, handle};
use crate::api::{AdminBody, AdminReply, NodeRole, ReadBody, WriteBody, codes};
use crate::config::{ClusterConfig, MemberConfig};

struct Fixture {
    _dir: tempfile::TempDir,
    node: MemoryNode,
    context: ServerContext,
    seq: u64,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let node =
        MemoryNode::open(1, Some("127.0.0.1:7001".into()), &dir.path().join("shop")).unwrap();
    let cluster = ClusterConfig {
        name: "t".into(),
        members: vec![
            MemberConfig {
                id: 1,
                addr: "127.0.0.1:7001".into(),
                client_addr: None,
            },
            MemberConfig {
                id: 2,
                addr: "127.0.0.1:7002".into(),
                client_addr: Some("127.0.0.1:8002".into()),
            },
        ],
    };
    let mut context = ServerContext::new(1, cluster, false);
    context.prepare = PrepareConfig::fast_for_tests();
    Fixture {
        _dir: dir,
        node,
        context,
        seq: 0,
    }
}

impl Fixture {
    async fn send(&mut self, kind: RequestKind, body: Vec<u8>) -> ClientResponse {
        self.seq += 1;
        let request = ClientRequest {
            client_id: 42,
            seq: self.seq,
            attempt: 0,
            kind,
            body,
        };
        handle(request, &self.node, &self.context).await
    }

    async fn write(&mut self, body: WriteBody) -> Reply {
        match self.send(RequestKind::Write, body.to_bytes()).await {
            ClientResponse::Ok(bytes) => decode_reply(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    async fn read(&mut self, query: Query) -> Reply {
        let body = ReadBody::Query(query).to_bytes();
        match self
            .send(RequestKind::Read(ReadConsistency::Linearizable), body)
            .await
        {
            ClientResponse::Ok(bytes) => decode_reply(&bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    async fn admin(&mut self, body: AdminBody) -> ClientResponse {
        self.send(RequestKind::Admin, body.to_bytes()).await
    }
}

fn customer() -> Profile {
    Profile::Customer {
        name: "Ada".into(),
        address: "1 Road".into(),
        contact: "+4412345678".into(),
    }
}

#[tokio::test]
async fn kv_round_trip() {
    let mut f = fixture();
    let put = WriteBody::Shop(Request::KvPut {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    });
    assert!(f.write(put).await.is_ok());
    let got = f.read(Query::KvGet { key: b"k".to_vec() }).await;
    assert_eq!(
        got,
        Ok(Response::KvValue {
            key: b"k".to_vec(),
            value: Some(b"v".to_vec())
        })
    );
}

#[tokio::test]
async fn signup_login_and_an_authed_action() {
    let mut f = fixture();
    let signup = WriteBody::Signup {
        email: "ada@example.com".into(),
        password: "s3cret".into(),
        profile: customer(),
    };
    let Ok(Response::AccountCreated { account_id }) = f.write(signup.clone()).await else {
        panic!("signup failed");
    };
    // Duplicate email: a conflict.
    assert!(matches!(
        f.write(signup).await,
        Err(ShopError::DuplicateEmail { .. })
    ));
    // Wrong password: unauthorized.
    let wrong = WriteBody::Login {
        email: "ada@example.com".into(),
        password: "nope".into(),
    };
    assert!(matches!(
        f.write(wrong).await,
        Err(ShopError::Unauthorized { .. })
    ));
    let login = WriteBody::Login {
        email: "ada@example.com".into(),
        password: "s3cret".into(),
    };
    let Ok(Response::Session {
        token,
        account_id: logged,
        ..
    }) = f.write(login).await
    else {
        panic!("login failed");
    };
    assert_eq!(logged, account_id);
    let who = f
        .read(Query::WhoAmI {
            auth: Auth::new(token.clone(), 0),
        })
        .await;
    assert!(
        matches!(who, Ok(Response::Account(ref a)) if a.email == "ada@example.com"),
        "{who:?}"
    );
    let logout = WriteBody::Shop(Request::Authed {
        auth: Auth::new(token.clone(), 0),
        action: Action::Logout,
    });
    assert!(f.write(logout).await.is_ok());
    let cart = f
        .read(Query::Cart {
            auth: Auth::new(token, 0),
        })
        .await;
    assert!(matches!(cart, Err(ShopError::Unauthorized { .. })));
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let mut f = fixture();
    let bad = WriteBody::Signup {
        email: "ada@example.com".into(),
        password: "pw".into(),
        profile: Profile::Customer {
            name: "Ada".into(),
            address: "x".into(),
            contact: "12".into(),
        },
    };
    let e = f.write(bad).await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(matches!(e, ShopError::Invalid { ref field, .. } if field == "contact"));
}

#[tokio::test]
async fn garbage_and_node_only_bodies_are_rejected() {
    let mut f = fixture();
    for kind in [
        RequestKind::Write,
        RequestKind::Read(ReadConsistency::Stale),
        RequestKind::Admin,
    ] {
        match f.send(kind, vec![1, 2, 3]).await {
            ClientResponse::Rejected { code, .. } => assert_eq!(code, codes::BAD_BODY),
            other => panic!("{other:?}"),
        }
    }
    let creds = ReadBody::Query(Query::Credentials {
        email: "ada@example.com".into(),
    });
    assert!(matches!(
        f.send(
            RequestKind::Read(ReadConsistency::Linearizable),
            creds.to_bytes()
        )
        .await,
        ClientResponse::Rejected {
            code: codes::BAD_BODY,
            ..
        }
    ));
}

#[tokio::test]
async fn not_leader_names_the_leader_address() {
    let mut f = fixture();
    f.node.set_leader(Some(2));
    let put = WriteBody::Shop(Request::KvPut {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    });
    match f.send(RequestKind::Write, put.to_bytes()).await {
        ClientResponse::NotLeader {
            leader_id,
            leader_addr,
        } => {
            assert_eq!(leader_id, Some(2));
            assert_eq!(leader_addr.as_deref(), Some("127.0.0.1:8002"));
        }
        other => panic!("{other:?}"),
    }
    // A leader added after cluster.toml was written: its address comes from the membership.
    let add = AdminBody::AddMember {
        id: 5,
        addr: "127.0.0.1:7005".into(),
    };
    f.node.set_leader(Some(1));
    assert!(matches!(f.admin(add).await, ClientResponse::Ok(_)));
    f.node.set_leader(Some(5));
    let put = WriteBody::Shop(Request::KvDelete { key: b"k".to_vec() });
    assert!(matches!(
        f.send(RequestKind::Write, put.to_bytes()).await,
        ClientResponse::NotLeader { leader_id: Some(5), leader_addr: Some(ref a) } if a == "127.0.0.1:7005"
    ));
    f.node.set_leader(None);
    assert!(matches!(
        f.admin(AdminBody::TransferLeader { to: 1 }).await,
        ClientResponse::NotLeader {
            leader_id: None,
            leader_addr: None
        }
    ));
    // Stale reads are served by anyone.
    let body = ReadBody::Query(Query::KvGet { key: b"k".to_vec() }).to_bytes();
    assert!(matches!(
        f.send(RequestKind::Read(ReadConsistency::Stale), body)
            .await,
        ClientResponse::Ok(_)
    ));
}

#[tokio::test]
async fn admin_requests() {
    let mut f = fixture();
    let ClientResponse::Ok(bytes) = f.admin(AdminBody::Status).await else {
        panic!()
    };
    let AdminReply::Status(status) = AdminReply::from_bytes(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(
        (status.id, status.role, status.leader),
        (1, NodeRole::Leader, Some(1))
    );
    let add = AdminBody::AddMember {
        id: 3,
        addr: "127.0.0.1:7003".into(),
    };
    assert!(matches!(f.admin(add.clone()).await, ClientResponse::Ok(_)));
    assert!(matches!(
        f.admin(add).await,
        ClientResponse::Rejected {
            code: codes::CONFLICT,
            ..
        }
    ));
    assert!(matches!(
        f.admin(AdminBody::RemoveMember { id: 9 }).await,
        ClientResponse::Rejected {
            code: codes::NOT_FOUND,
            ..
        }
    ));
    let ClientResponse::Ok(bytes) = f.admin(AdminBody::Members).await else {
        panic!()
    };
    let AdminReply::Members(members) = AdminReply::from_bytes(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 3]);
    assert!(matches!(
        f.admin(AdminBody::Snapshot).await,
        ClientResponse::Ok(_)
    ));
}

#[tokio::test]
async fn fault_commands_need_the_hook_enabled() {
    let mut f = fixture();
    let fault = AdminBody::Fault(FaultCommand::Heal);
    assert!(matches!(
        f.admin(fault.clone()).await,
        ClientResponse::Rejected {
            code: codes::FORBIDDEN,
            ..
        }
    ));
    assert!(f.node.faults().is_empty());
    f.context.fault_hook = true;
    assert!(matches!(f.admin(fault).await, ClientResponse::Ok(_)));
    assert_eq!(f.node.faults(), vec![FaultCommand::Heal]);
}

#[tokio::test]
async fn retries_with_the_same_seq_apply_once() {
    let mut f = fixture();
    let login_free = WriteBody::Shop(Request::KvCas {
        key: b"c".to_vec(),
        expected: None,
        new: b"1".to_vec(),
    });
    let request = ClientRequest {
        client_id: 7,
        seq: 1,
        attempt: 0,
        kind: RequestKind::Write,
        body: login_free.to_bytes(),
    };
    let first = handle(request.clone(), &f.node, &f.context).await;
    let retry = handle(
        ClientRequest {
            attempt: 1,
            ..request
        },
        &f.node,
        &f.context,
    )
    .await;
    assert_eq!(
        first, retry,
        "the retry gets the first answer, not a CAS mismatch"
    );
    let _ = f.read(Query::KvGet { key: b"c".to_vec() }).await;
}

#[tokio::test]
async fn random_and_mutated_bodies_never_panic_the_handler() {
    use rand::{Rng, SeedableRng};
    let mut f = fixture();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let valid = [
        WriteBody::Shop(Request::KvPut {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        })
        .to_bytes(),
        ReadBody::Query(Query::KvGet { key: b"k".to_vec() }).to_bytes(),
        AdminBody::TransferLeader { to: 1 }.to_bytes(),
    ];
    for round in 0..600 {
        let kind = match round % 3 {
            0 => RequestKind::Write,
            1 => RequestKind::Read(ReadConsistency::Stale),
            _ => RequestKind::Admin,
        };
        let mut body = if rng.random_bool(0.5) {
            valid[round % 3].clone()
        } else {
            let len = rng.random_range(0..96);
            (0..len).map(|_| rng.random()).collect()
        };
        if !body.is_empty() {
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..body.len());
                body[i] = rng.random();
            }
        }
        // Any answer will do; what matters is that there is one.
        let _ = f.send(kind, body).await;
    }
    // The node still serves.
    assert!(f.read(Query::KvGet { key: b"k".to_vec() }).await.is_ok());
}
