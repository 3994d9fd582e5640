//! The command-line side of cladnet: what the commands other than `agent`
//! do. They talk to the running agent only through its local API
//! ([`crate::api`]), and to other networks' members over the control plane.

pub mod client;
pub mod docgen;
pub mod federate;
pub mod render;
pub mod setup;
