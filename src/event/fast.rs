//! A single-pass scanner for the common shape of the input contracts.
//!
//! It accepts a strict subset of what the serde path accepts — one JSON object of the known
//! fields, strings without escapes, numbers, booleans and nulls where the contracts allow them —
//! and produces exactly what the serde path would produce for it. Anything else (escapes,
//! unknown or repeated fields, malformed JSON, values of the wrong type, out-of-range numbers)
//! makes it give up, and the serde path decodes the message and reports the error, so dead-letter
//! reasons and messages are unchanged.
//!
//! Numbers are correctly rounded, like serde_json with `float_roundtrip`: a decimal with at most
//! 19 significant digits whose value fits in 53 bits and whose power of ten is exact is converted
//! with one IEEE operation (Clinger's fast path); every other number goes through the standard
//! library's correctly-rounded parser.

use std::borrow::Cow;

use super::{
    parse_rfc3339_ms, small_int_text, Attributes, FeatureValue, Features, LabelText, RawEvent,
    RawPrediction, Text, Timestamp,
};

/// Bytes that end the fast scan of a string: the closing quote, a backslash (escapes are left
/// to serde), control characters (not allowed in JSON strings) and bytes of non-ASCII
/// characters (whose UTF-8 is then checked).
const STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    c = 0x80;
    while c < 0x100 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Exact powers of ten as `f64` (10^22 is the largest exactly representable).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A JSON number as scanned.
struct Number<'a> {
    /// The message the number is in, and where.
    src: &'a [u8],
    start: usize,
    end: usize,
    /// No fraction and no exponent.
    integer: bool,
    negative: bool,
    /// Significant digits as an integer (meaningful when `digits <= 19`).
    mantissa: u64,
    /// Digits accumulated into `mantissa` (leading zeros included).
    digits: u32,
    /// Power of ten to apply to `mantissa` (meaningful when the exponent part is short).
    exp10: i64,
}

impl Number<'_> {
    /// The correctly-rounded value, `None` when out of the `f64` range (serde_json rejects it).
    #[inline]
    fn to_f64(&self) -> Option<f64> {
        const MAX_EXACT: u64 = 1 << 53;
        if self.digits <= 19 && self.mantissa <= MAX_EXACT && self.exp10.unsigned_abs() <= 22 {
            let m = self.mantissa as f64;
            let v = if self.exp10 < 0 {
                m / POW10[(-self.exp10) as usize]
            } else {
                m * POW10[self.exp10 as usize]
            };
            return Some(if self.negative { -v } else { v });
        }
        // (the scanner took only ASCII digits, signs, points and exponent letters)
        let text = std::str::from_utf8(self.src.get(self.start..self.end)?).ok()?;
        text.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    /// The value as an integer, as serde_json hands integers to visitors: `None` for anything
    /// that is not an integer in `i64` range, and for `-0` (which serde_json reads as a float).
    #[inline]
    fn to_i64(&self) -> Option<i64> {
        if !self.integer || (self.negative && self.mantissa == 0) || self.digits > 18 {
            // More than 18 digits may overflow; the serde path handles those exactly.
            return None;
        }
        let m = self.mantissa as i64;
        Some(if self.negative { -m } else { m })
    }
}

/// A word with the high bit set in every byte that ends the fast scan of a string (see
/// [`STRING_STOP`]), and possibly in later bytes; the lowest set bit is exact.
#[inline(always)]
fn string_stops(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    // Bytes below 0x20 (bytes of 0x80 and above keep their high bit out of the mask).
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control | (w & HIGH)
}

/// Powers of ten as integers, for appending up to eight digits to a mantissa.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// Reads eight bytes at `i` as a little-endian word, `None` near the end of the input.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The eight bytes at `k` of a fixed window as a little-endian word.
#[inline(always)]
fn word_at<const N: usize>(z: &[u8; N], k: usize) -> u64 {
    u64::from_le_bytes(z[k..k + 8].try_into().expect("eight bytes"))
}

/// How many of the word's bytes, from the first, are ASCII digits (0 to 8).
#[inline(always)]
fn leading_digits(w: u64) -> u32 {
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A byte is a digit when its high nibble is 3 and its low nibble plus 6 stays below 16.
    let over = ((w & !HIGH).wrapping_add(0x0606_0606_0606_0606)) & HIGH;
    let not_digit = ((w & HIGH) ^ 0x3030_3030_3030_3030) | over;
    not_digit.trailing_zeros() / 8
}

/// Bit `k` set when byte `k` of the sixteen bytes `lo` then `hi` (little-endian) ends the fast
/// scan of a string (see [`STRING_STOP`]), the bits above 15 clear.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn string_stop_mask(lo: u64, hi: u64) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };
    // SAFETY: as in `digit_mask`.
    unsafe {
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // As signed bytes, control characters and every byte of 0x80 and above are below ' '.
        let other = _mm_cmplt_epi8(v, _mm_set1_epi8(b' ' as i8));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), other)) as u32
    }
}

/// [`string_stop_mask`] without SSE2.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn string_stop_mask(lo: u64, hi: u64) -> u32 {
    mask_bytewise(lo, hi, |c| STRING_STOP[usize::from(c)])
}

/// Bit `k` set when `pick` holds for byte `k` of the sixteen bytes `lo` then `hi`
/// (little-endian): the 16-byte masks where SSE2 is missing, and their reference in tests.
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
fn mask_bytewise(lo: u64, hi: u64, pick: impl Fn(u8) -> bool) -> u32 {
    let bytes = (u128::from(hi) << 64 | u128::from(lo)).to_le_bytes();
    bytes
        .iter()
        .enumerate()
        .fold(0, |m, (k, &c)| m | u32::from(pick(c)) << k)
}

