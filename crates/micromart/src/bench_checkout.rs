//! `micromart bench-checkout` (hidden): the load generator of `bench/run`'s `checkout`
//! scenario. It drives a running shop through its gateway as customers do and prints one JSON
//! line: how many checkouts reached `confirmed` per second, and how long each took from the
//! checkout request to the moment the customer saw `confirmed`.
//!
//! Setup (not timed): the admin signs in (or an access token is given) and creates a product
//! with ample stock; `--buyers` customers register, sign in and register a card. Then each
//! checkout is: the buyer's cart line set to one unit (`PUT /api/v1/cart/lines/{id}`), the
//! checkout (`POST /api/v1/orders` with a fresh `Idempotency-Key`), and the order followed
//! until it is final — by its live stream (`GET /api/v1/orders/{id}/events`, Server-Sent
//! Events, the default) or by polling `GET /api/v1/orders/{id}` (`--follow poll`).
//!
//! Load:
//! - closed loop (`--rate 0`, the default): `--concurrency` workers, each with a buyer of its
//!   own, each starting its next checkout once the last one is final: the maximum rate;
//! - open loop (`--rate R`): checkouts start on a schedule of R per second, whatever the
//!   earlier ones do, each with a buyer that is free (a buyer has one checkout at a time, so
//!   `[order] max_checkouts_in_flight` never refuses one); a checkout waiting for a free buyer
//!   is reported (`buyer_wait_p99_ms`), and `schedule_to_confirmed_*` counts from its due time.
//!
//! It writes `bench-checkout: measuring` and `bench-checkout: measured` to stderr around the
//! measured part (after the setup and the warm-up), for the harness to meter what it spends.
//!
//! Bounded by `--count` and `--duration-secs` (no checkout starts after either), by
//! `--confirm-timeout-secs` per checkout and `--timeout-secs` overall; the gateway must be on
//! this machine (127.0.0.1, localhost or ::1).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::bench_events::{is_loopback, percentile, round1, round3, url_host};

/// The most checkouts (and buyers) one invocation may make, and the longest it may run.
const MAX_COUNT: u64 = 1_000_000;
const MAX_BUYERS: usize = 4_096;
const MAX_TIMEOUT_SECS: u64 = 3_600;
/// Buyers registered at once during setup.
const SETUP_PARALLELISM: usize = 8;
/// The buyers' password (the bench's own throwaway accounts).
const PASSWORD: &str = "bench checkout password 0123";
/// The simulated provider's approving test card (docs/payment.md).
const APPROVING_CARD: &str = "4242 4242 4242 4242";

#[derive(Debug, clap::Args)]
pub struct BenchCheckoutArgs {
    /// The shop's gateway, on this machine: `http://127.0.0.1:PORT`.
    #[arg(long)]
    gateway_url: String,
    /// The admin's email (with `--admin-password-file`), to create the product.
    #[arg(long)]
    admin_email: Option<String>,
    /// A file holding the admin's password (`micromart up` keeps it in `<data>/admin-password`).
    #[arg(long)]
    admin_password_file: Option<std::path::PathBuf>,
    /// An admin's access token instead of the email and password.
    #[arg(long)]
    admin_token: Option<String>,
    /// Customers to register; each has one checkout at a time.
    #[arg(long, default_value_t = 16)]
    buyers: usize,
    /// Closed loop: workers checking out one after the other, each with its own buyer
    /// (0 = one per buyer). Ignored with `--rate`.
    #[arg(long, default_value_t = 0)]
    concurrency: usize,
    /// Open loop: checkouts started per second on a schedule (0 = closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// The most checkouts to measure.
    #[arg(long, default_value_t = 1_000)]
    count: u64,
    /// No measured checkout starts after this many seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Checkouts made (closed loop) before measuring, not counted.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// How a checkout is followed until it is final.
    #[arg(long, value_enum, default_value = "sse")]
    follow: Follow,
    /// `--follow poll`: the pause between two reads of the order.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// A checkout not final this long after it was sent counts as an error.
    #[arg(long, default_value_t = 30)]
    confirm_timeout_secs: u64,
    /// Gives up with an error after this long (setup included).
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Follow {
    /// The order's live stream (Server-Sent Events) through the gateway.
    Sse,
    /// `GET /api/v1/orders/{id}` every `--poll-ms`.
    Poll,
}

impl Follow {
    fn name(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Poll => "poll",
        }
    }
}

