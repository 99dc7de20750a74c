//! Owned, ordered FITS headers: [`Header`], [`Card`], [`Value`], and the 80-column card codec.

use std::fmt;

use crate::error::{FitsError, HeaderError};

/// Keywords managed by the writer (structure, scaling, checksums): read headers keep them, but
/// [`crate::write_image`] and friends never copy them into the output (they write their own).
pub const MANAGED_KEYWORDS: &[&str] = &[
    "SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "BSCALE", "BZERO",
    "BLANK", "CHECKSUM", "DATASUM", "END",
];

/// A header value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Logical `T` / `F`.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Real number (written with `E` exponents, never NaN or infinite in a valid file).
    Float(f64),
    /// Character string (trailing blanks are not significant in FITS and are dropped on read).
    /// Complex values, which FITS allows but images never use, are read as their raw text.
    Str(String),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "logical",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
        }
    }
}

impl fmt::Display for Value {
    /// The value as plain text (`T`/`F`, numbers as written to FITS, strings unquoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => f.write_str(if *b { "T" } else { "F" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => match format_float(*x) {
                Some(s) => f.write_str(&s),
                None => write!(f, "{x}"),
            },
            Value::Str(s) => f.write_str(s),
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        // usize fits i64 on every platform we build for; saturate otherwise.
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Float(f64::from(v))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}

/// One logical header card. A long string spread over `CONTINUE` records is ONE card here.
///
/// Commentary cards (`COMMENT`, `HISTORY`, blank keyword, or any keyword without `= `) have
/// `value: None` and their text in `comment`. `HIERARCH` keywords are stored without the
/// `HIERARCH ` prefix (`"ESO DET CHIP"`); look-ups accept either spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct Card {
    /// Keyword (upper case for standard keywords; may be empty for blank commentary cards).
    pub key: String,
    /// Value; `None` for commentary cards and for keywords with an undefined value.
    pub value: Option<Value>,
    /// Comment after `/`, or the text of a commentary card.
    pub comment: Option<String>,
}

impl Card {
    /// True for `COMMENT`, `HISTORY`, blank-keyword and other value-less text cards.
    pub fn is_commentary(&self) -> bool {
        self.value.is_none() && matches!(self.key.as_str(), "COMMENT" | "HISTORY" | "")
    }

    /// Format this card as one or more 80-character records (long strings become `CONTINUE`
    /// records; long commentary text is split over several cards).
    pub fn to_records(&self) -> Result<Vec<String>, FitsError> {
        format_card(self)
    }
}

/// An owned FITS header: every card, in file order.
///
/// Typed getters look a keyword up (first occurrence; ASCII case-insensitive; a leading
/// `HIERARCH ` is ignored) and return [`HeaderError`] when it is missing or has another type.
/// Integers are readable as `f64`. Setters replace the first card with that keyword in place
/// (keeping its position) or append a new card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    cards: Vec<Card>,
}

fn norm_key(key: &str) -> &str {
    let k = key.trim();
    match k.get(..9) {
        Some(p) if p.eq_ignore_ascii_case("HIERARCH ") => k[9..].trim_start(),
        _ => k,
    }
}

impl Header {
    /// An empty header.
    pub fn new() -> Self {
        Self::default()
    }

    /// A header made of these cards, in this order.
    pub fn from_cards(cards: Vec<Card>) -> Self {
        Self { cards }
    }

    /// All cards, in order.
    pub fn cards(&self) -> &[Card] {
        &self.cards
    }

    /// Number of cards.
    pub fn len(&self) -> usize {
        self.cards.len()
    }

