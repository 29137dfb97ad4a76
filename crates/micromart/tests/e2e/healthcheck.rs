//! `micromart healthcheck` as a container runtime runs it: the real binary, configured only by
//! the environment a container would have (`MICROMART_SERVICE`, a listen address on every
//! interface), judged by its exit status and its one line on stderr.

use std::io::{Read as _, Write as _};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::processes::{free_port, Process};

const TOKEN: &str = "healthcheck-test-internal-token-0123456789";
const CREDENTIAL: &str = "healthcheck-test-gateway-credential-0123456789";

/// `micromart` with nothing of this test process's environment but `PATH` and `env`.
fn micromart(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_micromart"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn healthcheck(env: &[(&str, String)], args: &[&str]) -> Output {
    micromart(env)
        .arg("healthcheck")
        .args(args)
        .output()
        .expect("micromart runs")
}

fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    text
}

/// A listener that answers every request with `answer`, on a thread of its own.
fn answering(answer: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[tokio::test]
async fn a_served_service_is_healthy_and_a_stopped_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (public, internal) = (free_port(), free_port());
    // What a container of the one image gets: the service by name, every interface.
    let env = vec![
        ("MICROMART_SERVICE", "catalog".to_owned()),
        ("MICROMART_CATALOG__LISTEN", format!("0.0.0.0:{public}")),
        (
            "MICROMART_CATALOG__INTERNAL_LISTEN",
            format!("0.0.0.0:{internal}"),
        ),
        (
            "MICROMART_CATALOG__DATABASE_URL",
            format!("sqlite://{}/catalog.db", dir.path().display()),
        ),
        ("MICROMART_EVENTS__URL", "memory".to_owned()),
        ("MICROMART_INTERNAL__TOKEN", TOKEN.to_owned()),
        (
            "MICROMART_INTERNAL__GATEWAY_CREDENTIAL",
            CREDENTIAL.to_owned(),
        ),
        ("MICROMART_TELEMETRY__LOG_FORMAT", "json".to_owned()),
    ];
    let mut serve = micromart(&env);
    serve.arg("serve");
    let mut process = Process::spawn("catalog", serve, dir.path());
    process
        .wait_ready(&format!("http://127.0.0.1:{public}/readyz"))
        .await;

    for args in [&[][..], &["--ready"], &["catalog"]] {
        let output = healthcheck(&env, args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    drop(process);

    let started = Instant::now();
    let output = healthcheck(&env, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(2));
    let line = stderr_line(&output);
    assert!(
        line.contains(&format!("127.0.0.1:{public}/healthz")),
        "{line}"
    );
}

#[test]
fn an_unavailable_answer_fails_with_its_status() {
    let port = answering(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    );
    let output = healthcheck(&[], &["--url", &format!("http://127.0.0.1:{port}/readyz")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("503"));

    let port = answering("HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let output = healthcheck(&[], &["--url", &format!("http://localhost:{port}/healthz")]);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn without_a_service_it_says_what_to_name_and_a_bad_line_is_unhealthy_not_2() {
    // Unset, and empty as an image built without SERVICE sets it.
    for env in [vec![], vec![("MICROMART_SERVICE", String::new())]] {
        let output = healthcheck(&env, &[]);
        assert_eq!(output.status.code(), Some(1));
        assert!(stderr_line(&output).contains("MICROMART_SERVICE"));
    }
    let output = micromart(&[("MICROMART_SERVICE", String::new())])
        .arg("serve")
        .output()
        .expect("micromart runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("MICROMART_SERVICE"));
    // Docker reserves exit status 2; clap's usage errors exit with it elsewhere.
    let output = healthcheck(&[("MICROMART_SERVICE", "catalogue".to_owned())], &[]);
    assert_eq!(output.status.code(), Some(1));
    let output = healthcheck(&[], &["--no-such-option"]);
    assert_eq!(output.status.code(), Some(1));
}
