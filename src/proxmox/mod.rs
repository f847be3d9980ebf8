//! Proxmox VE: the node hostsmith drives over ssh (`qm`, `pvesm`, `pvesh`, uploads), the
//! values that go on its command lines, the VM configuration it reads and merges into, and
//! the `deploy-image` flow built on them.

pub(crate) mod check;
pub(crate) mod deploy;
pub(crate) mod guest;
pub(crate) mod names;
pub(crate) mod node;
pub(crate) mod plan;
pub(crate) mod settings;
pub(crate) mod vm_config;
pub(crate) mod wait;

pub(crate) use names::{StorageName, VmId};
pub(crate) use node::{Node, Ssh, Target};
