//! The HTTP server's limits against slow clients: the header-read timeout closes a connection
//! that trickles its request one byte a second, and connections beyond the cap are refused at
//! once, while `/healthz` keeps answering.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use driftwatch::config::HttpConfig;
use driftwatch::http::{serve, HttpState};
use driftwatch::telemetry::Telemetry;

const TIMEOUT: Duration = Duration::from_secs(2);
const CAP: usize = 20;

async fn start() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let http = HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        header_read_timeout: TIMEOUT,
        max_connections: CAP,
        ..HttpConfig::default()
    };
    let state = HttpState {
        telemetry: Telemetry::new(),
        ready: Arc::new(AtomicBool::new(true)),
        recent: Default::default(),
    };
    let shutdown = CancellationToken::new();
    let (addr, task) = serve(&http, state, shutdown.clone()).await.unwrap();
    (addr, shutdown, task)
}

/// How a slow client's connection ended: after how long, with what response.
struct Ended {
    after: Duration,
    response: String,
}

/// Connects and sends a request that never ends, one byte a second (`silent`: nothing at
/// all), until the server closes the connection; gives up after 20 s.
async fn slow_client(addr: SocketAddr, silent: bool) -> Ended {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let request = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ";
        for i in 0.. {
            if !silent {
                let byte = request.get(i).copied().unwrap_or(b'a');
                if wr.write_all(&[byte]).await.is_err() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut response)).await;
    writer.abort();
    assert!(read.is_ok(), "still open after 20 s");
    Ended {
        after: start.elapsed(),
        response: String::from_utf8_lossy(&response).into_owned(),
    }
}

/// `GET /healthz`: the status line and body, within 5 s.
async fn healthz(addr: SocketAddr) -> String {
    let get = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        // A refused connection may be reset after its 503.
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .expect("/healthz answers within 5 s")
}

fn is_ok(response: &str) -> bool {
    response.starts_with("HTTP/1.1 200") && response.ends_with("ok")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_after_the_header_timeout_while_healthz_answers() {
    let (addr, shutdown, task) = start().await;
    // Under the cap: nine trickling clients and one silent one.
    let slow: Vec<_> = (0..10)
        .map(|i| tokio::spawn(slow_client(addr, i == 0)))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answer = healthz(addr).await;
    assert!(is_ok(&answer), "{answer}");
    for s in slow {
        let ended = s.await.unwrap();
        // Closed by the timeout, not before, and not long after (the clients kept sending).
        assert!(
            ended.after >= TIMEOUT - Duration::from_millis(200)
                && ended.after < TIMEOUT + Duration::from_secs(3),
            "closed after {:?}",
            ended.after
        );
        assert!(
            !ended.response.starts_with("HTTP/1.1 200"),
            "{}",
            ended.response
        );
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_at_once_and_healthz_answers_after_the_timeout() {
    let (addr, shutdown, task) = start().await;
    let slow: Vec<_> = (0..CAP + 30)
        .map(|_| tokio::spawn(slow_client(addr, false)))
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Every slot is held: /healthz is refused too, at once rather than left waiting.
    let answer = healthz(addr).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
        "{answer}"
    );

    let mut refused = 0;
    let mut timed_out = 0;
    for s in slow {
        let ended = s.await.unwrap();
        if ended.after < Duration::from_secs(1) {
            refused += 1;
            assert!(
                ended.response.is_empty() || ended.response.starts_with("HTTP/1.1 503"),
                "{}",
                ended.response
            );
        } else {
            timed_out += 1;
            assert!(
                ended.after < TIMEOUT + Duration::from_secs(3),
                "closed after {:?}",
                ended.after
            );
        }
    }
    assert_eq!((timed_out, refused), (CAP, 30));
    // The slots are free again.
    let answer = healthz(addr).await;
    assert!(is_ok(&answer), "{answer}");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops")
        .unwrap();
}