/// Runs the setup and one measurement, and prints its JSON line.
pub async fn run(args: BenchCheckoutArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let limit = Duration::from_secs(args.timeout_secs);
    let line = tokio::time::timeout(limit, measure(&args))
        .await
        .map_err(|_| anyhow::anyhow!("the benchmark did not finish within {limit:?}"))??;
    println!("{line}");
    Ok(())
}

fn check_args(args: &BenchCheckoutArgs) -> anyhow::Result<()> {
    let host = args
        .gateway_url
        .strip_prefix("http://")
        .and_then(|_| url_host(&args.gateway_url));
    anyhow::ensure!(
        host.is_some_and(is_loopback),
        "--gateway-url must be http:// on this machine (127.0.0.1, localhost or ::1)"
    );
    anyhow::ensure!(
        (1..=MAX_COUNT).contains(&args.count),
        "--count must be between 1 and {MAX_COUNT}"
    );
    anyhow::ensure!(
        args.warmup <= MAX_COUNT,
        "--warmup must be at most {MAX_COUNT}"
    );
    anyhow::ensure!(
        (1..=MAX_BUYERS).contains(&args.buyers),
        "--buyers must be between 1 and {MAX_BUYERS}"
    );
    anyhow::ensure!(
        args.concurrency <= args.buyers,
        "--concurrency cannot exceed --buyers (each worker has a buyer of its own)"
    );
    anyhow::ensure!(
        args.rate.is_finite() && args.rate >= 0.0,
        "--rate must be 0 (closed loop) or positive"
    );
    anyhow::ensure!(
        (1..=MAX_TIMEOUT_SECS).contains(&args.timeout_secs)
            && (1..=MAX_TIMEOUT_SECS).contains(&args.duration_secs)
            && (1..=MAX_TIMEOUT_SECS).contains(&args.confirm_timeout_secs),
        "--timeout-secs, --duration-secs and --confirm-timeout-secs must be between 1 and \
         {MAX_TIMEOUT_SECS}"
    );
    anyhow::ensure!(
        args.admin_token.is_some()
            || (args.admin_email.is_some() && args.admin_password_file.is_some()),
        "give --admin-token, or --admin-email with --admin-password-file"
    );
    anyhow::ensure!(args.poll_ms >= 1, "--poll-ms must be at least 1");
    Ok(())
}

async fn measure(args: &BenchCheckoutArgs) -> anyhow::Result<Value> {
    let setup_started = Instant::now();
    let shop = Shop::new(args)?;
    let admin = match &args.admin_token {
        Some(token) => token.clone(),
        None => {
            let (Some(email), Some(file)) = (&args.admin_email, &args.admin_password_file) else {
                anyhow::bail!("no admin credentials");
            };
            let password = std::fs::read_to_string(file).with_context(|| {
                format!("cannot read the admin password from {}", file.display())
            })?;
            shop.login(email, password.trim())
                .await
                .context("the admin cannot sign in")?
        }
    };
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let product = shop.create_product(&admin, run_id).await?;
    let buyers = shop.register_buyers(run_id, args.buyers).await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    let bench = Arc::new(Bench {
        shop,
        product,
        buyers,
        follow: args.follow,
        poll: Duration::from_millis(args.poll_ms),
        confirm_timeout: Duration::from_secs(args.confirm_timeout_secs),
    });
    let concurrency = if args.concurrency == 0 {
        args.buyers
    } else {
        args.concurrency
    };
    if args.warmup > 0 {
        let deadline = Instant::now() + Duration::from_secs(args.duration_secs);
        bench
            .clone()
            .closed_loop(concurrency, args.warmup, deadline)
            .await?;
    }
    let window = Duration::from_secs(args.duration_secs);
    // The harness meters CPU and reads the services' metrics at these two lines.
    eprintln!("bench-checkout: measuring");
    let started = Instant::now();
    let samples = if args.rate > 0.0 {
        bench
            .clone()
            .open_loop(args.rate, args.count, window)
            .await?
    } else {
        bench
            .clone()
            .closed_loop(concurrency, args.count, started + window)
            .await?
    };
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("bench-checkout: measured");
    let mut line = summarize(&samples, seconds);
    line["follow"] = json!(args.follow.name());
    line["loop"] = json!(if args.rate > 0.0 { "open" } else { "closed" });
    line["buyers"] = json!(args.buyers);
    line["concurrency"] = json!(if args.rate > 0.0 { 0 } else { concurrency });
    line["target_rate"] = json!(args.rate);
    line["warmup"] = json!(args.warmup);
    line["setup_seconds"] = json!(round3(setup_seconds));
    Ok(line)
}

