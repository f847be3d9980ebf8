//! Proxmox VE: the node hostsmith drives over ssh (`qm`, `pvesm`, uploads), the values that
//! go on its command lines, and the `deploy-image` flow built on them.

pub mod deploy;
pub mod guest;
pub mod names;
pub mod node;
pub mod plan;
pub mod wait;

pub use names::{RemotePath, StorageName, VmId};
pub use node::{Node, Remote, Ssh, Target};
