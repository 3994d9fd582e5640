//! The sans-IO parts of a running member: decisions taken from what it
//! was told and the time it was given, with no clock, socket or task of
//! their own. The control loop (`crate::mesh`) feeds them and carries out
//! what they decide.

pub mod redial;