/// An HTTP client of the gateway.
struct Shop {
    base: String,
    client: reqwest::Client,
}

/// An answer read whole: status and JSON body (`Null` when empty or not JSON).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    /// `"<status> <problem code>"`, the error kind of a refused request.
    fn kind(&self, what: &str) -> String {
        match self.body.get("code").and_then(Value::as_str) {
            Some(code) => format!("{what} {} {code}", self.status.as_u16()),
            None => format!("{what} {}", self.status.as_u16()),
        }
    }
}

impl Shop {
    fn new(args: &BenchCheckoutArgs) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self {
            base: args.gateway_url.trim_end_matches('/').to_owned(),
            client,
        })
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// Sends a setup request, retrying a 429 (a rate limit left on) after its `Retry-After`.
    async fn setup_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        for _ in 0..20 {
            let answer = self
                .send(self.request(method.clone(), path, token).json(body))
                .await
                .with_context(|| format!("{method} {path} failed"))?;
            if answer.status != StatusCode::TOO_MANY_REQUESTS {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("{method} {path}: still 429 after 20 tries (is the gateway's rate limit on?)")
    }

    async fn login(&self, email: &str, password: &str) -> anyhow::Result<String> {
        let answer = self
            .setup_call(
                Method::POST,
                "/api/v1/sessions",
                None,
                &json!({"email": email, "password": password}),
            )
            .await?;
        anyhow::ensure!(
            answer.status == StatusCode::OK,
            "signing in as {email}: {} {}",
            answer.status,
            answer.body
        );
        answer.body["access_token"]
            .as_str()
            .map(str::to_owned)
            .context("a session without an access token")
    }

    /// A product with ample stock in a category of its own; answers its id.
    async fn create_product(&self, admin: &str, run_id: &str) -> anyhow::Result<String> {
        let category = self
            .setup_call(
                Method::POST,
                "/api/v1/categories",
                Some(admin),
                &json!({"name": format!("Bench {run_id}"), "slug": format!("bench-{run_id}")}),
            )
            .await?;
        anyhow::ensure!(
            category.status == StatusCode::CREATED,
            "creating a category: {} {}",
            category.status,
            category.body
        );
        let product = self
            .setup_call(
                Method::POST,
                "/api/v1/products",
                Some(admin),
                &json!({
                    "sku": format!("BENCH-{run_id}"),
                    "name": format!("Bench kettle {run_id}"),
                    "description": "Gooseneck kettle bought by the checkout benchmark.",
                    "price": {"amount": 1250, "currency": "EUR"},
                    "category_id": category.body["id"],
                    "attributes": {},
                    "stock": 1_000_000
                }),
            )
            .await?;
        anyhow::ensure!(
            product.status == StatusCode::CREATED,
            "creating a product: {} {}",
            product.status,
            product.body
        );
        product.body["id"]
            .as_str()
            .map(str::to_owned)
            .context("a product without an id")
    }

    async fn register_buyers(&self, run_id: &str, count: usize) -> anyhow::Result<Vec<Buyer>> {
        let mut buyers = Vec::with_capacity(count);
        let indices: Vec<usize> = (0..count).collect();
        for chunk in indices.chunks(SETUP_PARALLELISM) {
            let made = futures_util::future::join_all(
                chunk.iter().map(|n| self.register_buyer(run_id, *n)),
            )
            .await;
            for buyer in made {
                buyers.push(buyer?);
            }
        }
        Ok(buyers)
    }

    async fn register_buyer(&self, run_id: &str, n: usize) -> anyhow::Result<Buyer> {
        let email = format!("buyer{n}-{run_id}@bench.example");
        let registered = self
            .setup_call(
                Method::POST,
                "/api/v1/users",
                None,
                &json!({"email": email, "password": PASSWORD, "name": format!("Buyer {n}")}),
            )
            .await?;
        anyhow::ensure!(
            registered.status == StatusCode::CREATED,
            "registering {email}: {} {}",
            registered.status,
            registered.body
        );
        let token = self.login(&email, PASSWORD).await?;
        let card = self
            .setup_call(
                Method::POST,
                "/api/v1/payment-methods",
                Some(&token),
                &json!({"number": APPROVING_CARD, "exp_month": 12, "exp_year": 2040, "cvc": "123"}),
            )
            .await?;
        anyhow::ensure!(
            card.status == StatusCode::CREATED,
            "registering a card for {email}: {} {}",
            card.status,
            card.body
        );
        let card = card.body["id"]
            .as_str()
            .map(str::to_owned)
            .context("a card without an id")?;
        Ok(Buyer { token, card })
    }
}

