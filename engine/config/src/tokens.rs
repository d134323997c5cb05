//! Bearer tokens as the configuration holds them: only a token's SHA-256, in hex.

use sha2::{Digest, Sha256};

/// The SHA-256 of a token's text.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh token (32 random bytes as hex) and the configuration lines that admit it.
pub fn new_token(name: &str, roles: &[String]) -> (String, String) {
    let token = format!("ls_{}", hex(&rand::random::<[u8; 32]>()));
    let roles = roles.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(", ");
    let lines = format!("[[auth.tokens]]\nname = {name:?}\nsha256 = \"{}\"\nroles = [{roles}]\n", hex(&digest(&token)));
    (token, lines)
}
