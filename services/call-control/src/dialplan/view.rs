//! What the dial plan reads from the directory, as a trait so that the plan runs on the live
//! cache ([`DirectoryCache`]) in the service and on a [`MemoryDirectory`] in tests, without a
//! store.

use std::collections::HashMap;
use std::sync::Arc;

use directory::model::{
    ClassOfService, Device, Entry, Extension, HuntGroup, PickupGroup, Route, Site, Trunk,
};
use directory_client::DirectoryCache;

/// The directory lookups the dial plan needs. Every lookup is by key; none does I/O.
pub trait DirectoryView {
    /// The device with this id.
    fn device(&self, id: &str) -> Option<Arc<Device>>;
    /// The extensions ringing this device (the caller's identities), in number order.
    fn extensions_of_device(&self, device_id: &str) -> Vec<Arc<Extension>>;
    /// The extension with this number.
    fn extension(&self, number: &str) -> Option<Arc<Extension>>;
    /// The hunt group with this number.
    fn hunt_group(&self, number: &str) -> Option<Arc<HuntGroup>>;
    /// The pickup group with this number.
    fn pickup_group(&self, number: &str) -> Option<Arc<PickupGroup>>;
    /// The site with this id.
    fn site(&self, id: &str) -> Option<Arc<Site>>;
    /// The class of service with this name.
    fn class_of_service(&self, name: &str) -> Option<Arc<ClassOfService>>;
    /// The trunk with this name.
    fn trunk(&self, name: &str) -> Option<Arc<Trunk>>;
    /// Every route, in any order (the plan orders them).
    fn routes(&self) -> Vec<Arc<Route>>;
}

/// The live cache. It has no device → extensions index yet, so a device's extensions are
/// found by the registration convention the edge accepts (a device registers its SIP username
/// or an extension it rings): the extension numbered like the device's SIP username, if it
/// rings that device. Devices whose username is not their extension number look like devices
/// without an extension (emergency calls only) until the cache grows that index.
impl DirectoryView for DirectoryCache {
    fn device(&self, id: &str) -> Option<Arc<Device>> {
        DirectoryCache::device(self, id)
    }

    fn extensions_of_device(&self, device_id: &str) -> Vec<Arc<Extension>> {
        DirectoryCache::extensions_of_device(self, device_id)
    }

    fn extension(&self, number: &str) -> Option<Arc<Extension>> {
        DirectoryCache::extension(self, number)
    }

    fn hunt_group(&self, number: &str) -> Option<Arc<HuntGroup>> {
        DirectoryCache::hunt_group(self, number)
    }

    fn pickup_group(&self, number: &str) -> Option<Arc<PickupGroup>> {
        DirectoryCache::pickup_group(self, number)
    }

    fn site(&self, id: &str) -> Option<Arc<Site>> {
        DirectoryCache::site(self, id)
    }

    fn class_of_service(&self, name: &str) -> Option<Arc<ClassOfService>> {
        DirectoryCache::class_of_service(self, name)
    }

    fn trunk(&self, name: &str) -> Option<Arc<Trunk>> {
        DirectoryCache::trunk(self, name)
    }

    fn routes(&self) -> Vec<Arc<Route>> {
        DirectoryCache::routes(self)
    }
}

/// A directory held in memory, indexed like the cache plus a device → extensions index. It
/// does not validate the entries (tests use it to build directories the service would refuse,
/// e.g. a route to a trunk that is gone); validate first with
/// `directory::model::Directory::from_entries` when that matters.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    sites: HashMap<String, Arc<Site>>,
    extensions: HashMap<String, Arc<Extension>>,
    devices: HashMap<String, Arc<Device>>,
    device_extensions: HashMap<String, Vec<Arc<Extension>>>,
    hunt_groups: HashMap<String, Arc<HuntGroup>>,
    pickup_groups: HashMap<String, Arc<PickupGroup>>,
    classes_of_service: HashMap<String, Arc<ClassOfService>>,
    trunks: HashMap<String, Arc<Trunk>>,
    routes: Vec<Arc<Route>>,
}

impl MemoryDirectory {
    /// A directory of these entries (a later entry with the same key replaces an earlier one;
    /// users are not needed by the dial plan and are ignored).
    pub fn from_entries(entries: impl IntoIterator<Item = Entry>) -> MemoryDirectory {
        let mut directory = MemoryDirectory::default();
        let mut routes = HashMap::new();
        for entry in entries {
            match entry {
                Entry::Site(e) => drop(directory.sites.insert(e.id.to_string(), Arc::new(e))),
                Entry::User(_) => {}
                Entry::Extension(e) => drop(
                    directory
                        .extensions
                        .insert(e.number.to_string(), Arc::new(e)),
                ),
                Entry::Device(e) => drop(directory.devices.insert(e.id.to_string(), Arc::new(e))),
                Entry::HuntGroup(e) => drop(
                    directory
                        .hunt_groups
                        .insert(e.number.to_string(), Arc::new(e)),
                ),
                Entry::PickupGroup(e) => drop(
                    directory
                        .pickup_groups
                        .insert(e.number.to_string(), Arc::new(e)),
                ),
                Entry::ClassOfService(e) => drop(
                    directory
                        .classes_of_service
                        .insert(e.name.to_string(), Arc::new(e)),
                ),
                Entry::Trunk(e) => drop(directory.trunks.insert(e.name.to_string(), Arc::new(e))),
                Entry::Route(e) => drop(routes.insert(e.id.to_string(), Arc::new(e))),
            }
        }
        directory.routes = routes.into_values().collect();
        let mut by_number: Vec<&Arc<Extension>> = directory.extensions.values().collect();
        by_number.sort_by(|a, b| a.number.cmp(&b.number));
        for extension in by_number {
            for device in &extension.device_ids {
                directory
                    .device_extensions
                    .entry(device.to_string())
                    .or_default()
                    .push(extension.clone());
            }
        }
        directory
    }
}

impl DirectoryView for MemoryDirectory {
    fn device(&self, id: &str) -> Option<Arc<Device>> {
        self.devices.get(id).cloned()
    }

    fn extensions_of_device(&self, device_id: &str) -> Vec<Arc<Extension>> {
        self.device_extensions
            .get(device_id)
            .cloned()
            .unwrap_or_default()
    }

    fn extension(&self, number: &str) -> Option<Arc<Extension>> {
        self.extensions.get(number).cloned()
    }

    fn hunt_group(&self, number: &str) -> Option<Arc<HuntGroup>> {
        self.hunt_groups.get(number).cloned()
    }

    fn pickup_group(&self, number: &str) -> Option<Arc<PickupGroup>> {
        self.pickup_groups.get(number).cloned()
    }

    fn site(&self, id: &str) -> Option<Arc<Site>> {
        self.sites.get(id).cloned()
    }

    fn class_of_service(&self, name: &str) -> Option<Arc<ClassOfService>> {
        self.classes_of_service.get(name).cloned()
    }

    fn trunk(&self, name: &str) -> Option<Arc<Trunk>> {
        self.trunks.get(name).cloned()
    }

    fn routes(&self) -> Vec<Arc<Route>> {
        self.routes.clone()
    }
}