/// Bit `k` set when byte `k` of the sixteen bytes `lo` then `hi` (little-endian) is an ASCII
/// digit, the bits above 15 clear.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn digit_mask(lo: u64, hi: u64) -> u32 {
    use std::arch::x86_64::{
        _mm_cmplt_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x, _mm_sub_epi8,
        _mm_xor_si128,
    };
    // SAFETY: the build enables SSE2 (checked by the `cfg` above; every x86-64 processor has
    // it), the only requirement of these intrinsics, which touch no memory.
    unsafe {
        let v = _mm_set_epi64x(hi as i64, lo as i64);
        // Digits become -128 to -119 (byte minus '0', top bit flipped); all else is above.
        let shifted = _mm_xor_si128(
            _mm_sub_epi8(v, _mm_set1_epi8(b'0' as i8)),
            _mm_set1_epi8(i8::MIN),
        );
        let is_digit = _mm_cmplt_epi8(shifted, _mm_set1_epi8(i8::MIN + 10));
        _mm_movemask_epi8(is_digit) as u32
    }
}

/// [`digit_mask`] without SSE2.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn digit_mask(lo: u64, hi: u64) -> u32 {
    mask_bytewise(lo, hi, |c| c.is_ascii_digit())
}

/// The decimal value of the word's first `n` bytes (1 to 8, all ASCII digits).
#[inline(always)]
fn digits_value(w: u64, n: u32) -> u64 {
    // Digit values, the first `n` moved to the top so that the rest read as leading zeros
    // (bytes beyond the digits, and any borrow they cause, are shifted out).
    let v = w.wrapping_sub(0x3030_3030_3030_3030) << (8 * (8 - n));
    // Pairs, then quadruples, then the whole: the first byte is the most significant digit.
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v = ((v & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32)))
        .wrapping_add(((v >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32)));
    v >> 32
}

/// Consumes a run of ASCII digits at `*i`, appending them to `mantissa` (wrapping: callers
/// only trust it up to 19 digits); returns how many there were.
#[inline(always)]
fn digit_run(b: &[u8], i: &mut usize, mantissa: &mut u64) -> u32 {
    let mut count = 0;
    while let Some(w) = word(b, *i) {
        let n = leading_digits(w);
        if n > 0 {
            *mantissa = mantissa
                .wrapping_mul(POW10_U64[n as usize])
                .wrapping_add(digits_value(w, n));
        }
        *i += n as usize;
        count += n;
        if n < 8 {
            return count;
        }
    }
    // The last few bytes of the input, one at a time.
    while let Some(&c) = b.get(*i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        *mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
        *i += 1;
        count += 1;
    }
    count
}

/// Bytes examined at once by [`compact_member`].
const MEMBER_WINDOW: usize = 64;

/// A feature member of the common compact shape, read by [`compact_member`].
struct CompactMember<'a> {
    key: &'a str,
    value: f64,
    /// Index of the `,` or `}` after the value.
    end: usize,
    /// Whether that was the object's closing brace.
    last: bool,
}

/// Bytes a compact number can span, with the byte after it and the reads past it.
const NUMBER_WINDOW: usize = 24;

/// The number at `z[p..]` when it has the common compact shape — at most seven digits before
/// and after an optional decimal point — read with a fixed number of word operations; the
/// value and the index just past it, or `None` for anything else (the general reading then
/// accepts or rejects it). `z` must hold [`NUMBER_WINDOW`] bytes from `p`. What follows is not
/// looked at: the caller checks it is what may follow a number, which rules out an exponent.
///
/// The value is what [`Number::to_f64`] gives: at most 14 significant digits fit in 53 bits,
/// and a power of ten up to 10^7 is exact, so one IEEE division is correctly rounded.
#[inline(always)]
fn compact_number<const N: usize>(z: &[u8; N], p: usize) -> Option<(f64, usize)> {
    let at = |k: usize| word_at(z, k);
    let negative = z[p] == b'-';
    let first = p + usize::from(negative);
    let w = at(first);
    // Which of the sixteen bytes from the first digit are digits: both runs from one mask.
    let digits = digit_mask(w, at(first + 8));
    let int_digits = (!digits).trailing_zeros();
    // 1 to 7 digits, and a leading zero only on its own.
    if int_digits == 0 || int_digits >= 8 || (z[first] == b'0' && int_digits > 1) {
        return None;
    }
    let mut end = first + int_digits as usize;
    // (values below 2^53: the conversion through i64, one instruction, is exact)
    let value = if z[end] == b'.' {
        let f = at(end + 1);
        // (at most 15 bits remain, so a run of 8 or more is seen as such)
        let frac_digits = (!(digits >> (int_digits + 1))).trailing_zeros();
        if frac_digits == 0 || frac_digits >= 8 {
            return None;
        }
        end += 1 + frac_digits as usize;
        let mantissa = if int_digits + frac_digits <= 8 {
            // Both sides of the point side by side in one word, converted at once.
            let joined = (w & ((1 << (8 * int_digits)) - 1)) | (f << (8 * int_digits));
            digits_value(joined, int_digits + frac_digits)
        } else {
            digits_value(w, int_digits) * POW10_U64[frac_digits as usize]
                + digits_value(f, frac_digits)
        };
        mantissa as i64 as f64 / POW10[frac_digits as usize]
    } else {
        digits_value(w, int_digits) as i64 as f64
    };
    Some((if negative { -value } else { value }, end))
}

