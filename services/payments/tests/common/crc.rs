//! Forcing a body's CRC-32 to any value, as an attacker of the old
//! PayPal-style signature (`HMAC(id|time|crc32(body))`) would: CRC-32 is
//! affine over GF(2), so flipping chosen bits of 64 free characters moves it
//! anywhere. Solved by Gaussian elimination, no search.

/// The free characters: each is `0` or `1`.
const PAD: usize = 64;

/// `template` with its `{pad}` replaced by 64 characters of `0`/`1` chosen
/// so that the result's CRC-32 is `target`; `None` if there is no `{pad}`
/// (or, vanishingly rarely, the 64 flips don't span all 32 bits).
pub fn with_crc32(template: &str, target: u32) -> Option<String> {
    let at = template.find("{pad}")?;
    let mut bytes = template.replacen("{pad}", &"0".repeat(PAD), 1).into_bytes();
    let base = crc32fast::hash(&bytes);
    // basis[b]: a combination of flips (mask) whose CRC change (delta) has
    // its highest set bit at b.
    let mut basis: [Option<(u32, u64)>; 32] = [None; 32];
    for i in 0..PAD {
        bytes[at + i] ^= 1;
        let (mut delta, mut mask) = (crc32fast::hash(&bytes) ^ base, 1u64 << i);
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
