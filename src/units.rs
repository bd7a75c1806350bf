//! Human units in configuration and scenario files: durations (`300ms`, `5m`, `2h`), sizes
//! (`256KiB`, `4GB`) and rates (`1Mbps`, `500kbps`, in bits per second).

use std::time::Duration;

/// Parses a duration: one or more `<number><unit>` parts, spaces between them optional
/// (`90s`, `300ms`, `2h30m`, `1h 15m`, `1d 12h`), through the `humantime` crate; units are
/// us, ms, s, m (min), h, d and their long forms (`hours`, `minutes`). A single part may have a
/// fraction (`1.5s`, `0.5h`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration (e.g. 90s, 5m, 2h30m)".into());
    }
    if t.contains('.') {
        return fractional(s, t);
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("duration {s:?} needs a unit (e.g. 90s, 5m, 2h30m)"));
    }
    if !t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("duration {s:?}: expected a number first (e.g. 90s, 5m, 2h30m)"));
    }
    // humantime also takes ns, weeks, months (`M`, against `m` for minutes) and years: not
    // here, where a slip of the shift key must not turn 2 minutes into 2 months.
    for unit in t.split(|c: char| !c.is_ascii_alphabetic()).filter(|u| !u.is_empty()) {
        if !DURATION_UNITS.contains(&unit) {
            return Err(format!(
                "duration {s:?}: unknown time unit {unit:?} (us, ms, s, m, h, d; or seconds, \
                 minutes, hours, days)"
            ));
        }
    }
    humantime::parse_duration(t).map_err(|e| {
        use humantime::DurationError as E;
        let why = match e {
            E::NumberExpected(at) => format!("expected a number at character {}", at + 1),
            E::InvalidCharacter(at) => format!("unexpected character at {}", at + 1),
            E::UnknownUnit { unit, .. } => {
                format!("unknown time unit {unit:?} (us, ms, s, m, h, d; or hours, minutes, ...)")
            }
            E::NumberOverflow => "out of range".into(),
            E::Empty => "empty".into(),
        };
        format!("duration {s:?}: {why} (e.g. 90s, 5m, 2h30m)")
    })
}

/// The units a duration may have (humantime's spellings of them).
const DURATION_UNITS: &[&str] = &[
    "us", "usec", "ms", "msec", "millis", "s", "sec", "secs", "second", "seconds", "m", "min",
    "mins", "minute", "minutes", "h", "hr", "hrs", "hour", "hours", "d", "day", "days",
];

/// A single part with a fraction, which humantime does not take: `1.5s`, `0.25h`.
fn fractional(s: &str, t: &str) -> Result<Duration, String> {
    let (num, unit) = split(t)?;
    let secs = match unit {
        "us" => num / 1e6,
        "ms" => num / 1e3,
        "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        "d" => num * 86400.0,
        "" => return Err(format!("duration {s:?} needs a unit (e.g. 90s, 5m, 2h30m)")),
        _ => {
            return Err(format!(
                "duration {s:?}: a fraction takes one unit of us, ms, s, m, h or d (e.g. 1.5s)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("duration {s:?} is out of range"))
}

/// Parses a byte size: a plain number, or with B, KB, MB, GB (powers of 1000) or KiB, MiB,
/// GiB (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, unit) = split(s)?;
    let mult = match unit {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "size {s:?}: unknown unit {unit:?} (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    Ok((num * mult) as u64)
}

/// Parses a rate in bits per second: `bps`, `kbps`, `Mbps`, `Gbps` (also `kbit/s` etc.).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, unit) = split(s)?;
    let mult = match unit {
        "bps" | "bit/s" => 1.0,
        "kbps" | "Kbps" | "kbit/s" => 1e3,
        "Mbps" | "mbps" | "Mbit/s" => 1e6,
        "Gbps" | "gbps" | "Gbit/s" => 1e9,
        _ => return Err(format!("rate {s:?}: expected a unit of bps, kbps, Mbps or Gbps")),
    };
    Ok((num * mult) as u64)
}

fn split(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(end);
    let num: f64 = num.parse().map_err(|_| format!("{s:?} does not start with a number"))?;
    if !num.is_finite() || num < 0.0 {
        return Err(format!("{s:?} is not a valid amount"));
    }
    Ok((num, unit.trim()))
}

/// Formats a duration compactly for reports (`850ms`, `12.3s`, `4m05s`, `2h00m`, `824d23h`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else if ms < 172_800_000 {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    } else {
        format!("{}d{:02}h", ms / 86_400_000, (ms / 3_600_000) % 24)
    }
}

/// Formats a byte count compactly for reports (`512 B`, `1.5 KiB`, `20.0 MiB`, `3.2 GiB`).
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(1023), "1023 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(20 * 1024 * 1024), "20.0 MiB");
        assert_eq!(format_bytes(3 << 40), "3.0 TiB");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("ms").is_err());
        assert!(parse_duration("-1s").is_err());
        // Compound forms, as operators write them.
        assert_eq!(parse_duration("2h30m"), Ok(Duration::from_secs(9000)));
        assert_eq!(parse_duration("1h 15m"), Ok(Duration::from_secs(4500)));
        assert_eq!(parse_duration("2h20m"), Ok(Duration::from_secs(8400)));
        assert_eq!(parse_duration(" 90s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d 12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(parse_duration("2 hours"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.5h"), Ok(Duration::from_secs(1800)));
        for bad in [
            "",
            "h",
            "2h30",
            "2h 30x",
            "1.5h30m",
            "1.5 parsecs",
            "5 5",
            "10x",
            "2M",
            "1w",
            "1y",
            "10ns",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse_duration("2h30").unwrap_err();
        assert!(e.contains("2h30"), "{e}");
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(parse_size("256KiB"), Ok(262_144));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("1400"), Ok(1400));
        assert_eq!(parse_rate("1Mbps"), Ok(1_000_000));
        assert_eq!(parse_rate("500kbps"), Ok(500_000));
        assert!(parse_rate("1MB").is_err());
        assert!(parse_size("1 furlong").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h00m");
        assert_eq!(format_duration(Duration::from_secs(47 * 3600)), "47h00m");
        assert_eq!(format_duration(Duration::from_secs(825 * 86400 - 3600)), "824d23h");
    }
}