/// The member at `i` when it has the common compact shape — `"key":number` directly followed
/// by `,` or `}`, the key at most 15 bytes and without escapes, the number as
/// [`compact_number`] reads it — read inside a window of [`MEMBER_WINDOW`] bytes (which holds
/// the number's window); `None` for anything else (the caller then reads the member the
/// general way, which accepts or rejects it).
#[inline(always)]
fn compact_member(b: &[u8], i: usize) -> Option<CompactMember<'_>> {
    let z: &[u8; MEMBER_WINDOW] = b.get(i..i + MEMBER_WINDOW)?.try_into().ok()?;
    let at = |k: usize| word_at(z, k);
    if z[0] != b'"' {
        return None;
    }
    // The key ends in its first sixteen bytes.
    let stops = string_stop_mask(at(1), at(9));
    if stops == 0 {
        return None;
    }
    let close = 1 + stops.trailing_zeros() as usize;
    if z[close] != b'"' || z[close + 1] != b':' {
        return None;
    }
    // (the number starts at most 18 bytes in, so its window fits in this one)
    let (value, end) = compact_number(z, close + 2)?;
    let last = match z[end] {
        b',' => false,
        b'}' => true,
        _ => return None,
    };
    Some(CompactMember {
        // SAFETY: the key's bytes are ASCII (any other byte stops `string_stop_mask` before
        // the closing quote), so valid UTF-8.
        key: unsafe { std::str::from_utf8_unchecked(&z[1..close]) },
        value,
        end: i + end,
        last,
    })
}

/// The keys of an object with a fixed set of them, recognised a whole key at a time: each as
/// the 16 bytes after its opening quote — the name, the closing quote and the colon, then
/// zeros — and a mask of the bytes that count.
struct KnownKeys<const N: usize> {
    names: [&'static str; N],
    bytes: [u128; N],
    masks: [u128; N],
    /// Bytes from the opening quote to past the colon.
    spans: [usize; N],
}

impl<const N: usize> KnownKeys<N> {
    const fn new(names: [&'static str; N]) -> Self {
        let mut bytes = [0u128; N];
        let mut masks = [0u128; N];
        let mut spans = [0usize; N];
        let mut k = 0;
        while k < N {
            let name = names[k].as_bytes();
            let n = name.len() + 2;
            assert!(n <= 16, "known keys are at most 14 bytes");
            let mut b = [0u8; 16];
            let mut j = 0;
            while j < name.len() {
                b[j] = name[j];
                j += 1;
            }
            b[name.len()] = b'"';
            b[name.len() + 1] = b':';
            bytes[k] = u128::from_le_bytes(b);
            spans[k] = 1 + n;
            masks[k] = if n == 16 {
                u128::MAX
            } else {
                (1u128 << (8 * n)) - 1
            };
            k += 1;
        }
        Self {
            names,
            bytes,
            masks,
            spans,
        }
    }
}

/// The top-level fields of the contracts, in their usual order (the bit of each in the
/// scanner's duplicate check is its index).
static TOP_KEYS: KnownKeys<10> = KnownKeys::new([
    "event_id",
    "model_id",
    "model_version",
    "timestamp",
    "features",
    "prediction",
    "latency_ms",
    "attributes",
    "label",
    "value",
]);

/// The fields of a prediction's payload.
static PREDICTION_KEYS: KnownKeys<3> = KnownKeys::new(["score", "label", "value"]);

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// Empty lists whose allocations the features and attributes are decoded into.
    spare: Spare<'a>,
}

/// Lists to decode into, empty: only their allocations are used.
#[derive(Debug, Default)]
pub(super) struct Spare<'a> {
    pub(super) features: Vec<(Cow<'a, str>, FeatureValue<'a>)>,
    pub(super) attributes: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl Spare<'_> {
    /// The lists emptied, their allocations kept, under any lifetime.
    pub(super) fn relabel<'b>(self) -> Spare<'b> {
        Spare {
            features: relabel(self.features),
            attributes: relabel(self.attributes),
        }
    }
}

/// An emptied vector, its allocation kept for an element type of the same size and alignment
/// (here: the same type under another lifetime).
fn relabel<T, U>(mut v: Vec<T>) -> Vec<U> {
    const {
        assert!(std::mem::size_of::<T>() == std::mem::size_of::<U>());
        assert!(std::mem::align_of::<T>() == std::mem::align_of::<U>());
    }
    v.clear();
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: the allocation came from a `Vec` of an element type with the same size and
    // alignment (checked above), so it has the layout a `Vec<U>` of that capacity frees; the
    // length is 0, so no element of either type is read or dropped.
    unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<U>(), 0, v.capacity()) }
}

impl<'a> Scanner<'a> {
    /// Skips whitespace. Compact JSON has none, so the first byte is checked on its own:
    /// everything JSON allows here but whitespace is above the space character.
    #[inline(always)]
    fn ws(&mut self) {
        if self.b.get(self.i).is_some_and(|&c| c > b' ') {
            return;
        }
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\n' | b'\t' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes, borrowed.
    #[inline]
    fn string(&mut self) -> Option<&'a str> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut i = start;
        // Eight bytes at a time while they last, then one at a time.
        let end = loop {
            match word(b, i) {
                Some(w) => {
                    let stops = string_stops(w);
                    if stops != 0 {
                        break i + (stops.trailing_zeros() / 8) as usize;
                    }
                    i += 8;
                }
                None => {
                    while !STRING_STOP[usize::from(*b.get(i)?)] {
                        i += 1;
                    }
                    break i;
                }
            }
        };
        match *b.get(end)? {
            b'"' => {
                self.i = end + 1;
                // SAFETY: every byte between the quotes is ASCII (any other byte stops the
                // scan above before the closing quote), so the bytes are valid UTF-8.
                Some(unsafe { std::str::from_utf8_unchecked(&b[start..end]) })
            }
            c if c >= 0x80 => self.non_ascii_string(start),
            _ => None,
        }
    }

