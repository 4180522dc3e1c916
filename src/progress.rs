//! Progress reporting for long work (building a classifier over 1000 classes x 81 templates,
//! embedding a folder of images). The library never prints: it calls a [`Progress`] that the
//! caller supplies. [`Silent`] ignores everything; the `florence` CLI and the examples plug in a
//! terminal bar.

/// Receives progress from long-running library calls. Every method has a do-nothing default.
pub trait Progress {
    /// A task with `total` steps begins (`total` is in the unit the task counts: texts, images).
    fn start(&mut self, _task: &str, _total: usize) {}
    /// `n` more steps are done.
    fn advance(&mut self, _n: usize) {}
    /// Something was skipped or degraded (an unreadable file in a folder, say); the call goes on.
    fn warn(&mut self, _message: &str) {}
    /// A status line for the running task (a training step's loss and throughput, say).
    fn message(&mut self, _message: &str) {}
    /// The task ended.
    fn finish(&mut self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Records every event; handy in tests and for callers that want a log instead of a bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recorder {
    /// `(task, total)` of every started task.
    pub started: Vec<(String, usize)>,
    /// Steps reported in all.
    pub done: usize,
    /// Warnings, in order.
    pub warnings: Vec<String>,
    /// Number of finished tasks.
    pub finished: usize,
}

impl Progress for Recorder {
    fn start(&mut self, task: &str, total: usize) {
        self.started.push((task.to_string(), total));
    }
    fn advance(&mut self, n: usize) {
        self.done += n;
    }
    fn warn(&mut self, message: &str) {
        self.warnings.push(message.to_string());
    }
    fn finish(&mut self) {
        self.finished += 1;
    }
}
