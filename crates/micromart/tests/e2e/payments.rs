//! Payments through the gateway, the shop's in-process bus carrying an order's payment
//! commands as the order service will: a customer registers a card, the payment is
//! authorized and captured over the bus, the customer reads it, an admin refunds it with an
//! `Idempotency-Key`; another customer sees none of it; a declining card fails the payment.

use std::time::Duration;

use contracts::money::{Currency, Money};
use contracts::payment::{
    event_subject, types, AuthorizePayment, CapturePayment, PaymentCommand, STREAM,
};
use platform::events::{ConsumerConfig, Envelope, EventBus as _, Subscription};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::TestShop;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").expect("a currency")).expect("an amount")
}

async fn user_id(shop: &TestShop, token: &str) -> Uuid {
    let me = shop.get("/api/v1/users/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    me.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the user's id")
}

async fn register_card(shop: &TestShop, token: &str, number: &str) -> Uuid {
    let card = shop
        .post(
            "/api/v1/payment-methods",
            Some(token),
            json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"}),
        )
        .await;
    assert_eq!(card.status, StatusCode::CREATED, "{}", card.body);
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    assert_eq!(card.body["last4"], digits[digits.len() - 4..]);
    assert!(!card.body.to_string().contains(&digits), "{}", card.body);
    card.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("the card's id")
}

/// The order service's view: commands out, answers in, on the shop's own bus.
struct Order {
    id: Uuid,
    answers: Subscription,
}

impl Order {
    async fn new(shop: &mut TestShop) -> Self {
        let id = Uuid::now_v7();
        let answers = shop
            .shop()
            .shared
            .bus
            .subscribe(ConsumerConfig {
                stream: STREAM.name.to_owned(),
                durable: format!("e2e-{id}"),
                subjects: vec![event_subject(id)],
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
                backoff: Vec::new(),
            })
            .await
            .expect("an answer consumer");
        Self { id, answers }
    }

    async fn send(&self, shop: &mut TestShop, command: PaymentCommand) {
        let envelope = Envelope::new("/order", &command.event_type(), command.data())
            .with_subject(self.id.to_string());
        shop.shop()
            .shared
            .bus
            .publish(&command.subject(), &envelope)
            .await
            .expect("the bus takes the command");
    }

    /// Asks payment to authorize `amount` on `card` for `customer`; answers the reply.
    async fn authorize(
        &mut self,
        shop: &mut TestShop,
        customer_id: Uuid,
        card: Uuid,
        amount: Money,
    ) -> (String, Value) {
        let command = PaymentCommand::Authorize(AuthorizePayment {
            order_id: self.id,
            customer_id,
            payment_method_id: card,
            amount,
        });
        self.send(shop, command).await;
        self.answer().await
    }

    async fn answer(&mut self) -> (String, Value) {
        let delivery = tokio::time::timeout(Duration::from_secs(10), self.answers.next())
            .await
            .expect("an answer in time")
            .expect("the subscription lasts");
        let answer = (
            delivery.envelope.r#type.clone(),
            delivery.envelope.data.clone(),
        );
        delivery.ack().await.expect("acked");
        answer
    }
}

#[tokio::test]
async fn an_order_is_paid_over_the_bus_read_and_refunded_through_the_gateway() {
    let mut shop = TestShop::start().await;
    let (alice, _) = shop.customer("alice-pays@example.com").await;
    let (bob, _) = shop.customer("bob-pays@example.com").await;
    let (admin, _) = shop.admin().await;
    let customer_id = user_id(&shop, &alice).await;
    let card = register_card(&shop, &alice, "4242 4242 4242 4242").await;

    let mut order = Order::new(&mut shop).await;
    let (kind, authorized) = order
        .authorize(&mut shop, customer_id, card, eur(4_990))
        .await;
    assert_eq!(kind, types::AUTHORIZED, "{authorized}");
    let payment_id = authorized["payment_id"].as_str().unwrap().to_owned();
    order
        .send(
            &mut shop,
            PaymentCommand::Capture(CapturePayment {
                order_id: order.id,
                amount: eur(4_990),
            }),
        )
        .await;
    let (kind, captured) = order.answer().await;
    assert_eq!(kind, types::CAPTURED, "{captured}");

    // The owner reads it by order and by id; another customer finds nothing.
    let by_order = format!("/api/v1/payments?order_id={}", order.id);
    let mine = shop.get(&by_order, Some(&alice)).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.body);
    let listed = mine
        .body
        .as_array()
        .or(mine.body["items"].as_array())
        .unwrap();
    assert_eq!(listed.len(), 1, "{}", mine.body);
    assert_eq!(listed[0]["state"], "captured");
    let by_id = format!("/api/v1/payments/{payment_id}");
    let payment = shop.get(&by_id, Some(&alice)).await;
    assert_eq!(payment.status, StatusCode::OK, "{}", payment.body);
    assert_eq!(
        payment.body["payment_method"]["last4"], "4242",
        "{}",
        payment.body
    );
    let theirs = shop.get(&by_order, Some(&bob)).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.body);
    assert!(
        !theirs.body.to_string().contains(&payment_id),
        "{}",
        theirs.body
    );
    assert_eq!(
        shop.get(&by_id, Some(&bob)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        shop.get(&by_id, None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Refunds: an admin's, with a key; replayed, it refunds nothing more.
    let refunds = format!("/api/v1/payments/{payment_id}/refunds");
    let body = json!({"amount": {"amount": 1_000, "currency": "EUR"}});
    let refund = |token: &str, key: Option<&str>| {
        let request = shop
            .request(Method::POST, &refunds, Some(token))
            .json(&body);
        match key {
            Some(key) => request.header("idempotency-key", key),
            None => request,
        }
    };
    let by_customer = shop.send(refund(&alice, Some("r-1"))).await;
    assert_eq!(
        by_customer.status,
        StatusCode::FORBIDDEN,
        "{}",
        by_customer.body
    );
    shop.send(refund(&admin, None))
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "idempotency-key-missing");
    let first = shop.send(refund(&admin, Some("r-1"))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.body["state"], "succeeded", "{}", first.body);
    let again = shop.send(refund(&admin, Some("r-1"))).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    assert_eq!(again.body, first.body);
    let (kind, refunded) = order.answer().await;
    assert_eq!(kind, types::REFUNDED, "{refunded}");
    assert_eq!(refunded["total_refunded"]["amount"], 1_000);
    let payment = shop.get(&by_id, Some(&alice)).await;
    assert_eq!(
        payment.body["refunded"]["amount"], 1_000,
        "one refund of 10.00: {}",
        payment.body
    );
    shop.stop().await;
}

#[tokio::test]
async fn a_declining_card_fails_the_payment_with_its_reason() {
    let mut shop = TestShop::start().await;
    let (alice, _) = shop.customer("declined@example.com").await;
    let customer_id = user_id(&shop, &alice).await;
    let card = register_card(&shop, &alice, "4000 0000 0000 0002").await;
    let mut order = Order::new(&mut shop).await;
    let (kind, failed) = order
        .authorize(&mut shop, customer_id, card, eur(1_200))
        .await;
    assert_eq!(kind, types::FAILED, "{failed}");
    assert_eq!(failed["reason"], "card_declined", "{failed}");
    let payments = shop
        .get(
            &format!("/api/v1/payments?order_id={}", order.id),
            Some(&alice),
        )
        .await;
    assert!(
        payments.body.to_string().contains("card_declined"),
        "{}",
        payments.body
    );
    shop.stop().await;
}
