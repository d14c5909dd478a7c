//! `--follow-parent`: a host Kong starts stops when the nginx worker that started it exits, so
//! that it does not outlive a dead worker beside the one the next worker starts. A host started
//! any other way never stops because its parent exited.

use nix::unistd::{getppid, Pid};

/// The process a host follows: its parent when it started.
#[derive(Clone, Copy, Debug)]
pub struct FollowedParent(Pid);

impl FollowedParent {
    /// Read once, at start: a standby that takes over later still follows the worker that
    /// started it. `None` without `--follow-parent`, or when the parent is init (systemd, a
    /// container's pid 1): there is no worker to outlive.
    pub fn at_start(follow_parent: bool) -> Option<FollowedParent> {
        let parent = getppid();
        (follow_parent && parent != Pid::from_raw(1)).then_some(FollowedParent(parent))
    }

    /// Whether it exited (this process was re-parented).
    pub fn exited(self) -> bool {
        getppid() != self.0
    }

    /// Why the host stops once it exited.
    pub fn cause(self) -> String {
        format!("--follow-parent: the parent process {} exited", self.0)
    }
}
