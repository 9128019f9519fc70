//! The shop state machine alone: `StateMachine::apply` of kv puts in batches, as the apply
//! thread hands them over under load (256 clients, 1000 keys, 256-byte values, fjall in a temp
//! dir, buffered as in a node). Every node of a cluster pays this for every write.
//!
//! `cargo bench -p shoal-benches --bench apply`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shoal_engine::{Command, StateMachine};
use shoal_shop::{Request, Shop};

const CLIENTS: u64 = 256;
const KEYS: u64 = 1000;

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("shop_apply");
    for batch in [1usize, 16, 64] {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut shop = Shop::open(dir.path().join("shop")).expect("open shop");
        let mut index = 0u64;
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("kv_put", batch), &batch, |b, &batch| {
            b.iter(|| {
                let payloads: Vec<(u64, Vec<u8>)> = (0..batch)
                    .map(|_| {
                        index += 1;
                        let mut request = Request::KvPut {
                            key: format!("key-{:012}", index.wrapping_mul(7919) % KEYS)
                                .into_bytes(),
                            value: vec![b'v'; 256],
                        };
                        request.set_now(index);
                        (index, request.encode())
                    })
                    .collect();
                let commands: Vec<Command<'_>> = payloads
                    .iter()
                    .map(|(i, payload)| {
                        seq += 1;
                        Command {
                            index: *i,
                            term: 1,
                            client_id: 1 + i % CLIENTS,
                            seq,
                            payload,
                        }
                    })
                    .collect();
                black_box(shop.apply(&commands).expect("apply"))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