struct Buyer {
    token: String,
    card: String,
}

/// What the measurement shares between its tasks.
struct Bench {
    shop: Shop,
    product: String,
    buyers: Vec<Buyer>,
    follow: Follow,
    poll: Duration,
    confirm_timeout: Duration,
}

/// How one checkout went.
#[derive(Debug, Default)]
struct Sample {
    /// The cart line's request, ms.
    cart_ms: Option<f64>,
    /// The checkout request until its answer, ms.
    checkout_ms: Option<f64>,
    /// Accepted (202).
    accepted: bool,
    /// From sending the checkout to seeing `confirmed`, ms.
    confirmed_ms: Option<f64>,
    /// Open loop: from the due time to seeing `confirmed`, ms.
    from_schedule_ms: Option<f64>,
    /// Open loop: how long it waited for a free buyer, ms.
    buyer_wait_ms: Option<f64>,
    /// The reason it was cancelled.
    cancelled: Option<String>,
    /// What went wrong, if something did.
    error: Option<String>,
}

/// How an order ended, as its customer saw it.
enum Outcome {
    Confirmed,
    Cancelled(String),
}

impl Bench {
    /// `workers` buyers checking out one after the other until `count` checkouts started or
    /// `deadline` passed.
    async fn closed_loop(
        self: Arc<Self>,
        workers: usize,
        count: u64,
        deadline: Instant,
    ) -> anyhow::Result<Vec<Sample>> {
        let started = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::with_capacity(workers);
        for buyer in 0..workers {
            let (bench, started, samples) = (self.clone(), started.clone(), samples.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < count {
                    let sample = bench.checkout(buyer).await;
                    lock(&samples).push(sample);
                }
            }));
        }
        for task in tasks {
            task.await.context("a checkout worker failed")?;
        }
        let samples = std::mem::take(&mut *lock(&samples));
        Ok(samples)
    }

    /// Checkouts started `rate` per second for `window` (at most `count`), each with a free
    /// buyer.
    async fn open_loop(
        self: Arc<Self>,
        rate: f64,
        count: u64,
        window: Duration,
    ) -> anyhow::Result<Vec<Sample>> {
        let free = Arc::new(Mutex::new((0..self.buyers.len()).collect::<Vec<_>>()));
        let permits = Arc::new(tokio::sync::Semaphore::new(self.buyers.len()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for n in 0..count {
            let offset = Duration::from_secs_f64(n as f64 / rate);
            if offset >= window {
                break;
            }
            let due = started + offset;
            tokio::time::sleep_until(due.into()).await;
            let (bench, free, permits) = (self.clone(), free.clone(), permits.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(_permit) = permits.acquire().await else {
                    return Sample {
                        error: Some("no buyer (closed pool)".to_owned()),
                        ..Sample::default()
                    };
                };
                let buyer = lock(&free).pop();
                let Some(buyer) = buyer else {
                    return Sample {
                        error: Some("no free buyer".to_owned()),
                        ..Sample::default()
                    };
                };
                let waited = due.elapsed();
                let mut sample = bench.checkout(buyer).await;
                lock(&free).push(buyer);
                sample.buyer_wait_ms = Some(ms(waited));
                if sample.confirmed_ms.is_some() {
                    sample.from_schedule_ms = Some(ms(due.elapsed()));
                }
                sample
            }));
        }
        let mut samples = Vec::with_capacity(tasks.len());
        for task in tasks {
            samples.push(task.await.context("a checkout task failed")?);
        }
        Ok(samples)
    }

    /// One checkout of one unit by `buyer`, followed until it is final.
    async fn checkout(&self, buyer: usize) -> Sample {
        let mut sample = Sample::default();
        let Some(buyer) = self.buyers.get(buyer) else {
            sample.error = Some("no such buyer".to_owned());
            return sample;
        };
        let begun = Instant::now();
        let cart = self
            .shop
            .send(
                self.shop
                    .request(
                        Method::PUT,
                        &format!("/api/v1/cart/lines/{}", self.product),
                        Some(&buyer.token),
                    )
                    .json(&json!({"quantity": 1})),
            )
            .await;
        sample.cart_ms = Some(ms(begun.elapsed()));
        match cart {
            Ok(answer) if answer.status == StatusCode::OK => {}
            Ok(answer) => {
                sample.error = Some(answer.kind("cart"));
                return sample;
            }
            Err(error) => {
                sample.error = Some(transport("cart", &error));
                return sample;
            }
        }
        let key = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let placed = self
            .shop
            .send(
                self.shop
                    .request(Method::POST, "/api/v1/orders", Some(&buyer.token))
                    .header("idempotency-key", key)
                    .json(&json!({"payment_method_id": buyer.card})),
            )
            .await;
        sample.checkout_ms = Some(ms(sent.elapsed()));
        let order = match placed {
            Ok(answer) if answer.status == StatusCode::ACCEPTED => {
                match answer.body["id"].as_str() {
                    Some(id) => id.to_owned(),
                    None => {
                        sample.error = Some("checkout 202 without an order id".to_owned());
                        return sample;
                    }
                }
            }
            Ok(answer) => {
                sample.error = Some(answer.kind("checkout"));
                return sample;
            }
            Err(error) => {
                sample.error = Some(transport("checkout", &error));
                return sample;
            }
        };
        sample.accepted = true;
        let followed = tokio::time::timeout(
            self.confirm_timeout.saturating_sub(sent.elapsed()),
            self.follow(&buyer.token, &order),
        )
        .await;
        match followed {
            Ok(Ok(Outcome::Confirmed)) => sample.confirmed_ms = Some(ms(sent.elapsed())),
            Ok(Ok(Outcome::Cancelled(reason))) => sample.cancelled = Some(reason),
            Ok(Err(kind)) => sample.error = Some(kind),
            Err(_) => sample.error = Some("follow: not final within the timeout".to_owned()),
        }
        sample
    }

    /// Waits until `order` is final; an error is its kind.
    async fn follow(&self, token: &str, order: &str) -> Result<Outcome, String> {
        match self.follow {
            Follow::Sse => self.follow_stream(token, order).await,
            Follow::Poll => self.follow_polling(token, order).await,
        }
    }

    async fn follow_stream(&self, token: &str, order: &str) -> Result<Outcome, String> {
        let mut response = self
            .shop
            .request(
                Method::GET,
                &format!("/api/v1/orders/{order}/events"),
                Some(token),
            )
            .header("accept", "text/event-stream")
            .timeout(self.confirm_timeout)
            .send()
            .await
            .map_err(|error| transport("follow", &error))?;
        if response.status() != StatusCode::OK {
            return Err(format!("follow {}", response.status().as_u16()));
        }
        let mut buffer = String::new();
        loop {
            let chunk = response
                .chunk()
                .await
                .map_err(|error| transport("follow", &error))?;
            let Some(chunk) = chunk else {
                return Err("follow: the stream ended before a final status".to_owned());
            };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            // Events end with a blank line; a partial one waits for the next chunk.
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                if let Some(outcome) = final_status(&event) {
                    return Ok(outcome);
                }
            }
        }
    }

    async fn follow_polling(&self, token: &str, order: &str) -> Result<Outcome, String> {
        loop {
            let answer = self
                .shop
                .send(self.shop.request(
                    Method::GET,
                    &format!("/api/v1/orders/{order}"),
                    Some(token),
                ))
                .await
                .map_err(|error| transport("follow", &error))?;
            if answer.status != StatusCode::OK {
                return Err(answer.kind("follow"));
            }
            if let Some(outcome) = outcome_of(&answer.body) {
                return Ok(outcome);
            }
            tokio::time::sleep(self.poll).await;
        }
    }
}