    /// True when there are no cards.
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        let k = norm_key(key);
        self.cards
            .iter()
            .position(|c| c.key.eq_ignore_ascii_case(k) && !c.is_commentary())
    }

    /// The first card with this keyword, if any (commentary cards are not matched).
    pub fn card(&self, key: &str) -> Option<&Card> {
        self.position(key).map(|i| &self.cards[i])
    }

    /// The value of `key`, `None` when the keyword is absent or has an undefined value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.card(key).and_then(|c| c.value.as_ref())
    }

    /// True when a (non-commentary) card with this keyword exists.
    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    fn typed(&self, key: &str) -> Result<&Value, (HeaderError, Option<&'static str>)> {
        match self.card(key) {
            None => Err((
                HeaderError::Missing {
                    key: key.to_owned(),
                },
                None,
            )),
            Some(Card { value: None, .. }) => Err((
                HeaderError::Missing {
                    key: key.to_owned(),
                },
                Some("undefined"),
            )),
            Some(Card { value: Some(v), .. }) => Ok(v),
        }
    }

    fn wrong(key: &str, expected: &'static str, found: &'static str) -> HeaderError {
        HeaderError::WrongType {
            key: key.to_owned(),
            expected,
            found,
        }
    }

    fn lookup(&self, key: &str, expected: &'static str) -> Result<&Value, HeaderError> {
        self.typed(key).map_err(|(e, found)| match found {
            Some(f) => Self::wrong(key, expected, f),
            None => e,
        })
    }

    /// Value as `f64` (integers convert).
    pub fn get_f64(&self, key: &str) -> Result<f64, HeaderError> {
        match self.lookup(key, "float")? {
            Value::Float(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            v => Err(Self::wrong(key, "float", v.type_name())),
        }
    }

    /// Value as `f64`, `Ok(None)` when the keyword is absent, an error when it has another type.
    pub fn get_f64_opt(&self, key: &str) -> Result<Option<f64>, HeaderError> {
        if self.contains(key) {
            self.get_f64(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Value as `i64` (a float with an exact integer value converts; `3.5` is a type error).
    pub fn get_i64(&self, key: &str) -> Result<i64, HeaderError> {
        match self.lookup(key, "integer")? {
            Value::Int(i) => Ok(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
            v => Err(Self::wrong(key, "integer", v.type_name())),
        }
    }

    /// Value as `i64`, `Ok(None)` when the keyword is absent.
    pub fn get_i64_opt(&self, key: &str) -> Result<Option<i64>, HeaderError> {
        if self.contains(key) {
            self.get_i64(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Logical value.
    pub fn get_bool(&self, key: &str) -> Result<bool, HeaderError> {
        match self.lookup(key, "logical")? {
            Value::Bool(b) => Ok(*b),
            v => Err(Self::wrong(key, "logical", v.type_name())),
        }
    }

    /// String value (long `CONTINUE` strings are already joined).
    pub fn get_str(&self, key: &str) -> Result<&str, HeaderError> {
        match self.lookup(key, "string")? {
            Value::Str(s) => Ok(s.as_str()),
            v => Err(Self::wrong(key, "string", v.type_name())),
        }
    }

    /// String value, `Ok(None)` when the keyword is absent.
    pub fn get_str_opt(&self, key: &str) -> Result<Option<&str>, HeaderError> {
        if self.contains(key) {
            self.get_str(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The comment of `key`'s card, if any.
    pub fn comment(&self, key: &str) -> Option<&str> {
        self.card(key).and_then(|c| c.comment.as_deref())
    }

    /// Set `key` to `value`: replaces the value of the first card with this keyword (keeping its
    /// position and comment) or appends a new card. A `HIERARCH ` prefix is dropped and new keys
    /// are stored upper case (FITS keywords are case-insensitive; cfitsio writes them upper
    /// case); keywords longer than 8 characters or with spaces are written as `HIERARCH` cards.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.position(key) {
            Some(i) => self.cards[i].value = Some(value),
            None => self.cards.push(Card {
                key: norm_key(key).to_ascii_uppercase(),
                value: Some(value),
                comment: None,
            }),
        }
    }

    /// Like [`Header::set`], also setting the comment.
    pub fn set_with_comment(&mut self, key: &str, value: impl Into<Value>, comment: &str) {
        let value = value.into();
        let comment = Some(comment.to_owned());
        match self.position(key) {
            Some(i) => {
                self.cards[i].value = Some(value);
                self.cards[i].comment = comment;
            }
            None => self.cards.push(Card {
                key: norm_key(key).to_ascii_uppercase(),
                value: Some(value),
                comment,
            }),
        }
    }

    /// Remove every (non-commentary) card with this keyword; returns how many were removed.
    pub fn remove(&mut self, key: &str) -> usize {
        let k = norm_key(key).to_owned();
        let before = self.cards.len();
        self.cards
            .retain(|c| c.is_commentary() || !c.key.eq_ignore_ascii_case(&k));
        before - self.cards.len()
    }

    /// Append a `COMMENT` card.
    pub fn add_comment(&mut self, text: &str) {
        self.push(Card {
            key: "COMMENT".into(),
            value: None,
            comment: Some(text.to_owned()),
        });
    }

    /// Append a `HISTORY` card.
    pub fn add_history(&mut self, text: &str) {
        self.push(Card {
            key: "HISTORY".into(),
            value: None,
            comment: Some(text.to_owned()),
        });
    }

    /// Append a card as is (duplicates allowed).
    pub fn push(&mut self, card: Card) {
        self.cards.push(card);
    }

    /// Iterate over the cards in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Card> {
        self.cards.iter()
    }

    /// Copy every user card of `other` (not the [`MANAGED_KEYWORDS`]) into this header:
    /// valued keywords replace an existing card of the same name in place (or are appended),
    /// commentary cards are appended.
    pub fn merge_from(&mut self, other: &Header) {
        for c in other.user_cards() {
            match (&c.value, self.position(&c.key)) {
                (Some(_), Some(i)) => self.cards[i] = c.clone(),
                _ => self.cards.push(c.clone()),
            }
        }
    }

    /// Texts of all `COMMENT` cards, in order.
    pub fn comments(&self) -> impl Iterator<Item = &str> {
        self.commentary("COMMENT")
    }

    /// Texts of all `HISTORY` cards, in order.
    pub fn history(&self) -> impl Iterator<Item = &str> {
        self.commentary("HISTORY")
    }

    fn commentary<'a>(&'a self, key: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.cards
            .iter()
            .filter(move |c| c.key == key && c.value.is_none())
            .map(|c| c.comment.as_deref().unwrap_or(""))
    }

    /// The cards the writers copy: all but [`MANAGED_KEYWORDS`] and `NAXISn`.
    pub fn user_cards(&self) -> impl Iterator<Item = &Card> {
        self.cards.iter().filter(|c| !is_managed(&c.key))
    }

    /// Parse a header from 80-byte records (as read from a file; `END` and anything after it
    /// is ignored). Unparseable values become [`Value::Str`] of their raw text.
    pub fn from_records<S: AsRef<str>>(records: &[S]) -> Self {
        let mut cards: Vec<Card> = Vec::with_capacity(records.len());
        for rec in records {
            let rec = rec.as_ref();
            if rec.trim_end() == "END" {
                break;
            }
            let card = parse_record(rec);
            // Join CONTINUE records onto a previous string ending with '&'.
            if card.key == "CONTINUE"
                && let Some(prev) = cards.last_mut()
                && let Some(Value::Str(s)) = &mut prev.value
                && s.ends_with('&')
            {
                let (text, comment) = parse_continue(rec);
                s.pop();
                s.push_str(&text);
                if let Some(c) = comment {
                    match &mut prev.comment {
                        Some(pc) => {
                            pc.push(' ');
                            pc.push_str(&c);
                        }
                        None => prev.comment = Some(c),
                    }
                }
                continue;
            }
            cards.push(card);
        }
        Self { cards }
    }

    /// The header as 80-character records (without `END`), exactly as the writers emit the
    /// user cards. Fails on cards that cannot be represented (NaN, non-ASCII...).
    pub fn to_records(&self) -> Result<Vec<String>, FitsError> {
        let mut out = Vec::with_capacity(self.cards.len());
        for c in &self.cards {
            out.extend(format_card(c)?);
        }
        Ok(out)
    }
}

impl<'a> IntoIterator for &'a Header {
    type Item = &'a Card;
    type IntoIter = std::slice::Iter<'a, Card>;
    fn into_iter(self) -> Self::IntoIter {
        self.cards.iter()
    }
}

impl FromIterator<Card> for Header {
    fn from_iter<I: IntoIterator<Item = Card>>(iter: I) -> Self {
        Self {
            cards: iter.into_iter().collect(),
        }
    }
}

impl fmt::Display for Header {
    /// One 80-character line per record (unrepresentable cards are shown as `key = <invalid>`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.cards {
            match format_card(c) {
                Ok(recs) => {
                    for r in recs {
                        writeln!(f, "{r}")?;
                    }
                }
                Err(e) => writeln!(f, "{:<80}", format!("{:<8}= <{e}>", c.key))?,
            }
        }
        Ok(())
    }
}

/// True for keywords the writers manage themselves (structural, scaling, checksum).
pub fn is_managed(key: &str) -> bool {
    let k = key.trim().to_ascii_uppercase();
    if MANAGED_KEYWORDS.contains(&k.as_str()) {
        return true;
    }
    // NAXISn
    k.strip_prefix("NAXIS")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

// ----------------------------------------------------------------------------------------------
// Parsing one record
// ----------------------------------------------------------------------------------------------

/// Parse a quoted FITS string starting at `s[0] == '\''`: returns (content, rest after quote).
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let bytes = s.as_bytes();
    let mut out = String::new();
    let mut i = 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if i + 1 < bytes.len() && bytes[i + 1] == b'\'' {
                out.push('\'');
                i += 2;
                continue;
            }
            return Some((out.trim_end().to_owned(), &s[i + 1..]));
        }
        let ch = s[i..].chars().next()?;
        out.push(ch);
        i += ch.len_utf8();
    }
    None
}

fn split_comment(rest: &str) -> Option<String> {
    rest.find('/').map(|p| rest[p + 1..].trim().to_owned())
}

/// Parse the value field (everything after `= `) into (value, comment).
fn parse_value_field(field: &str) -> (Option<Value>, Option<String>) {
    let t = field.trim_start();
    if t.starts_with('\'') {
        if let Some((s, rest)) = parse_quoted(t) {
            return (Some(Value::Str(s)), split_comment(rest));
        }
        // Missing closing quote: keep the raw text.
        return (Some(Value::Str(t.trim_end().to_owned())), None);
    }
    let (raw, comment) = match t.find('/') {
        Some(p) => (t[..p].trim(), Some(t[p + 1..].trim().to_owned())),
        None => (t.trim(), None),
    };
    if raw.is_empty() {
        return (None, comment);
    }
    let value = match raw {
        "T" => Value::Bool(true),
        "F" => Value::Bool(false),
        _ => {
            if let Ok(i) = raw.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = raw.replace(['D', 'd'], "E").parse::<f64>() {
                if raw
                    .bytes()
                    .any(|b| b.is_ascii_alphabetic() && !matches!(b, b'E' | b'e' | b'D' | b'd'))
                {
                    // "inf", "nan" and friends are not FITS numbers.
                    Value::Str(raw.to_owned())
                } else {
                    Value::Float(f)
                }
            } else {
                Value::Str(raw.to_owned())
            }
        }
    };
    (Some(value), comment)
}

fn parse_continue(rec: &str) -> (String, Option<String>) {
    let field = rec.get(8..).unwrap_or("").trim_start();
    if field.starts_with('\'')
        && let Some((s, rest)) = parse_quoted(field)
    {
        return (s, split_comment(rest));
    }
    (field.trim_end().to_owned(), None)
}

/// Parse one 80-column record into a card (never fails: odd records become commentary).
pub fn parse_record(rec: &str) -> Card {
    let rec = rec.trim_end_matches(['\0']);
    let head = rec.get(..8).unwrap_or(rec);
    let key8 = head.trim_end();
    let upper = rec.to_ascii_uppercase();
    if upper.starts_with("HIERARCH ")
        && let Some(eq) = rec.find('=')
    {
        let key = rec[9..eq].trim().to_owned();
        let (value, comment) = parse_value_field(&rec[eq + 1..]);
        return Card {
            key,
            value,
            comment,
        };
    }
    let has_value = rec.len() >= 10 && &rec.as_bytes()[8..10] == b"= ";
    let is_text_key = matches!(key8, "COMMENT" | "HISTORY" | "");
    if has_value && !is_text_key {
        let (value, comment) = parse_value_field(&rec[10..]);
        Card {
            key: key8.to_owned(),
            value,
            comment,
        }
    } else {
        let text = rec.get(8..).unwrap_or("").trim_end();
        Card {
            key: key8.to_owned(),
            value: None,
            comment: if text.is_empty() && !is_text_key {
                None
            } else {
                Some(text.to_owned())
            },
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Formatting
// ----------------------------------------------------------------------------------------------

fn format_float(x: f64) -> Option<String> {
    if !x.is_finite() {
        return None;
    }
    // Debug gives the shortest representation that round-trips, e.g. "1.0", "1e-10".
    let s = format!("{x:?}").to_ascii_uppercase();
    Some(match s.find('E') {
        Some(p) if !s[..p].contains('.') => format!("{}.0{}", &s[..p], &s[p..]),
        _ => s,
    })
}

fn invalid(key: &str, reason: &'static str) -> FitsError {
    FitsError::InvalidCard {
        key: key.to_owned(),
        reason,
    }
}

fn pad80(mut s: String) -> String {
    while s.len() < 80 {
        s.push(' ');
    }
    s
}

fn quote(s: &str) -> String {
    let inner = s.replace('\'', "''");
    format!("'{inner:<8}'")
}

fn fixed_key(key: &str) -> bool {
    key.len() <= 8
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Append ` / comment` if there is room (FITS allows truncating comments).
fn with_comment(mut s: String, comment: Option<&str>) -> String {
    if let Some(c) = comment
        && !c.is_empty()
        && s.len() + 3 < 80
    {
        s.push_str(" / ");
        let room = 80 - s.len();
        s.push_str(truncate_ascii(c, room));
    }
    pad80(s)
}

fn truncate_ascii(s: &str, n: usize) -> &str {
    if s.len() <= n { s } else { &s[..n] }
}

fn format_card(c: &Card) -> Result<Vec<String>, FitsError> {
    let key = c.key.as_str();
    if !key.is_ascii() || c.comment.as_deref().is_some_and(|t| !t.is_ascii()) {
        return Err(invalid(key, "non-ASCII text"));
    }
    if key.bytes().any(|b| b.is_ascii_control()) {
        return Err(invalid(key, "control character in keyword"));
    }
    let Some(value) = &c.value else {
        // Commentary (or undefined-value) card.
        let text = c.comment.as_deref().unwrap_or("");
        if !fixed_key(key) {
            return Err(invalid(
                key,
                "keyword without value must be 8 characters or fewer",
            ));
        }
        if matches!(key, "COMMENT" | "HISTORY" | "") {
            if text.is_empty() {
                return Ok(vec![pad80(format!("{key:<8}"))]);
            }
            let chunks: Vec<String> = text
                .as_bytes()
                .chunks(72)
                .map(|ch| pad80(format!("{key:<8}{}", String::from_utf8_lossy(ch))))
                .collect();
            return Ok(chunks);
        }
        // Keyword with undefined value.
        return Ok(vec![with_comment(
            format!("{key:<8}= {:20}", ""),
            c.comment.as_deref(),
        )]);
    };
    let hierarch = !fixed_key(key);
    if hierarch && (key.is_empty() || key.len() > 66) {
        return Err(invalid(key, "keyword too long for a HIERARCH card"));
    }
    let prefix = if hierarch {
        format!("HIERARCH {key} = ")
    } else {
        format!("{key:<8}= ")
    };
    let vstr = match value {
        Value::Bool(b) => format!("{:>20}", if *b { "T" } else { "F" }),
        Value::Int(i) => format!("{i:>20}"),
        Value::Float(x) => {
            let s = format_float(*x).ok_or_else(|| invalid(key, "NaN or infinite float"))?;
            format!("{s:>20}")
        }
        Value::Str(s) => {
            if !s.is_ascii() || s.bytes().any(|b| b.is_ascii_control()) {
                return Err(invalid(key, "string value not printable ASCII"));
            }
            let q = quote(s);
            if prefix.len() + q.len() <= 80 {
                // Pad to column 30 like astropy/cfitsio so comments line up.
                format!("{q:<20}")
            } else {
                return long_string(&prefix, s, c.comment.as_deref(), key);
            }
        }
    };
    let vstr = if hierarch {
        vstr.trim_start().to_owned()
    } else {
        vstr
    };
    let line = format!("{prefix}{vstr}");
    if line.len() > 80 {
        return Err(invalid(key, "value too long for one card"));
    }
    Ok(vec![with_comment(line, c.comment.as_deref())])
}

/// Split a long string over `CONTINUE` records (the OGIP long-string convention).
fn long_string(
    prefix: &str,
    s: &str,
    comment: Option<&str>,
    key: &str,
) -> Result<Vec<String>, FitsError> {
    // Room for the escaped text in the first card: 80 - prefix - 2 quotes - '&'.
    let first_room = 80usize
        .checked_sub(prefix.len() + 3)
        .filter(|r| *r >= 8)
        .ok_or_else(|| invalid(key, "keyword too long for a long string"))?;
    let cont_room = 80 - 10 - 3;
    let mut out = Vec::new();
    let mut rest = s;
    let mut first = true;
    while first || !rest.is_empty() {
        let room = if first { first_room } else { cont_room };
        // Take as many chars as fit once quotes are doubled.
        let mut n = 0;
        let mut used = 0;
        for b in rest.bytes() {
            let w = if b == b'\'' { 2 } else { 1 };
            if used + w > room {
                break;
            }
            used += w;
            n += 1;
        }
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let amp = if rest.is_empty() { "" } else { "&" };
        let body = format!("'{}{amp}'", chunk.replace('\'', "''"));
        let line = if first {
            format!("{prefix}{body}")
        } else {
            format!("CONTINUE  {body}")
        };
        out.push(line);
        first = false;
    }
    // The comment goes on the last record when it fits, else on an extra `CONTINUE  ''`
    // record (as astropy does); every chunk left room for the '&'.
    if let Some(c) = comment.filter(|c| !c.is_empty()) {
        let last = out.pop().unwrap_or_default();
        if last.len() + 3 + c.len() <= 80 {
            out.push(with_comment(last, Some(c)));
        } else {
            let n = last.len();
            out.push(format!("{}&'", &last[..n - 1]));
            out.push(with_comment("CONTINUE  ''".to_owned(), Some(c)));
        }
    }
    let out = out.into_iter().map(pad80).collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_basic_values() {
        let h = Header::from_records(&[
            "SIMPLE  =                    T / conforms",
            "BITPIX  =                  -32",
            "EXPTIME =              60.5D0 / seconds",
            "OBJECT  = 'eso085-030'         / target",
            "QUOTE   = 'it''s  '",
            "HISTORY made by a test",
            "HIERARCH ESO DET CHIP NAME = 'CCD 7' / chip",
            "UNDEF   =                      / nothing",
            "END",
            "AFTER   = 1",
        ]);
        assert_eq!(h.len(), 8);
        assert!(h.get_bool("SIMPLE").unwrap());
        assert_eq!(h.get_i64("BITPIX").unwrap(), -32);
        assert_eq!(h.get_f64("BITPIX").unwrap(), -32.0);
        assert_eq!(h.get_f64("EXPTIME").unwrap(), 60.5);
        assert_eq!(h.comment("EXPTIME"), Some("seconds"));
        assert_eq!(h.get_str("OBJECT").unwrap(), "eso085-030");
        assert_eq!(h.get_str("QUOTE").unwrap(), "it's");
        assert_eq!(h.get_str("HIERARCH ESO DET CHIP NAME").unwrap(), "CCD 7");
        assert_eq!(h.get_str("eso det chip name").unwrap(), "CCD 7");
        assert_eq!(h.history().collect::<Vec<_>>(), vec!["made by a test"]);
        assert!(matches!(
            h.get_f64("UNDEF"),
            Err(HeaderError::WrongType {
                found: "undefined",
                ..
            })
        ));
        assert!(matches!(
            h.get_f64("OBJECT"),
            Err(HeaderError::WrongType { .. })
        ));
        assert!(matches!(
            h.get_str("NOPE"),
            Err(HeaderError::Missing { .. })
        ));
        assert_eq!(h.get_f64_opt("NOPE").unwrap(), None);
        assert!(h.get_f64_opt("OBJECT").is_err());
        assert!(!h.contains("AFTER"));
    }

    #[test]
    fn records_round_trip() {
        let mut h = Header::new();
        h.set("A", 1_i64);
        h.set_with_comment("B", 2.5e-12, "tiny");
        h.set("C", true);
        h.set("D", "text with 'quotes'");
        h.set("LONG", "x".repeat(150) + "'y'" + &"z".repeat(100));
        h.set("ESO INS FILT1 NAME", "R-special");
        h.set("F", 1.0e20);
        h.set("G", -0.0);
        h.add_comment("a comment");
        h.add_history("");
        let recs = h.to_records().unwrap();
        assert!(recs.iter().all(|r| r.len() == 80));
        let back = Header::from_records(&recs);
        assert_eq!(back, h);
    }

    #[test]
    fn nan_cannot_be_written() {
        let mut h = Header::new();
        h.set("X", f64::NAN);
        assert!(matches!(h.to_records(), Err(FitsError::InvalidCard { .. })));
        // Display still works.
        assert!(h.to_string().contains("X"));
    }

    #[test]
    fn odd_records_parse_without_panicking() {
        let h = Header::from_records(&[
            "CPLX    = (1.0, 2.0) / complex",
            "AMP     = 'abc&'",
            "DEXP    = 1.5D3",
            "INF     = inf",
            "OPEN    = 'unterminated",
            "BIGINT  = 99999999999999999999",
            "FOOBAR  some free text",
            "SHORT",
            "K\u{e9}Y    = 1",
            "NUL     = 2\0\0",
        ]);
        assert_eq!(h.get_str("CPLX").unwrap(), "(1.0, 2.0)");
        assert_eq!(h.get_str("AMP").unwrap(), "abc&");
        assert_eq!(h.get_f64("DEXP").unwrap(), 1500.0);
        assert_eq!(h.get_str("INF").unwrap(), "inf");
        assert_eq!(h.get_str("OPEN").unwrap(), "'unterminated");
        assert_eq!(h.get_f64("BIGINT").unwrap(), 1e20);
        assert_eq!(h.cards()[6].key, "FOOBAR");
        assert_eq!(h.cards()[6].comment.as_deref(), Some("some free text"));
        assert_eq!(h.cards()[7].key, "SHORT");
        assert_eq!(h.get_i64("NUL").unwrap(), 2);
        // Non-ASCII keys cannot be written back.
        assert!(h.to_records().is_err());
    }

    #[test]
    fn card_layout_matches_fits_fixed_format() {
        let mut h = Header::new();
        h.set_with_comment("EXPTIME", 60.0, "s");
        h.set("OBJECT", "M51");
        let r = h.to_records().unwrap();
        // Value right-justified in columns 11-30, comment after " / ".
        assert_eq!(&r[0][..10], "EXPTIME = ");
        assert_eq!(&r[0][26..33], "60.0 / ");
        assert_eq!(r[0][10..26].trim(), "");
        assert_eq!(&r[1][..20], "OBJECT  = 'M51     '");
    }

    #[test]
    fn merge_iter_and_value_display() {
        let mut a = Header::new();
        a.set("A", 1_i64);
        a.set("B", 2_i64);
        let mut b = Header::new();
        b.set("BITPIX", 16_i64);
        b.set("B", 3.5);
        b.set("C", "x");
        b.add_history("h");
        a.merge_from(&b);
        let keys: Vec<&str> = a.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, vec!["A", "B", "C", "HISTORY"]);
        assert_eq!(a.get_f64("B").unwrap(), 3.5);
        assert_eq!((&a).into_iter().count(), 4);
        let c: Header = a.cards().iter().cloned().collect();
        assert_eq!(c, a);
        assert_eq!(Value::Float(1e-10).to_string(), "1.0E-10");
        assert_eq!(Value::Bool(true).to_string(), "T");
        assert_eq!(Value::Str("ab".into()).to_string(), "ab");
    }

    #[test]
    fn managed_keywords() {
        assert!(is_managed("NAXIS2"));
        assert!(is_managed("BZERO"));
        assert!(!is_managed("NAXISX"));
        assert!(!is_managed("OBJECT"));
    }
}
