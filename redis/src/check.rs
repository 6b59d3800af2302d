//! Config rules across keys, checked when a config is read, so `topo validate` reports
//! them too.

use serde::Deserialize;

/// A config with rules across its keys, checked when it is read, so `topo validate`
/// reports them too.
pub trait Check {
    /// What is wrong with the config, as one sentence.
    fn check(&self) -> Result<(), String>;
}

/// A config `C` that passed [`Check::check`].
#[derive(Debug, Clone)]
pub struct Checked<C>(pub C);

impl<'de, C: Deserialize<'de> + Check> Deserialize<'de> for Checked<C> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c = C::deserialize(d)?;
        c.check().map_err(serde::de::Error::custom)?;
        Ok(Checked(c))
    }
}