/// The outcome a Server-Sent Event (`event: status`, `data: {"status": …}`) announces, if
/// it announces a final one.
fn final_status(event: &str) -> Option<Outcome> {
    let data: String = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let value: Value = serde_json::from_str(&data).ok()?;
    outcome_of(&value)
}

/// The outcome of an order (or a status entry) whose `status` is final.
fn outcome_of(value: &Value) -> Option<Outcome> {
    match value.get("status").and_then(Value::as_str)? {
        "confirmed" | "shipped" => Some(Outcome::Confirmed),
        "cancelled" => {
            let reason = value
                .get("reason")
                .or_else(|| value.get("cancel_reason"))
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            Some(Outcome::Cancelled(reason.to_owned()))
        }
        _ => None,
    }
}

/// The error kind of a request that got no answer.
fn transport(what: &str, error: &reqwest::Error) -> String {
    let why = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "transport"
    };
    format!("{what}: {why}")
}

/// The JSON line of a measurement that lasted `seconds`.
fn summarize(samples: &[Sample], seconds: f64) -> Value {
    let sorted = |values: Vec<f64>| {
        let mut values = values;
        values.sort_by(f64::total_cmp);
        values
    };
    let confirmed = sorted(samples.iter().filter_map(|s| s.confirmed_ms).collect());
    let checkout = sorted(samples.iter().filter_map(|s| s.checkout_ms).collect());
    let cart = sorted(samples.iter().filter_map(|s| s.cart_ms).collect());
    let from_schedule = sorted(samples.iter().filter_map(|s| s.from_schedule_ms).collect());
    let buyer_wait = sorted(samples.iter().filter_map(|s| s.buyer_wait_ms).collect());
    let mut errors: BTreeMap<&str, u64> = BTreeMap::new();
    let mut cancelled: BTreeMap<&str, u64> = BTreeMap::new();
    for sample in samples {
        if let Some(kind) = &sample.error {
            *errors.entry(kind).or_default() += 1;
        }
        if let Some(reason) = &sample.cancelled {
            *cancelled.entry(reason).or_default() += 1;
        }
    }
    let stats = |values: &[f64]| {
        json!({
            "p50": round3(percentile(values, 0.50)),
            "p90": round3(percentile(values, 0.90)),
            "p99": round3(percentile(values, 0.99)),
            "max": round3(values.last().copied().unwrap_or(0.0)),
        })
    };
    let ttc = stats(&confirmed);
    let mut line = json!({
        "attempted": samples.len(),
        "accepted": samples.iter().filter(|s| s.accepted).count(),
        "confirmed": confirmed.len(),
        "cancelled": cancelled.values().sum::<u64>(),
        "cancelled_by_reason": cancelled,
        "errors": errors.values().sum::<u64>(),
        "errors_by_kind": errors,
        "seconds": round3(seconds),
        "checkouts_per_s": round1(confirmed.len() as f64 / seconds.max(1e-9)),
        "attempted_per_s": round1(samples.len() as f64 / seconds.max(1e-9)),
        "ttc_p50_ms": ttc["p50"],
        "ttc_p90_ms": ttc["p90"],
        "ttc_p99_ms": ttc["p99"],
        "ttc_max_ms": ttc["max"],
        "checkout_request_ms": stats(&checkout),
        "cart_request_ms": stats(&cart),
    });
    if !from_schedule.is_empty() {
        line["schedule_to_confirmed_ms"] = stats(&from_schedule);
        line["buyer_wait_p99_ms"] = json!(round3(percentile(&buyer_wait, 0.99)));
    }
    line
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_event_is_final_only_when_its_status_is() {
        let pending = "event: status\nid: 1\ndata: {\"status\":\"pending\",\"at\":\"x\"}\n\n";
        assert!(final_status(pending).is_none());
        let confirmed = "event: status\nid: 2\ndata: {\"status\":\"confirmed\",\"at\":\"x\"}\n\n";
        assert!(matches!(final_status(confirmed), Some(Outcome::Confirmed)));
        let cancelled = "id: 3\nevent: status\ndata: {\"status\":\"cancelled\",\"reason\":\"out_of_stock\"}\n\n";
        assert!(
            matches!(final_status(cancelled), Some(Outcome::Cancelled(reason)) if reason == "out_of_stock")
        );
        assert!(final_status(": ping\n\n").is_none());
    }

    #[test]
    fn only_a_gateway_on_this_machine_is_accepted() {
        let args = |url: &str| BenchCheckoutArgs {
            gateway_url: url.to_owned(),
            admin_email: None,
            admin_password_file: None,
            admin_token: Some("t".to_owned()),
            buyers: 4,
            concurrency: 0,
            rate: 0.0,
            count: 10,
            duration_secs: 1,
            warmup: 0,
            follow: Follow::Sse,
            poll_ms: 10,
            confirm_timeout_secs: 5,
            timeout_secs: 10,
        };
        assert!(check_args(&args("http://127.0.0.1:8080")).is_ok());
        assert!(check_args(&args("http://localhost:8080/")).is_ok());
        assert!(check_args(&args("http://10.0.0.1:8080")).is_err());
        assert!(check_args(&args("https://127.0.0.1:8080")).is_err());
        assert!(check_args(&args("http://127.0.0.1.example.com:8080")).is_err());
    }
}
