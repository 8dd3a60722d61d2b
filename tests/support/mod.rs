//! Shared helpers for the integration tests (`mod support;` in a test file): pcap writing, an
//! in-process server on loopback, and SIPp as the trunk.
#![allow(dead_code)] // each integration test uses a different part of these modules

pub mod agent;
pub mod pcap;
pub mod server;
pub mod sipp;
