/// The longest error text a plugin sends (docs/protocol.md §13).
pub const MAX_ERROR_TEXT_BYTES: usize = 4096;

/// Cuts a text to 4096 bytes on a character boundary, marked with its size.
pub(crate) fn truncate_text(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT_BYTES {
        return s.to_string();
    }
    let marker = format!("…(truncated, {} bytes)", s.len());
    let mut cut = MAX_ERROR_TEXT_BYTES - marker.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &s[..cut], marker)
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}
