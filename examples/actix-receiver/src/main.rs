//! Receive signed webhooks with actix-web (work in progress).

fn main() {}
