//! Random bytes and random JWT-shaped signatures thrown at the receiver
//! over HTTP: it never panics, never answers 2xx or 5xx, never changes the store.

use crate::webhook_common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use linkfresh::sim::SigningKey;
use proptest::prelude::*;
use serde_json::json;

use webhook_common::{Rig, now, rig};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signature header: free text, or three dot-separated segments whose
/// header segment is JSON with assorted `alg`/`kid` values.
fn signature() -> impl Strategy<Value = Signature> {
    let alg = prop_oneof![
        Just(json!("none")),
        Just(json!("ES256")),
        Just(json!("HS256")),
        Just(json!("RS256")),
        Just(json!("EdDSA")),
        Just(json!(null)),
        "[ -~]{0,12}".prop_map(|s| json!(s)),
    ];
    let kid = prop_oneof![
        Just(json!("sim-1")),
        Just(json!(null)),
        Just(json!(42)),
        "[ -~]{0,16}".prop_map(|s| json!(s)),
    ];
    prop_oneof![
        "[ -~]{0,300}".prop_map(Signature::Text),
        (
            alg,
            kid,
            prop::collection::vec(any::<u8>(), 0..120),
            prop::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(alg, kid, claims, sig)| {
                let header = json!({ "alg": alg, "kid": kid, "typ": "JWT" });
                Signature::Text(format!(
                    "{}.{}.{}",
                    b64(&serde_json::to_vec(&header).unwrap()),
                    b64(&claims),
                    b64(&sig)
                ))
            }),
        Just(Signature::ValidForBody),
    ]
}

#[derive(Debug, Clone)]
enum Signature {
    Text(String),
    /// A genuine signature over the random body: verification passes, the
    /// body still must not be taken for an event.
    ValidForBody,
}

async fn one(r: &Rig, sig: Signature, body: Vec<u8>) -> Option<u16> {
    let token = match sig {
        Signature::Text(t) => t,
        Signature::ValidForBody => r.sim.sign_claims(&SigningKey::claims_for(&body, now())),
    };
    r.sim
        .send_raw(&r.url, &[("moneykit-signature", token.as_str())], &body)
        .await
}

#[test]
fn random_bodies_and_signatures_never_panic_or_change_the_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(rig());
    let before = rt.block_on(r.snapshot());
    proptest!(ProptestConfig::with_cases(200), |(sig in signature(), body in prop::collection::vec(any::<u8>(), 0..2048))| {
        let status = rt.block_on(one(&r, sig, body));
        prop_assert!(matches!(status, Some(400) | Some(413)), "status {status:?}");
    });
    assert_eq!(rt.block_on(r.snapshot()), before);
    assert!(
        r.jwks_requests() <= 3,
        "unknown kids must not hammer the JWKS"
    );
}
