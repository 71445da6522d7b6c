//! Just enough DER to read two things out of an X.509 certificate: its
//! validity end (`notAfter`) and its DNS names (subjectAltName). Anything
//! unexpected yields `None`; nothing here is trusted for security decisions.

/// One tag-length-value: (tag, content, rest after it).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The fields of TBSCertificate up to and including the extensions.
fn tbs(cert: &[u8]) -> Option<&[u8]> {
    let (tag, certificate, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    (tag == 0x30).then_some(tbs)
}

/// Skips the optional version, the serial, the signature algorithm and the
/// issuer; returns (validity, the rest).
fn validity(tbs: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature, issuer
    }
    let (tag, validity, rest) = tlv(rest)?;
    (tag == 0x30).then_some((validity, rest))
}

/// `notAfter` as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (validity, _) = validity(tbs(cert)?)?;
    let (_, _, rest) = tlv(validity)?; // notBefore
    let (tag, time, _) = tlv(rest)?;
    unix_time(tag, time)
}

/// The certificate's notBefore as Unix seconds (an ACME certificate's
/// lifetime is notAfter − notBefore).
pub fn not_before(cert: &[u8]) -> Option<i64> {
    let (validity, _) = validity(tbs(cert)?)?;
    let (tag, time, _) = tlv(validity)?;
    unix_time(tag, time)
}

/// A UTCTime (0x17) or GeneralizedTime (0x18) as Unix seconds.
fn unix_time(tag: u8, time: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(time).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if digits.len() == 12 => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        0x18 if digits.len() == 14 => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
}

/// The subjectAltName DNS names, lower-cased.
pub fn dns_names(cert: &[u8]) -> Vec<String> {
    dns_names_inner(cert).unwrap_or_default()
}

fn dns_names_inner(cert: &[u8]) -> Option<Vec<String>> {
    let (_, mut rest) = validity(tbs(cert)?)?;
    rest = tlv(rest)?.2; // subject
    rest = tlv(rest)?.2; // subjectPublicKeyInfo
    let mut extensions = None;
    while let Some((tag, content, after)) = tlv(rest) {
        if tag == 0xa3 {
            extensions = Some(tlv(content)?.1);
        }
        rest = after;
    }
    let mut list = extensions?;
    while let Some((_, extension, after)) = tlv(list) {
        list = after;
        let (tag, oid, mut fields) = tlv(extension)?;
        if tag != 0x06 || oid != [0x55, 0x1d, 0x11] {
            continue;
        }
        if let Some((0x01, _, after)) = tlv(fields) {
            fields = after; // critical
        }
        let (_, value, _) = tlv(fields)?;
        let (_, mut names, _) = tlv(value)?;
        let mut out = Vec::new();
        while let Some((tag, name, after)) = tlv(names) {
            if tag == 0x82
                && let Ok(s) = std::str::from_utf8(name)
            {
                out.push(s.to_ascii_lowercase());
            }
            names = after;
        }
        return Some(out);
    }
    Some(Vec::new())
}

/// Howard Hinnant's civil-to-days conversion.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 11016);
        assert_eq!(days_from_civil(2026, 11, 22), 20779);
    }

    #[test]
    fn reads_a_generated_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["Example.com".into(), "*.api.example.com".into()])
                .unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der();
        assert_eq!(
            dns_names(der),
            vec!["example.com".to_owned(), "*.api.example.com".to_owned()]
        );
        assert_eq!(not_after(der), Some(days_from_civil(2031, 5, 17) * 86400));
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(not_after(b"\x30\x03\x02\x01"), None);
        assert!(dns_names(b"").is_empty());
        assert!(dns_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
    }
}
