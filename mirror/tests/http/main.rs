//! The server's public behaviour over loopback: every test binds
//! `127.0.0.1:0`, serves a temporary directory and shuts the server down.

mod basics;
mod conditional;
mod connections;
mod curl;
mod lengths;
mod paths;
mod publishing;
mod ranges;
mod support;