    /// The rest of [`Scanner::string`] for a string with non-ASCII characters: its end found
    /// byte by byte, its UTF-8 checked.
    #[cold]
    fn non_ascii_string(&mut self, start: usize) -> Option<&'a str> {
        let b = self.b;
        let mut i = start;
        loop {
            match *b.get(i)? {
                b'"' => break,
                c if c == b'\\' || c < 0x20 => return None,
                _ => i += 1,
            }
        }
        let s = std::str::from_utf8(&b[start..i]).ok()?;
        self.i = i + 1;
        Some(s)
    }

    /// `true`, `false` or `null` (`Some(None)` for null).
    #[inline]
    fn literal(&mut self) -> Option<Option<bool>> {
        let rest = &self.b[self.i..];
        let (v, n) = if rest.starts_with(b"true") {
            (Some(true), 4)
        } else if rest.starts_with(b"false") {
            (Some(false), 5)
        } else if rest.starts_with(b"null") {
            (None, 4)
        } else {
            return None;
        };
        self.i += n;
        Some(v)
    }

    /// Whether the next value is `null`, consuming it.
    #[inline]
    fn null(&mut self) -> bool {
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A number in strict JSON syntax: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    #[inline(always)]
    fn number(&mut self) -> Option<Number<'a>> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        i += usize::from(negative);
        let mut mantissa = 0u64;
        let mut digits = match b.get(i) {
            // A leading zero stands alone: `01` ends the number after the `0` (and the caller
            // then rejects the `1`).
            Some(b'0') => {
                i += 1;
                1
            }
            Some(b'1'..=b'9') => digit_run(b, &mut i, &mut mantissa),
            _ => return None,
        };
        let mut integer = true;
        let mut exp10 = 0i64;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            let n = digit_run(b, &mut i, &mut mantissa);
            if n == 0 {
                return None;
            }
            digits += n;
            exp10 = -i64::from(n);
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            integer = false;
            let neg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let exp_start = i;
            let mut e = 0i64;
            while let Some(&c) = b.get(i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                // Saturates far beyond any exact power; such numbers take the slow path.
                e = (e * 10 + i64::from(d)).min(1 << 20);
                i += 1;
            }
            if i == exp_start {
                return None;
            }
            exp10 += if neg { -e } else { e };
        }
        self.i = i;
        Some(Number {
            src: self.b,
            start,
            end: i,
            integer,
            negative,
            mantissa,
            digits,
            exp10,
        })
    }

    /// A number as `f64`: the compact shape directly, anything else the general way.
    #[inline]
    fn f64(&mut self) -> Option<f64> {
        let z: Option<&[u8; NUMBER_WINDOW]> = self
            .b
            .get(self.i..self.i + NUMBER_WINDOW)
            .and_then(|z| z.try_into().ok());
        if let Some(z) = z {
            match compact_number(z, 0) {
                // (an exponent is left to the general reading)
                Some((v, end)) if !matches!(z[end], b'e' | b'E') => {
                    self.i += end;
                    return Some(v);
                }
                _ => {}
            }
        }
        self.number()?.to_f64()
    }

    /// `Option<f64>`: null or a number.
    #[inline]
    fn opt_f64(&mut self) -> Option<Option<f64>> {
        if self.null() {
            return Some(None);
        }
        self.f64().map(Some)
    }

    /// `Option<Text>`: null or a string.
    #[inline]
    fn opt_text(&mut self) -> Option<Option<Text<'a>>> {
        if self.peek() != Some(b'"') && self.null() {
            return Some(None);
        }
        Some(Some(Text(Cow::Borrowed(self.string()?))))
    }

    /// A class label or attribute value: string, integer or boolean.
    #[inline]
    fn label_text(&mut self) -> Option<LabelText<'a>> {
        match self.peek()? {
            b'"' => Some(LabelText(Cow::Borrowed(self.string()?))),
            b't' | b'f' => {
                let v = self.literal()??;
                Some(LabelText(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            d @ b'0'..=b'9'
                if !self
                    .b
                    .get(self.i + 1)
                    .is_some_and(|&c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E')) =>
            {
                // One digit, the usual class label, without the number reader.
                self.i += 1;
                small_int_text(i64::from(d - b'0')).map(|t| LabelText(Cow::Borrowed(t)))
            }
            _ => {
                let v = self.number()?.to_i64()?;
                Some(LabelText(match small_int_text(v) {
                    Some(s) => Cow::Borrowed(s),
                    None => Cow::Owned(v.to_string()),
                }))
            }
        }
    }

    /// `Option<LabelText>`.
    #[inline]
    fn opt_label_text(&mut self) -> Option<Option<LabelText<'a>>> {
        if self.null() {
            return Some(None);
        }
        self.label_text().map(Some)
    }

    /// `Option<Timestamp>`: RFC 3339 string or integer epoch milliseconds.
    fn opt_timestamp(&mut self) -> Option<Option<Timestamp>> {
        if self.null() {
            return Some(None);
        }
        if self.peek()? == b'"' {
            return parse_rfc3339_ms(self.string()?).map(|t| Some(Timestamp(t)));
        }
        self.number()?.to_i64().map(|t| Some(Timestamp(t)))
    }

    /// Iterates the members of an object: calls `member(self, key)` with the scanner just past
    /// the colon; `member` consumes the value.
    #[inline]
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.open()? {
            return Some(());
        }
        loop {
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            if self.member_end()? {
                return Some(());
            }
        }
    }

    /// The opening brace of an object: `Some(true)` when the object is empty (and consumed
    /// whole), `Some(false)` with the scanner at its first member, `None` for no object.
    #[inline]
    fn open(&mut self) -> Option<bool> {
        self.eat(b'{')?;
        self.ws();
        Some(self.eat(b'}').is_some())
    }

    /// What follows a member's value: `Some(true)` past the object's closing brace,
    /// `Some(false)` past a comma (at the next member), `None` for anything else.
    #[inline]
    fn member_end(&mut self) -> Option<bool> {
        self.ws();
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.ws();
                Some(false)
            }
            b'}' => {
                self.i += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// The known key at the scanner and its colon, consumed: the index of the key in `keys`,
    /// tried from `hint` on (keys usually come in order), or `None` for an unknown or
    /// malformed key.
    #[inline]
    fn known_key<const N: usize>(&mut self, keys: &KnownKeys<N>, hint: usize) -> Option<usize> {
        // The opening quote and the 16 bytes after it.
        let whole: Option<&[u8; 17]> = self
            .b
            .get(self.i..self.i + 17)
            .and_then(|z| z.try_into().ok());
        if let Some(z) = whole.filter(|z| z[0] == b'"') {
            let w = u128::from_le_bytes(z[1..].try_into().expect("16 bytes"));
            let hint = if hint < N { hint } else { 0 };
            let found = if w & keys.masks[hint] == keys.bytes[hint] {
                Some(hint)
            } else {
                (0..N).find(|&k| w & keys.masks[k] == keys.bytes[k])
            };
            if let Some(k) = found {
                self.i += keys.spans[k];
                return Some(k);
            }
        }
        // Near the end of the message, with whitespace before the colon, or not known.
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        keys.names.iter().position(|n| *n == key)
    }

    /// Iterates the members of an object whose keys are `keys`, each at most once: calls
    /// `member(self, index)` with the scanner just past the colon; `member` consumes the value.
    /// `None` for an unknown or repeated key.
    #[inline]
    fn known_object<const N: usize>(
        &mut self,
        keys: &KnownKeys<N>,
        mut member: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if self.open()? {
            return Some(());
        }
        let mut seen = 0u32;
        let mut next = 0;
        loop {
            let k = self.known_key(keys, next)?;
            if seen & (1 << k) != 0 {
                return None;
            }
            seen |= 1 << k;
            next = k + 1;
            self.ws();
            member(self, k)?;
            if self.member_end()? {
                return Some(());
            }
        }
    }

    fn features(&mut self) -> Option<Option<Features<'a>>> {
        if self.null() {
            return Some(None);
        }
        let mut out = std::mem::take(&mut self.spare.features);
        out.reserve(24);
        if self.open()? {
            return Some(Some(Features(out)));
        }
        loop {
            // The common member first, then anything else the general way.
            let last = if let Some(m) = compact_member(self.b, self.i) {
                out.push((Cow::Borrowed(m.key), FeatureValue::Number(m.value)));
                self.i = m.end + 1;
                m.last
            } else {
                // (whitespace after the comma of a compact member is skipped here)
                self.ws();
                let key = self.string()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                let v = self.feature_value()?;
                out.push((Cow::Borrowed(key), v));
                self.member_end()?
            };
            if last {
                return Some(Some(Features(out)));
            }
        }
    }

    /// A feature value: number, string, boolean (as 0 or 1) or null.
    #[inline(always)]
    fn feature_value(&mut self) -> Option<FeatureValue<'a>> {
        Some(match self.peek()? {
            b'"' => FeatureValue::Text(Cow::Borrowed(self.string()?)),
            b't' | b'f' | b'n' => match self.literal()? {
                Some(true) => FeatureValue::Number(1.0),
                Some(false) => FeatureValue::Number(0.0),
                None => FeatureValue::Null,
            },
            _ => FeatureValue::Number(self.f64()?),
        })
    }

    fn attributes(&mut self) -> Option<Option<Attributes<'a>>> {
        if self.null() {
            return Some(None);
        }
        let mut out = std::mem::take(&mut self.spare.attributes);
        out.reserve(4);
        self.object(|s, key| {
            let v = s.label_text()?;
            out.push((Cow::Borrowed(key), v.0));
            Some(())
        })?;
        Some(Some(Attributes(out)))
    }

    fn prediction(&mut self) -> Option<Option<RawPrediction<'a>>> {
        if self.peek()? == b'n' {
            // `null` is not a prediction: the serde path rejects it.
            return None;
        }
        let mut p = RawPrediction {
            score: None,
            label: None,
            value: None,
            probabilities: None,
        };
        self.known_object(&PREDICTION_KEYS, |s, k| {
            match k {
                0 => p.score = s.opt_f64()?,
                1 => p.label = s.opt_label_text()?,
                _ => p.value = s.opt_f64()?,
            }
            Some(())
        })?;
        Some(Some(p))
    }
}

