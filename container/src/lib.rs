//! dare-container (work in progress)
pub mod frame;
