//! Shard leases on DynamoDB (moto): an instance takes free leases, a second one balances by
//! stealing toward an even share, a stopped instance's leases are taken once they stood still
//! for a lease period, a released lease is free at once, a child shard waits for its parent's
//! lease to finish, and every write is conditional (a stale write loses).

use std::time::Duration;

use ecom_pipeline::stream::leases::{Coordinator, LeaseTable, ShardRef};

mod support {
    pub mod moto;
}

async fn table(name: &str) -> Option<LeaseTable> {
    let endpoint = support::moto::moto_endpoint()?;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .load()
        .await;
    let t = LeaseTable::from_client(
        aws_sdk_dynamodb::Client::new(&sdk),
        &format!("{name}-{}", std::process::id()),
    );
    t.ensure().await.unwrap();
    // A second ensure finds it.
    t.ensure().await.unwrap();
    Some(t)
}

fn shards(ids: &[&str]) -> Vec<ShardRef> {
    ids.iter()
        .map(|id| ShardRef {
            id: id.to_string(),
            parents: Vec::new(),
        })
        .collect()
}

fn held(c: &Coordinator) -> Vec<String> {
    c.held().keys().cloned().collect()
}

#[tokio::test]
async fn leases_balance_expire_and_release() {
    let Some(t) = table("leases").await else {
        return;
    };
    let lease = Duration::from_millis(1500);
    let all = shards(&["s0", "s1", "s2", "s3"]);
    let mut a = Coordinator::new(t.clone(), "a".into(), lease);
    let mut b = Coordinator::new(t.clone(), "b".into(), lease);

    // Alone, A takes every shard.
    let tick = a.tick(&all).await.unwrap();
    assert_eq!(tick.gained.len(), 4);
    assert_eq!(held(&a).len(), 4);
    let first_tokens: Vec<u64> = a.held().values().map(|h| h.token).collect();

    // B joins: nothing is free, so it steals from A down to their shares (4 > 2).
    let tick = b.tick(&all).await.unwrap();
    assert_eq!(tick.gained.len(), 2, "{tick:?}");
    let stolen = tick.gained[0].clone();
    let tick = a.tick(&all).await.unwrap();
    let mut lost = b.held().keys().cloned().collect::<Vec<_>>();
    lost.sort();
    assert_eq!(tick.lost, lost, "A notices at its next renewal");
    assert_eq!((held(&a).len(), held(&b).len()), (2, 2));
    // Balanced: another round moves nothing.
    assert_eq!(b.tick(&all).await.unwrap(), Default::default());
    assert_eq!(a.tick(&all).await.unwrap(), Default::default());
    // A stolen lease's token is newer than any before it: loads under the old one are fenced.
    let new_token = b.held()[&stolen].token;
    assert!(first_tokens.iter().all(|t| *t < new_token));

    // A stops renewing (killed): B takes its leases once they stood still for a lease period,
    // not before.
    let a_had = held(&a);
    assert!(b.tick(&all).await.unwrap().gained.is_empty());
    tokio::time::sleep(lease + Duration::from_millis(200)).await;
    let tick = b.tick(&all).await.unwrap();
    assert_eq!(tick.gained, a_had, "B takes the expired leases");
    assert_eq!(held(&b).len(), 4);
    // A comes back: its renewals fail (the counters moved) and it holds nothing, so it steals
    // its share back.
    let tick = a.tick(&all).await.unwrap();
    assert_eq!(tick.lost, a_had);
    assert_eq!(tick.gained.len(), 2);

    // B stops: it hands its leases back and A takes them at its next tick, no waiting.
    b.release_all().await;
    assert!(
        t.list()
            .await
            .unwrap()
            .iter()
            .filter(|l| l.owner.is_none())
            .count()
            == 2
    );
    a.tick(&all).await.unwrap();
    assert_eq!(held(&a).len(), 4);

    // A stale conditional write loses.
    let l = t.list().await.unwrap().remove(0);
    assert!(!t
        .write(&l.shard, l.counter - 1, Some("b"), false)
        .await
        .unwrap());
    assert!(t
        .write(&l.shard, l.counter, Some("b"), false)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_child_shard_waits_for_its_parent_lease_to_finish() {
    let Some(t) = table("reshard").await else {
        return;
    };
    let refs = vec![
        ShardRef {
            id: "parent".into(),
            parents: Vec::new(),
        },
        ShardRef {
            id: "child".into(),
            parents: vec!["parent".into()],
        },
    ];
    let mut a = Coordinator::new(t.clone(), "a".into(), Duration::from_secs(30));
    a.tick(&refs).await.unwrap();
    assert_eq!(held(&a), vec!["parent".to_string()]);
    a.tick(&refs).await.unwrap();
    assert_eq!(held(&a), vec!["parent".to_string()], "the child waits");
    a.finish("parent").await.unwrap();
    a.tick(&refs).await.unwrap();
    assert_eq!(held(&a), vec!["child".to_string()]);
    let parent = t.list().await.unwrap();
    assert!(parent
        .iter()
        .any(|l| l.shard == "parent" && l.finished && l.owner.is_none()));
}
