//! Discovery and port-forwarding against the in-repo fake API server.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use fake_kube_api::FakeApi;
use serde_json::json;
use stunner_k8s::{Target, find_pod, forward};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn kube_client(api_port: u16) -> kube::Client {
    let cfg = kube::Config::new(format!("http://127.0.0.1:{api_port}").parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_the_cds_pod_and_forwards_to_it() {
    // A "pod" server: answers every connection with what it read, reversed.
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                let n = c.read(&mut b).await.unwrap();
                let mut r = b[..n].to_vec();
                r.reverse();
                c.write_all(&r).await.unwrap();
            });
        }
    });
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api_port = l.local_addr().unwrap().port();
    let api = FakeApi::start(l);
    let cds = json!({"stunner.l7mp.io/config-discovery-service": "enabled"});
    api.put_pod("stunner-system", "op-1", cds.clone(), false, "127.0.0.1:1");
    api.put_pod("stunner-system", "op-2", cds, true, &echo_addr.to_string());
    let client = kube_client(api_port);

    // The ready replica is preferred.
    assert_eq!(
        find_pod(&client, &Target::Cds, None).await.unwrap(),
        ("stunner-system".to_string(), "op-2".to_string())
    );
    let err = find_pod(&client, &Target::Auth, Some("stunner-system"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no running pod with labels app=stunner-auth in namespace stunner-system"
    );

    let local = forward(client, &Target::Cds, None).await.unwrap();
    for msg in ["hello", "second connection"] {
        let mut c = tokio::net::TcpStream::connect(local).await.unwrap();
        c.write_all(msg.as_bytes()).await.unwrap();
        let mut b = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        let mut want = msg.as_bytes().to_vec();
        want.reverse();
        assert_eq!(&b[..n], &want[..]);
    }
}
