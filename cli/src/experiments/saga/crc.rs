//! CRC-32 (IEEE), and forcing a body to a chosen CRC-32: the attack on a
//! webhook signature that trusts the checksum (`HMAC(id|time|crc32(body))`,
//! issue 11, item 1). CRC-32 is affine over GF(2), so flipping chosen bits
//! of 64 free characters moves it anywhere; the flips are found by Gaussian
//! elimination, no search. Written out (a dozen lines) rather than adding a
//! crate to the CLI for one experiment's forgeries.

/// The free characters: each is `0` or `1`.
const PAD: usize = 64;

/// CRC-32/ISO-HDLC, as zlib, PNG and `crc32fast` compute it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// `template` with its `{pad}` replaced by 64 characters of `0`/`1` chosen
/// so that the result's CRC-32 is `target`; `None` without a `{pad}` (or,
/// vanishingly rarely, if the 64 flips don't span all 32 bits).
pub fn with_crc32(template: &str, target: u32) -> Option<String> {
    let at = template.find("{pad}")?;
    let mut bytes = template.replacen("{pad}", &"0".repeat(PAD), 1).into_bytes();
    let base = crc32(&bytes);
    // basis[b]: flips (mask) whose CRC change (delta) has its top bit at b.
    let mut basis: [Option<(u32, u64)>; 32] = [None; 32];
    for i in 0..PAD {
        bytes[at + i] ^= 1;
        let (mut delta, mut mask) = (crc32(&bytes) ^ base, 1u64 << i);
        bytes[at + i] ^= 1;
        while delta != 0 {
            let bit = 31 - delta.leading_zeros() as usize;
            match basis[bit] {
                Some((d, m)) => {
                    delta ^= d;
                    mask ^= m;
                }
                None => {
                    basis[bit] = Some((delta, mask));
                    break;
                }
            }
        }
    }
    let (mut want, mut flips) = (base ^ target, 0u64);
    while want != 0 {
        let (d, m) = basis[31 - want.leading_zeros() as usize]?;
        want ^= d;
        flips ^= m;
    }
    for i in 0..PAD {
        if flips >> i & 1 == 1 {
            bytes[at + i] ^= 1;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value_and_a_known_collision() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"plumless"), crc32(b"buckeroo"));
    }

    #[test]
    fn any_target_crc_is_reached_and_only_the_pad_changes() {
        let template = r#"{"id":"WH-1","pad":"{pad}"}"#;
        for target in [0, 1, 0xDEAD_BEEF, u32::MAX, crc32(b"a genuine body")] {
            let forged = with_crc32(template, target).unwrap();
            assert_eq!(crc32(forged.as_bytes()), target);
            assert!(forged.starts_with(r#"{"id":"WH-1","pad":""#));
            assert_eq!(forged.len(), template.len() - "{pad}".len() + PAD);
        }
        assert_eq!(with_crc32("no pad here", 7), None);
    }
}
