//! A congestion controller for links of known capacity, such as a satellite terminal with a
//! committed rate.
//!
//! Loss-based controllers (Cubic, NewReno) read the random loss of a satellite hop as congestion
//! and shrink their window: with 1% loss and a 600 ms round trip, Cubic fills about half of a
//! 1 Mbit/s link. BBR fills it, but its probing keeps the bottleneck queue full, so a FLASH
//! packet waits behind a second of bulk data. This controller trusts the configured rate
//! instead: the window is the rate times the smallest round trip seen, plus a little headroom,
//! so the pipe stays full while the queue at the bottleneck stays short. Only persistent
//! congestion (everything lost for several round trips: the configured rate is wrong, or the
//! link is shared) halves the window, which then grows back by an eighth per round trip.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::congestion::{Controller, ControllerFactory};
use quinn_proto::RttEstimator;

/// Settings of [`KnownRate`].
#[derive(Clone, Debug)]
pub struct KnownRateConfig {
    /// The link's capacity in bits per second.
    pub rate_bps: u64,
    /// Round trip assumed before the first sample.
    pub initial_rtt: Duration,
    /// Window over the bandwidth-delay product (1.0: exactly full, no standing queue).
    pub headroom: f64,
}

impl ControllerFactory for KnownRateConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(KnownRate {
            config: self.clone(),
            mtu: u64::from(current_mtu),
            min_rtt: self.initial_rtt,
            scale: 1.0,
            last_growth: now,
        })
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct KnownRate {
    config: Arc<KnownRateConfig>,
    mtu: u64,
    min_rtt: Duration,
    /// 1.0 normally; less after persistent congestion.
    scale: f64,
    last_growth: Instant,
}

impl Controller for KnownRate {
    fn on_ack(
        &mut self,
        now: Instant,
        _sent: Instant,
        _bytes: u64,
        _app_limited: bool,
        rtt: &RttEstimator,
    ) {
        let sample = rtt.min();
        if !sample.is_zero() {
            self.min_rtt = sample;
        }
        if self.scale < 1.0 && now.duration_since(self.last_growth) >= self.min_rtt {
            self.scale = (self.scale * 1.125).min(1.0);
            self.last_growth = now;
        }
    }

    fn on_congestion_event(&mut self, now: Instant, _sent: Instant, persistent: bool, _lost: u64) {
        if persistent {
            self.scale = (self.scale * 0.5).max(0.05);
            self.last_growth = now;
        }
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.mtu = u64::from(new_mtu);
    }

    fn window(&self) -> u64 {
        let bdp = self.config.rate_bps as f64 / 8.0 * self.min_rtt.as_secs_f64();
        ((bdp * self.config.headroom * self.scale) as u64).max(4 * self.mtu)
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn initial_window(&self) -> u64 {
        self.window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
