//! Fixtures shared by the integration tests.

pub mod http;
pub mod run;
pub mod servers;
