//! A client whose first server (its own datacenter's) died moves to the next one, and goes
//! back to the first once that is up again, its subscriptions with it (ADR 0022). Two real
//! nats-servers on free loopback ports; every wait is bounded.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::{Bus, BusHeaders, NatsBus, NatsOptions};
use bytes::Bytes;
use testkit::nats::NatsServer;
use tokio::time::{Instant, sleep, timeout};

const WAIT: Duration = Duration::from_secs(10);

async fn servers() -> (NatsServer, NatsServer) {
    tokio::task::spawn_blocking(|| (NatsServer::start().unwrap(), NatsServer::start().unwrap()))
        .await
        .unwrap()
}

/// Restarts `server` on its port (blocking the harness, not the runtime).
async fn restarted(mut server: NatsServer) -> NatsServer {
    tokio::task::spawn_blocking(move || {
        server.restart().unwrap();
        server
    })
    .await
    .unwrap()
}

async fn connect(first: &NatsServer, second: &NatsServer, every: Duration) -> NatsBus {
    let mut options = NatsOptions::new("prefer-test", vec![first.url(), second.url()]);
    options.return_to_first = every;
    NatsBus::connect(options).await.unwrap()
}

/// The port of the server the client is on (both listen on 127.0.0.1).
fn on(bus: &NatsBus) -> u16 {
    bus.client().server_info().port
}

async fn until_on(bus: &NatsBus, port: u16, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if bus.is_connected() && on(bus) == port {
            return Some(started.elapsed());
        }
        sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_on_the_first_server_once_it_returns_with_its_subscriptions() {
    let (mut first, second) = servers().await;
    let bus = connect(&first, &second, Duration::from_millis(300)).await;
    assert_eq!(on(&bus), first.port(), "the first server first");

    first.kill();
    until_on(&bus, second.port(), WAIT)
        .await
        .expect("moved to the second server");
    let mut subscription = bus.subscribe("prefer.test").await.unwrap();
    bus.flush().await.unwrap();

    let first = restarted(first).await;
    let took = until_on(&bus, first.port(), WAIT)
        .await
        .expect("back on the first server");
    eprintln!("back on the first server {took:?} after it restarted");

    // The subscription came along: a message published at the first server reaches it.
    let elsewhere = NatsBus::connect(NatsOptions::new("publisher", vec![first.url()]))
        .await
        .unwrap();
    bus.flush().await.unwrap();
    elsewhere
        .publish(
            "prefer.test",
            BusHeaders::new(),
            Bytes::from_static(b"hello"),
        )
        .await
        .unwrap();
    elsewhere.flush().await.unwrap();
    let message = timeout(WAIT, subscription.next())
        .await
        .expect("the message within 10 s")
        .expect("the subscription lives");
    assert_eq!(message.payload.as_ref(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_return_to_first_the_client_stays_where_it_is() {
    let (mut first, second) = servers().await;
    let bus = connect(&first, &second, Duration::ZERO).await;
    first.kill();
    until_on(&bus, second.port(), WAIT)
        .await
        .expect("moved to the second server");
    let first = restarted(first).await;
    assert_eq!(
        until_on(&bus, first.port(), Duration::from_secs(2)).await,
        None,
        "it stays on the second server"
    );
    drop(first);
}
