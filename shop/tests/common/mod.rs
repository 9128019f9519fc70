//! A harness driving a real `Shop` in a temporary directory, as the Raft driver would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use shoal_engine::{Command, StateMachine};
use shoal_shop::prepare::{self, PrepareConfig};
use shoal_shop::{Action, Auth, Query, Reply, Request, Response, Shop, ShopError, decode_reply};

pub const T0: u64 = 1_700_000_000_000;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub shop: Option<Shop>,
    pub index: u64,
    pub cfg: PrepareConfig,
    pub now: u64,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let shop = Shop::open(dir.path().join("shop")).unwrap();
        Harness {
            dir,
            shop: Some(shop),
            index: 0,
            cfg: PrepareConfig::fast_for_tests(),
            now: T0,
        }
    }

    pub fn shop(&mut self) -> &mut Shop {
        self.shop.as_mut().unwrap()
    }

    pub fn reopen(&mut self) {
        self.shop = None;
        self.shop = Some(Shop::open(self.dir.path().join("shop")).unwrap());
    }

    /// Applies one request as an anonymous client at the next index.
    pub fn propose(&mut self, request: Request) -> Reply {
        self.propose_as(0, 0, request)
    }

    pub fn propose_as(&mut self, client_id: u64, seq: u64, request: Request) -> Reply {
        let payload = request.encode();
        self.apply_raw(client_id, seq, &payload)
    }

    pub fn apply_raw(&mut self, client_id: u64, seq: u64, payload: &[u8]) -> Reply {
        self.index += 1;
        let command = Command {
            index: self.index,
            term: 1,
            client_id,
            seq,
            payload,
        };
        let out = self.shop().apply(&[command]).unwrap();
        assert_eq!(out.len(), 1);
        decode_reply(&out[0]).unwrap()
    }

    /// Applies several requests in one `apply` call.
    pub fn propose_batch(&mut self, requests: &[Request]) -> Vec<Reply> {
        let payloads: Vec<Vec<u8>> = requests.iter().map(Request::encode).collect();
        let commands: Vec<Command<'_>> = payloads
            .iter()
            .map(|p| {
                self.index += 1;
                Command {
                    index: self.index,
                    term: 1,
                    client_id: 0,
                    seq: 0,
                    payload: p,
                }
            })
            .collect();
        let out = self.shop.as_mut().unwrap().apply(&commands).unwrap();
        out.iter().map(|b| decode_reply(b).unwrap()).collect()
    }

    pub fn query(&self, query: Query) -> Reply {
        let bytes = self.shop.as_ref().unwrap().query(&query.encode()).unwrap();
        decode_reply(&bytes).unwrap()
    }

    pub fn auth(&self, token: &str) -> Auth {
        Auth::new(token, self.now)
    }

    pub fn act(&mut self, token: &str, action: Action) -> Reply {
        let request = Request::Authed {
            auth: self.auth(token),
            action,
        };
        self.propose(request)
    }

    pub fn signup_customer(&mut self, name: &str, email: &str) -> u64 {
        let request = prepare::signup_customer(
            &self.cfg,
            name,
            email,
            "pw-secret-1",
            "1 Main St",
            "+15551234567",
            self.now,
        )
        .unwrap();
        match self.propose(request) {
            Ok(Response::AccountCreated { account_id }) => account_id,
            other => panic!("signup failed: {other:?}"),
        }
    }

    pub fn signup_owner(&mut self, first: &str, email: &str) -> u64 {
        let request = prepare::signup_owner(
            &self.cfg,
            first,
            None,
            "Owner",
            email,
            "pw-secret-1",
            "5551234567",
            self.now,
        )
        .unwrap();
        match self.propose(request) {
            Ok(Response::AccountCreated { account_id }) => account_id,
            other => panic!("signup failed: {other:?}"),
        }
    }

    pub fn try_login(&mut self, email: &str, password: &str) -> Result<String, ShopError> {
        let query = prepare::credentials_query(email)?;
        let creds = self.query(query);
        let request = prepare::login(&self.cfg, password, creds, self.now)?;
        match self.propose(request)? {
            Response::Session { token, .. } => Ok(token),
            other => panic!("unexpected {other:?}"),
        }
    }

    pub fn login(&mut self, email: &str) -> String {
        self.try_login(email, "pw-secret-1").unwrap()
    }

    pub fn create_store(&mut self, token: &str, name: &str) -> u64 {
        match self.act(
            token,
            Action::CreateStore {
                name: name.to_string(),
            },
        ) {
            Ok(Response::StoreCreated { store_id }) => store_id,
            other => panic!("{other:?}"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn add_product(
        &mut self,
        token: &str,
        store_id: u64,
        name: &str,
        category: &str,
        brand: &str,
        size: &str,
        price_cents: i64,
        stock: i64,
    ) -> u64 {
        match self.act(
            token,
            Action::AddProduct {
                store_id,
                name: name.into(),
                category: category.into(),
                brand: brand.into(),
                size: size.into(),
                price_cents,
                stock,
            },
        ) {
            Ok(Response::ProductCreated { product_id }) => product_id,
            other => panic!("{other:?}"),
        }
    }

    pub fn product(&self, product_id: u64) -> shoal_shop::ProductView {
        match self.query(Query::Product { product_id }) {
            Ok(Response::Product(p)) => p,
            other => panic!("{other:?}"),
        }
    }
}

pub fn invalid_field(reply: &Reply) -> String {
    match reply {
        Err(ShopError::Invalid { field, .. }) => field.clone(),
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

pub fn exit_code(reply: &Reply) -> i32 {
    match reply {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}
