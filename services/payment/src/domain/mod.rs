//! Payment rules with no axum, SQL or provider in sight: card data as it arrives
//! ([`card`]), and a payment's states with what each command may do to it ([`payment`]).

pub mod card;
pub mod payment;
