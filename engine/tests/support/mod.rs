#![allow(dead_code)]
pub mod model;
pub mod zk;