/// Scans `bytes` into `raw` (all `None` before), decoding features and attributes into
/// `spare`; false when it is not of the common shape (the serde path then decides, and `raw`
/// holds whatever was read before). Whatever it accepts is valid UTF-8: every byte outside
/// strings is one of the ASCII characters of JSON's syntax, and strings are either ASCII or
/// checked.
#[inline(always)]
pub(super) fn scan_into<'a>(bytes: &'a [u8], spare: Spare<'a>, raw: &mut RawEvent<'a>) -> bool {
    let mut s = Scanner {
        b: bytes,
        i: 0,
        spare,
    };
    s.ws();
    let read = s.known_object(&TOP_KEYS, |s, k| {
        match k {
            0 => raw.event_id = s.opt_text()?,
            1 => raw.model_id = s.opt_text()?,
            2 => raw.model_version = s.opt_text()?,
            3 => raw.timestamp = s.opt_timestamp()?,
            4 => {
                raw.features = s.features()?;
                raw.scanned_features = true;
            }
            5 => raw.prediction = s.prediction()?,
            6 => raw.latency_ms = s.opt_f64()?,
            7 => raw.attributes = s.attributes()?,
            8 => raw.label = s.opt_label_text()?,
            _ => raw.value = s.opt_f64()?,
        }
        Some(())
    });
    s.ws();
    read.is_some() && s.i == s.b.len()
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::super::{classify_json_error, EventKind};
    use super::*;

    fn scan<'a>(bytes: &'a [u8], spare: Spare<'a>) -> Option<RawEvent<'a>> {
        let mut raw = RawEvent::default();
        scan_into(bytes, spare, &mut raw).then_some(raw)
    }

    const KINDS: [Option<EventKind>; 4] = [
        None,
        Some(EventKind::Prediction),
        Some(EventKind::Features),
        Some(EventKind::Label),
    ];

    /// What the serde path makes of `text` (for every expected kind), as text: `Debug` of `f64`
    /// tells every bit pattern apart but NaN, which decoding never produces.
    fn via_serde(text: &str) -> Vec<String> {
        KINDS
            .iter()
            .map(|&k| {
                let r = serde_json::from_str::<RawEvent<'_>>(text)
                    .map_err(classify_json_error)
                    .and_then(|raw| raw.into_event(k));
                format!("{r:?}")
            })
            .collect()
    }

    fn via_scan(text: &str) -> Option<Vec<String>> {
        scan(text.as_bytes(), Spare::default())?;
        Some(
            KINDS
                .iter()
                .map(|&k| {
                    format!(
                        "{:?}",
                        scan(text.as_bytes(), Spare::default())
                            .expect("scans")
                            .into_event(k)
                    )
                })
                .collect(),
        )
    }

    /// The scanner either gives up or agrees with serde exactly; returns whether it accepted.
    fn agrees(text: &str) -> bool {
        match via_scan(text) {
            None => false,
            Some(fast) => {
                assert_eq!(fast, via_serde(text), "{text}");
                true
            }
        }
    }

    const LINE: &str = r#"{"event_id":"model-0-1","model_id":"model-0","model_version":"v1","timestamp":"2027-01-01T00:00:00.001Z","features":{"f0":4.098976,"f1":-5.085183,"f2":13,"f3":true,"f4":null,"c0":"north"},"prediction":{"score":0.463217,"label":0},"latency_ms":9.240,"attributes":{"gender":"f","region":"south","tier":3,"vip":false}}"#;

    #[test]
    fn sixteen_byte_masks_mark_exactly_their_bytes() {
        let mut rng = SmallRng::seed_from_u64(5);
        let pool = b"0123456789/:.-eE,} \"\\\x1f!#\x00\x7f\x80\xb9\xff";
        for _ in 0..20_000 {
            let (lo, hi) = if rng.random_bool(0.5) {
                let mut b = [0u8; 16];
                b.iter_mut()
                    .for_each(|c| *c = pool[rng.random_range(0..pool.len())]);
                let w = u128::from_le_bytes(b);
                (w as u64, (w >> 64) as u64)
            } else {
                (rng.random::<u64>(), rng.random::<u64>())
            };
            let digits = mask_bytewise(lo, hi, |c| c.is_ascii_digit());
            assert_eq!(digit_mask(lo, hi), digits, "{lo:x} {hi:x}");
            let stops = mask_bytewise(lo, hi, |c| STRING_STOP[usize::from(c)]);
            assert_eq!(string_stop_mask(lo, hi), stops, "{lo:x} {hi:x}");
        }
    }

    #[test]
    fn takes_the_common_shapes() {
        for text in [
            LINE,
            r#"{"event_id": "7f0c", "model_id": "credit-risk", "model_version": "v7",
 "timestamp": "2026-11-27T04:35:18.123Z",
 "features": {"income": 52000.0, "age": 41, "region": "north", "tenure": null},
 "prediction": {"score": 0.83, "label": 1},
 "latency_ms": 18.4,
 "attributes": {"gender": "f", "channel": "mobile"}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1700000000000,"label":0}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1700000000000,"label":"cat"}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":-5,"value":-2.5e3}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":1}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{}}"#,
            // Whitespace after compact members, read well before the end of the message.
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":1.5, "y":2,
"z":"k" ,"w":0.25,"v":3}, "attributes":{"segment":"long-enough-to-keep-the-window"}}"#,
            // Exponents after compact-looking mantissas, in features and elsewhere.
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"features":{"x":1.5e3,"y":-2.25E-2,"z":7e1},"prediction":{"score":2.5e-1},"latency_ms":1.5e1,"attributes":{"segment":"long-enough-to-keep-the-window"}}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":1.5}}"#,
            r#"{"event_id":"","model_id":"m","model_version":"v","timestamp":1,"prediction":{}}"#,
            r#"{"event_id":"a","model_id":"m","model_version":null,"timestamp":1,"prediction":{"label":true}}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"label":"x"},"latency_ms":-1}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"label":12345}}"#,
            r#"{"event_id":"a","model_version":"v","timestamp":1,"prediction":{"score":0.5}}"#,
            r#"{"event_id":"é","model_id":"m","timestamp":null,"label":1}"#,
            r#"  {}  "#,
            "\t{\"event_id\"\n:\r\"a\" ,\"model_id\":\"m\",\"timestamp\":0,\"label\":1}\n",
        ] {
            assert!(agrees(text), "not taken by the scanner: {text}");
        }
    }

    #[test]
    fn leaves_the_unusual_to_serde() {
        for text in [
            r#"{"event_id":"a\"b","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":0.5}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":1,"other":2}"#,
            r#"{"event_idx":"a","model_id":"m","timestamp":1,"label":1}"#,
            r#"{"event_i":"a","model_id":"m","timestamp":1,"label":1}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"scores":0.5},"latency_ms":1}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":0.5,"score":0.5},"latency_ms":1}"#,
            r#"{"event_id":"a","model_id":"m","event_id":"b","timestamp":1,"label":1}"#,
            r#"{"event_id":"a","event_id":"b","model_id":"m","timestamp":1,"label":1}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":1,}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":1} x"#,
            r#"{"event_id":"a","model_id":"m","timestamp":"yesterday","label":1}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1.5,"label":1}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":-0,"label":1}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":99999999999999999999,"label":1}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":-0}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":1.0}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"label":01}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":[1]}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":.5}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":1.}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":1e}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":+1}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"features":{"x":nan}}"#,
            r#"{"event_id":"a","model_id":"m","timestamp":1,"attributes":{"x":null}}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":0.5,"probabilities":[0.5,0.5]}}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"score":0.5,"score":0.5}}"#,
            "{\"event_id\":\"a\tb\",\"model_id\":\"m\",\"timestamp\":1,\"label\":1}",
            r#"[1,2,3]"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":null}"#,
            r#"{"event_id":"a","model_id":"m","model_version":"v","timestamp":1,"prediction":{"value":1e400}}"#,
            r#"{"event_id":"a","model_id""#,
        ] {
            assert!(via_scan(text).is_none(), "taken by the scanner: {text}");
        }
    }

    /// Random damage to valid events: whatever the scanner accepts, serde decodes the same.
    #[test]
    fn agrees_with_serde_on_mutations() {
        let mut rng = SmallRng::seed_from_u64(7);
        let alphabet = b"{}[]\":,.-+eE0123456789 \\tfnulrsa";
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut b = LINE.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..b.len());
                let c = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => b[i] = c,
                    1 => b.insert(i, c),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            if let Ok(text) = std::str::from_utf8(&b) {
                accepted += usize::from(agrees(text));
            }
        }
        assert!(accepted > 1000, "only {accepted} mutations were scanned");
    }

    /// Byte damage with non-ASCII and invalid UTF-8 bytes: whatever the scanner accepts is
    /// valid UTF-8 and decodes as serde decodes it.
    #[test]
    fn accepts_only_valid_utf8() {
        let line = LINE
            .replace("\"south\"", "\"zürich €\"")
            .replace("\"f1\"", "\"fé\"");
        let mut rng = SmallRng::seed_from_u64(23);
        let alphabet = b"\x80\xbf\xc3\xa9\xe2\x82\xac\xf0\x9f\xff\xc0\xeda\"";
        let (mut accepted, mut non_ascii) = (0, 0);
        for _ in 0..50_000 {
            let mut b = line.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..3) {
                let i = rng.random_range(0..b.len());
                let c = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => b[i] = c,
                    1 => b.insert(i, c),
                    _ => {
                        b.remove(i);
                    }
                }
            }
            if scan(&b, Spare::default()).is_some() {
                let text = std::str::from_utf8(&b).expect("the scanner took invalid UTF-8");
                assert!(agrees(text));
                accepted += 1;
                non_ascii += usize::from(!text.is_ascii());
            }
        }
        assert!(accepted > 1000, "only {accepted} were scanned");
        assert!(
            non_ascii > 1000,
            "only {non_ascii} non-ASCII ones were scanned"
        );
    }

    /// The eight-bytes-at-a-time digit helpers agree with a byte-at-a-time reading.
    #[test]
    fn word_digits_match_bytes() {
        let mut rng = SmallRng::seed_from_u64(3);
        let alphabet = b"0123456789/:.-eE,}\x00\xff ";
        for _ in 0..100_000 {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                *b = if rng.random_bool(0.7) {
                    b'0' + rng.random_range(0..10u8)
                } else {
                    alphabet[rng.random_range(0..alphabet.len())]
                };
            }
            let w = u64::from_le_bytes(bytes);
            let n = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            assert_eq!(leading_digits(w) as usize, n, "{bytes:?}");
            if n > 0 {
                let want = bytes[..n]
                    .iter()
                    .fold(0u64, |m, b| m * 10 + u64::from(b - b'0'));
                assert_eq!(digits_value(w, n as u32), want, "{bytes:?}");
            }
        }
    }

    /// The eight-bytes-at-a-time string scan stops where the byte-at-a-time one does.
    #[test]
    fn word_string_stops_match_bytes() {
        let mut rng = SmallRng::seed_from_u64(5);
        let alphabet = b"ab\"\\\x00\x1f\x20\x7f\x80\xc3\xff!#[]";
        for _ in 0..100_000 {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                *b = alphabet[rng.random_range(0..alphabet.len())];
            }
            let want = bytes.iter().position(|&b| STRING_STOP[usize::from(b)]);
            let stops = string_stops(u64::from_le_bytes(bytes));
            let got = (stops != 0).then(|| (stops.trailing_zeros() / 8) as usize);
            assert_eq!(got, want, "{bytes:?}");
        }
    }

    /// A random feature member: keys and numbers of the common shape and, with probability
    /// about `odd` for each part, of every shape next to it (other characters, whitespace,
    /// other number forms), followed by `,`, `}` or something else.
    fn random_member(rng: &mut SmallRng, odd: f64) -> String {
        let mut key = String::new();
        for _ in 0..rng.random_range(0..20) {
            key.push(if rng.random_bool(odd) {
                ['é', '"', '\\', ' ', '\u{1}'][rng.random_range(0..5)]
            } else {
                ['a', 'f', '1', '_'][rng.random_range(0..4)]
            });
        }
        let mut num = String::new();
        if rng.random_bool(0.3) {
            num.push('-');
        }
        let digits = |rng: &mut SmallRng, n: usize| -> String {
            (0..n)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect()
        };
        let int_len = if rng.random_bool(odd) {
            rng.random_range(0..12)
        } else {
            rng.random_range(1..8)
        };
        num.push_str(&digits(rng, int_len));
        if rng.random_bool(0.7) {
            num.push('.');
            let frac_len = if rng.random_bool(odd) {
                rng.random_range(0..12)
            } else {
                rng.random_range(1..8)
            };
            num.push_str(&digits(rng, frac_len));
        }
        if rng.random_bool(odd) {
            num.push_str(["e5", "E-3", "e", "x", "."][rng.random_range(0..5)]);
        }
        let sep = if rng.random_bool(odd) {
            [" :", ": ", "::", ""][rng.random_range(0..4)]
        } else {
            ":"
        };
        let end = if rng.random_bool(odd) {
            [" ,", "]", "", "\n}"][rng.random_range(0..4)]
        } else {
            [",", "}"][rng.random_range(0..2)]
        };
        format!("\"{key}\"{sep}{num}{end}")
    }

    /// Recycled lists drop their elements and keep their allocations.
    #[test]
    fn relabel_drops_the_elements_and_keeps_the_allocation() {
        use std::rc::Rc;
        let shared = Rc::new(());
        let v = vec![Some(Rc::clone(&shared)), None, Some(Rc::clone(&shared))];
        let emptied: Vec<Option<Rc<()>>> = relabel(v);
        assert!(emptied.is_empty() && emptied.capacity() >= 3);
        assert_eq!(Rc::strong_count(&shared), 1, "the elements were dropped");
        let mut spare = Spare::default();
        spare
            .features
            .push((Cow::Borrowed("a"), FeatureValue::Number(1.0)));
        spare.features.push((
            Cow::Owned("b\"c".to_string()),
            FeatureValue::Text(Cow::Owned("x".into())),
        ));
        spare
            .attributes
            .push((Cow::Borrowed("g"), Cow::Owned("f".into())));
        let spare = spare.relabel();
        assert!(spare.features.is_empty() && spare.features.capacity() >= 2);
        assert!(spare.attributes.is_empty() && spare.attributes.capacity() >= 1);
    }

    /// The compact member reading agrees with the general one wherever it answers, and
    /// answers for the common shape.
    #[test]
    fn compact_members_agree_with_the_general_reading() {
        let mut rng = SmallRng::seed_from_u64(13);
        let mut taken = 0;
        for _ in 0..100_000 {
            let member = random_member(&mut rng, 0.2);
            let text = format!("{member}{}", " ".repeat(MEMBER_WINDOW));
            let Some(m) = compact_member(text.as_bytes(), 0) else {
                continue;
            };
            taken += 1;
            let mut s = Scanner {
                b: text.as_bytes(),
                i: 0,
                spare: Spare::default(),
            };
            let key = s.string().expect("a key");
            s.ws();
            s.eat(b':').expect("a colon");
            s.ws();
            let value = s.feature_value().expect("a value");
            s.ws();
            assert_eq!(key, m.key, "{member}");
            assert_eq!(
                format!("{value:?}"),
                format!("{:?}", FeatureValue::Number(m.value)),
                "{member}"
            );
            assert_eq!(s.i, m.end, "{member}");
            assert_eq!(text.as_bytes()[m.end] == b'}', m.last, "{member}");
        }
        assert!(taken > 10_000, "only {taken} members were compact");
    }

    /// Whole events with many random members: whatever the scanner accepts, serde decodes
    /// the same.
    #[test]
    fn events_with_random_members_agree_with_serde() {
        let mut rng = SmallRng::seed_from_u64(17);
        let mut accepted = 0;
        for _ in 0..5_000 {
            let members: Vec<String> = (0..rng.random_range(1..30))
                .map(|_| {
                    let m = random_member(&mut rng, 0.01);
                    m.trim_end_matches([',', '}', ']', ' ']).to_string()
                })
                .collect();
            let text = format!(
                r#"{{"event_id":"e","model_id":"m","model_version":"v","timestamp":1,"features":{{{}}},"prediction":{{"score":0.5}},"latency_ms":1.5,"attributes":{{"gender":"f","region":"south"}}}}"#,
                members.join(",")
            );
            accepted += usize::from(agrees(&text));
        }
        assert!(accepted > 500, "only {accepted} events were scanned");
    }

    /// Numbers convert exactly as serde_json (`float_roundtrip`) converts them.
    #[test]
    fn numbers_are_correctly_rounded() {
        let mut rng = SmallRng::seed_from_u64(11);
        let mut cases: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1",
            "-1",
            "9007199254740993",
            "9007199254740992.5",
            "18446744073709551615",
            "18446744073709551616",
            "123456789012345678901234567890",
            "0.1",
            "0.3",
            "2.2250738585072014e-308",
            "4.9e-324",
            "2e-324",
            "1.7976931348623157e308",
            "1e22",
            "1e23",
            "1e-22",
            "1e-23",
            "8.98846567431158e307",
            "0.000001",
            "1E5",
            "1e+5",
            "123.456e-7",
            "0e999999999",
            "1e-999999999",
            "9.999999999999999e22",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..50_000 {
            let mut s = String::new();
            if rng.random_bool(0.3) {
                s.push('-');
            }
            let int_digits = rng.random_range(1..12);
            for d in 0..int_digits {
                let lo = if d == 0 && int_digits > 1 { 1 } else { 0 };
                s.push(char::from(b'0' + rng.random_range(lo..10u8)));
            }
            if rng.random_bool(0.8) {
                s.push('.');
                for _ in 0..rng.random_range(1..20) {
                    s.push(char::from(b'0' + rng.random_range(0..10u8)));
                }
            }
            if rng.random_bool(0.3) {
                s.push('e');
                s.push_str(&rng.random_range(-40..40).to_string());
            }
            cases.push(s);
        }
        let mut compact = 0;
        for text in cases {
            let want = serde_json::from_str::<f64>(&text).ok();
            let mut s = Scanner {
                b: text.as_bytes(),
                i: 0,
                spare: Spare::default(),
            };
            let got = s.number().and_then(|n| n.to_f64());
            assert_eq!(s.i, text.len(), "{text}");
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{text}");
            // With room after it, the compact reading where it answers, as the scanner uses.
            let padded = format!("{text},{}", " ".repeat(NUMBER_WINDOW));
            let window: &[u8; NUMBER_WINDOW] = padded.as_bytes()[..NUMBER_WINDOW]
                .try_into()
                .expect("a window");
            compact += usize::from(compact_number(window, 0).is_some());
            let mut s = Scanner {
                b: padded.as_bytes(),
                i: 0,
                spare: Spare::default(),
            };
            let got = s.f64();
            assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{text}");
            if got.is_some() {
                assert_eq!(s.i, text.len(), "{text}");
            }
        }
        assert!(compact > 10_000, "only {compact} numbers were compact");
    }
}
