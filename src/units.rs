//! Human units in configuration and scenario files: durations (`300ms`, `5m`, `2h`), sizes
//! (`256KiB`, `4GB`) and rates (`1Mbps`, `500kbps`, in bits per second).

use std::time::Duration;

/// Parses `<number><unit>` with a unit of us, ms, s, m, h or d (fractions allowed: `1.5s`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split(s)?;
    let secs = match unit {
        "us" => num / 1e6,
        "ms" => num / 1e3,
        "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        "d" => num * 86400.0,
        "" => return Err(format!("duration {s:?} needs a unit (ms, s, m, h, d)")),
        _ => return Err(format!("duration {s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
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

/// Formats a duration compactly for reports (`850ms`, `12.3s`, `4m05s`, `2h00m`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
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
    }
}
