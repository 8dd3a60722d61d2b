//! Test support: every log line of this test process (at TRACE, or from a chosen level) captured in
//! memory, so a test can search the whole output for personal data and secrets, or wait for a line
//! that marks an event.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// Log output collected in memory.
#[derive(Clone, Default)]
pub struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits (at most `limit`) until a line containing `needle` was logged; whether it was.
    pub async fn wait_for(&self, needle: &str, limit: std::time::Duration) -> bool {
        super::wait_until(limit, || self.text().contains(needle)).await
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Makes every log line of this process (TRACE and up, no colours, no time) go to the returned
/// buffer. Call once per test process: it installs the global subscriber.
pub fn capture_at_trace() -> Buffer {
    capture(tracing::Level::TRACE)
}

/// As [`capture_at_trace`], from `level` up.
pub fn capture(level: tracing::Level) -> Buffer {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(buffer.clone())
        .with_ansi(false)
        .without_time()
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this test");
    buffer
}
