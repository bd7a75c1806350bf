//! Log output of the node and the simulator: text lines for a terminal or the journal, or one
//! JSON object per line for a log collector (`--log-format json`, or
//! `RELAYMESH_LOG_FORMAT=json`). `RUST_LOG` picks what is logged, as usual.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::time::FormatTime;

/// How log lines are written (to standard error).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`).
    Json,
}

/// Installs the process's log subscriber: `default_filter` unless `RUST_LOG` says otherwise,
/// time stamps from `timer`. A second call does nothing.
pub fn init<T>(format: LogFormat, default_filter: &str, timer: T)
where
    T: FormatTime + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(timer)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).try_init()
        }
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
