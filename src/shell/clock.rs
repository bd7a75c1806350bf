//! The node clock: tokio's clock anchored to a wall-clock instant.
//!
//! In production the anchor is the real wall clock at start and tokio's clock runs in real
//! time; in the simulator the anchor is fixed and tokio's clock is paused, so the core, rustls
//! (certificate validity) and quinn (token validity) all see virtual time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

use crate::core::types::{Time, duration_micros};

/// Maps tokio's clock to the node's [`Time`] (microseconds since the Unix epoch).
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    anchor_wall: Duration,
    anchor: tokio::time::Instant,
}

impl Clock {
    /// Anchored to the real wall clock now.
    pub fn wall() -> Clock {
        let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Clock::anchored(since_epoch)
    }

    /// Anchored to a fixed instant (time since the Unix epoch), for simulations.
    pub fn anchored(since_epoch: Duration) -> Clock {
        Clock { anchor_wall: since_epoch, anchor: tokio::time::Instant::now() }
    }

    /// Now, as the core counts time.
    pub fn now(&self) -> Time {
        Time(duration_micros(self.anchor_wall + self.anchor.elapsed()))
    }

    /// The tokio instant of a core time (for timers).
    pub fn instant(&self, t: Time) -> tokio::time::Instant {
        let wall = Duration::from_micros(t.as_micros());
        self.anchor + wall.saturating_sub(self.anchor_wall)
    }

    pub fn system_time(&self) -> SystemTime {
        UNIX_EPOCH + self.anchor_wall + self.anchor.elapsed()
    }
}

impl rustls::time_provider::TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(self.anchor_wall + self.anchor.elapsed()))
    }
}

impl quinn::TimeSource for Clock {
    fn now(&self) -> SystemTime {
        self.system_time()
    }
}

/// The clock as the trait objects rustls and quinn take.
pub fn providers(
    clock: Clock,
) -> (Arc<dyn rustls::time_provider::TimeProvider>, Arc<dyn quinn::TimeSource>) {
    (Arc::new(clock), Arc::new(clock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_time() {
        let clock = Clock::anchored(Duration::from_secs(1_000));
        assert_eq!(clock.now(), Time(1_000_000_000));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(clock.now(), Time(1_001_500_000));
        assert_eq!(
            clock.instant(Time(1_002_000_000)) - clock.instant(clock.now()),
            Duration::from_millis(500)
        );
        use rustls::time_provider::TimeProvider;
        assert_eq!(clock.current_time().unwrap().as_secs(), 1_001);
    }
}
