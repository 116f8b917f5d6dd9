//! The one integration-test binary: each module pins one area.

mod decode;
mod objectives;
mod replay_e2e;
mod simulate;
mod spec_validate;
mod windowing;
