//! The dial plan: from the calling device and the dialled string to where the call goes
//! ([`Target`]) or why it may not ([`Refusal`], with its SIP status). Sans-IO: it reads the
//! directory through [`DirectoryView`] and does nothing else.
//!
//! # Who is calling
//!
//! The caller is the authenticated device. Its extensions are the extensions ringing it
//! ([`DirectoryView::extensions_of_device`]). The **caller's site** is read two ways, on
//! purpose:
//! - emergency calls use the *device's* site (`Device.site_id`, where the phone is): that is
//!   where help must come, and a device without an extension still has one;
//! - short numbers use the site of the caller's first extension (in number order; the device's
//!   site when it has none): the numbering plan belongs to the extension.
//!
//! What the caller may dial is the union of its extensions' classes of service (the device
//! may present itself as any of them anyway). A device without an extension may dial
//! emergency numbers only.
//!
//! # Resolution order
//!
//! 1. Normalize the dialled string (`number` module docs: separators, `sip:`/`tel:`, the `+`
//!    form kept as dialled). Not a number → [`Refusal::NotFound`].
//! 2. **Emergency** numbers of the device's site (`Site.emergency_routes`) → [`Target::Emergency`]
//!    through that site's trunk, whatever the class of service. They shadow any extension or
//!    short number spelled the same.
//! 3. **Internal numbers** dialled in full (extension, hunt group, pickup group: one numbering
//!    plan) — any site.
//! 4. **Short numbers** on the caller's own site. The model has no explicit site prefix, so a
//!    site range's prefix is the common leading digits of its two ends and a short number is
//!    the remaining digits: with `21000-21999`, `512` dials `21512`. A range whose ends share
//!    no tail (a single number) has no short form.
//! 5. **Routes** whose pattern matches, best first: lowest `priority`, then the most specific
//!    pattern (fixed length before open-ended, longer, more literal digits, narrower digit
//!    classes), then route id. The best route's `category` is checked against the class of
//!    service (a barred number stays barred: a worse route cannot be used to escape the
//!    check); if its trunk is missing the next matching route is tried, and when none is left
//!    the call is [`Refusal::Unavailable`]. The number sent is the dialled one after
//!    `strip_digits` and `prepend`. A route to a site sends the manipulated number to that
//!    site's extension or group.
//! 6. Nothing matched: [`Refusal::Incomplete`] if the number is the beginning of something
//!    that could match (a route pattern, an emergency number, a number of the caller's site in
//!    full or short form), otherwise [`Refusal::NotFound`].
//!
//! Internal calls need the `internal` category like any other.

mod number;
mod routes;
mod view;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use directory::model::{CallCategory, Device, Extension, HuntStrategy, Route, RouteTarget, Site};

pub use view::{DirectoryView, MemoryDirectory};

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An extension: ring its devices in parallel.
    Extension {
        /// The extension number.
        number: String,
        /// Devices to ring, in parallel (may be empty: nothing will answer).
        device_ids: Vec<String>,
        /// The extension's site (its media policy applies).
        site_id: String,
    },
    /// A hunt group: offer the call to its members per the strategy.
    HuntGroup {
        /// The group's number.
        number: String,
        /// Members in the group's order, each with the devices it rings (members whose
        /// extension is gone are left out).
        members: Vec<HuntMember>,
        /// How members are offered the call.
        strategy: HuntStrategy,
        /// How long a member (or the whole group, when simultaneous) rings.
        ring_timeout: Duration,
    },
    /// A pickup group number: pick up a call ringing one of its members.
    Pickup {
        /// The group's number.
        number: String,
        /// The member extensions whose ringing calls may be picked up.
        members: Vec<String>,
    },
    /// Out through a trunk.
    Trunk {
        /// The route chosen.
        route_id: String,
        /// The trunk's name.
        trunk: String,
        /// The number as sent to the trunk (after the route's digit manipulation).
        number: String,
        /// What the destination is (for records and limits).
        category: CallCategory,
    },
    /// An emergency call, routed for the calling device's site.
    Emergency {
        /// The emergency number, as dialled.
        number: String,
        /// The trunk the site sends it through.
        trunk: String,
        /// The calling device's site (its location).
        site_id: String,
    },
}

/// A hunt group member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuntMember {
    /// The member's extension number.
    pub number: String,
    /// The devices the extension rings.
    pub device_ids: Vec<String>,
}

/// Why a call is not placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller may not make this call (class of service, unknown device, not a pickup group
    /// member); the reason is human-readable and may go in the 403's reason phrase.
    #[error("barred: {reason}")]
    Barred {
        /// Why, for the caller.
        reason: String,
    },
    /// Nothing answers to this number.
    #[error("no such number")]
    NotFound,
    /// The number is the beginning of a valid number: more digits are needed.
    #[error("the number is incomplete")]
    Incomplete,
    /// The number is valid but cannot be reached now (the trunk of every matching route is
    /// missing from the directory).
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why, for the logs.
        reason: String,
    },
}

impl Refusal {
    /// The SIP status answering the INVITE: 403, 404, 484, or 480 for an unavailable
    /// destination (not 503, which would make phones fail over to another proxy for what is
    /// one destination's problem).
    pub fn status_code(&self) -> u16 {
        match self {
            Refusal::Barred { .. } => 403,
            Refusal::NotFound => 404,
            Refusal::Incomplete => 484,
            Refusal::Unavailable { .. } => 480,
        }
    }
}

/// Decides where a call from `caller_device_id` to `dialed` goes (see the module
/// documentation for the rules and their order).
pub fn route(
    directory: &impl DirectoryView,
    caller_device_id: &str,
    dialed: &str,
) -> Result<Target, Refusal> {
    let device = directory
        .device(caller_device_id)
        .ok_or_else(|| Refusal::Barred {
            reason: format!("device {caller_device_id} is not in the directory"),
        })?;
    let number = number::normalize(dialed).map_err(|_| Refusal::NotFound)?;
    let device_site = directory.site(device.site_id.as_str());

    // Emergency first: always allowed, routed for where the device is.
    if let Some(site) = &device_site
        && let Some(emergency) = site
            .emergency_routes
            .iter()
            .find(|e| e.number.as_str() == number)
    {
        return Ok(Target::Emergency {
            number,
            trunk: emergency.trunk.to_string(),
            site_id: site.id.to_string(),
        });
    }

    let device_site_emergency: Vec<String> = device_site
        .iter()
        .flat_map(|site| site.emergency_routes.iter().map(|e| e.number.to_string()))
        .collect();
    let caller = Caller::new(directory, &device);
    let home_site = caller
        .extensions
        .first()
        .and_then(|e| directory.site(e.site_id.as_str()))
        .or(device_site);

    if number::is_digits(&number) {
        if let Some(target) = internal(directory, &caller, &number)? {
            return Ok(target);
        }
        if let Some(site) = &home_site {
            for full in short_forms(site, &number) {
                if let Some(target) = internal(directory, &caller, &full)? {
                    return Ok(target);
                }
            }
        }
    }

    let all_routes = directory.routes();
    let candidates = routes::candidates(&all_routes, &number);
    if !candidates.is_empty() {
        return through_routes(directory, &caller, &candidates, &number);
    }

    let incomplete = all_routes
        .iter()
        .any(|r| routes::could_complete(&r.pattern, &number))
        || home_site
            .as_deref()
            .is_some_and(|site| could_complete_on_site(site, &number))
        || device_site_emergency
            .iter()
            .any(|e| e.len() > number.len() && e.starts_with(&number));
    if incomplete {
        Err(Refusal::Incomplete)
    } else {
        Err(Refusal::NotFound)
    }
}

/// The caller as the dial plan sees it.
struct Caller {
    device_id: String,
    extensions: Vec<Arc<Extension>>,
    /// Union of the extensions' classes of service.
    allowed: BTreeSet<CallCategory>,
    /// The classes of service, for the reason of a refusal.
    cos_names: Vec<String>,
}

impl Caller {
    fn new(directory: &impl DirectoryView, device: &Device) -> Caller {
        let extensions = directory.extensions_of_device(device.id.as_str());
        let mut allowed = BTreeSet::new();
        let mut cos_names = Vec::new();
        for extension in &extensions {
            let name = extension.class_of_service.as_str();
            if !cos_names.iter().any(|n| n == name) {
                cos_names.push(name.to_owned());
            }
            // An unknown class of service allows nothing (the directory forbids it; the cache
            // may briefly hold an extension before its class).
            if let Some(cos) = directory.class_of_service(name) {
                allowed.extend(cos.allowed.iter().copied());
            }
        }
        Caller {
            device_id: device.id.to_string(),
            extensions,
            allowed,
            cos_names,
        }
    }

    /// Ok if the caller may dial a number of `category`, else the refusal saying why.
    fn check(&self, category: CallCategory, what: &str) -> Result<(), Refusal> {
        if self.allowed.contains(&category) {
            return Ok(());
        }
        let reason = if self.extensions.is_empty() {
            format!(
                "device {} has no extension: only emergency calls are allowed",
                self.device_id
            )
        } else {
            format!(
                "class of service {} does not allow {category} calls ({what})",
                self.cos_names.join(", ")
            )
        };
        Err(Refusal::Barred { reason })
    }
}

/// The internal number `number` (extension, hunt group or pickup group), if it is one.
fn internal(
    directory: &impl DirectoryView,
    caller: &Caller,
    number: &str,
) -> Result<Option<Target>, Refusal> {
    if let Some(extension) = directory.extension(number) {
        caller.check(CallCategory::Internal, &format!("extension {number}"))?;
        return Ok(Some(extension_target(&extension)));
    }
    if let Some(group) = directory.hunt_group(number) {
        caller.check(CallCategory::Internal, &format!("hunt group {number}"))?;
        let members = group
            .members
            .iter()
            .filter_map(|m| directory.extension(m.as_str()))
            .map(|e| HuntMember {
                number: e.number.to_string(),
                device_ids: e.device_ids.iter().map(ToString::to_string).collect(),
            })
            .collect();
        return Ok(Some(Target::HuntGroup {
            number: number.to_owned(),
            members,
            strategy: group.strategy,
            ring_timeout: Duration::from_secs(u64::from(group.ring_timeout.seconds())),
        }));
    }
    if let Some(group) = directory.pickup_group(number) {
        let member = caller
            .extensions
            .iter()
            .any(|e| group.members.contains(&e.number));
        if !member {
            return Err(Refusal::Barred {
                reason: format!("not a member of pickup group {number}"),
            });
        }
        return Ok(Some(Target::Pickup {
            number: number.to_owned(),
            members: group.members.iter().map(ToString::to_string).collect(),
        }));
    }
    Ok(None)
}

fn extension_target(extension: &Extension) -> Target {
    Target::Extension {
        number: extension.number.to_string(),
        device_ids: extension
            .device_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        site_id: extension.site_id.to_string(),
    }
}

/// A range's short-dial prefix: the leading digits its two ends share (`21000-21999` → `21`),
/// and the length of the short form (3). `None` for `+` ranges and single numbers.
fn short_prefix(first: &str, last: &str) -> Option<(String, usize)> {
    if first.starts_with('+') {
        return None;
    }
    let shared = first
        .bytes()
        .zip(last.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let short_len = first.len() - shared;
    (short_len > 0).then(|| (first[..shared].to_owned(), short_len))
}

/// The full numbers `short` stands for on `site` (one per range it fits, in range order).
fn short_forms(site: &Site, short: &str) -> Vec<String> {
    site.number_ranges
        .iter()
        .filter_map(|range| {
            let (prefix, len) = short_prefix(range.first(), range.last())?;
            let full = format!("{prefix}{short}");
            (short.len() == len && range.contains(&full)).then_some(full)
        })
        .collect()
}

/// Whether `number` is the beginning of a number of `site`, in full or short form.
fn could_complete_on_site(site: &Site, number: &str) -> bool {
    if !number::is_digits(number) {
        return false;
    }
    site.number_ranges.iter().any(|range| {
        let (first, last) = (range.first(), range.last());
        let full = number.len() < first.len() && routes::within(number, first, last);
        let short = short_prefix(first, last).is_some_and(|(prefix, len)| {
            number.len() < len && routes::within(&format!("{prefix}{number}"), first, last)
        });
        full || short
    })
}

/// The call through the best of the matching routes (`candidates`, best first).
fn through_routes(
    directory: &impl DirectoryView,
    caller: &Caller,
    candidates: &[Arc<Route>],
    number: &str,
) -> Result<Target, Refusal> {
    if let Some(best) = candidates.first() {
        caller.check(best.category, &format!("route {}", best.id))?;
    }
    let mut missing = Vec::new();
    for route in candidates {
        let sent = routes::manipulate(route, number);
        match &route.target {
            RouteTarget::Trunk(trunk) => {
                if directory.trunk(trunk.as_str()).is_some() {
                    return Ok(Target::Trunk {
                        route_id: route.id.to_string(),
                        trunk: trunk.to_string(),
                        number: sent,
                        category: route.category,
                    });
                }
                tracing::warn!(route = %route.id, %trunk, "route to a trunk missing from the directory");
                missing.push(format!("trunk {trunk} of route {}", route.id));
            }
            // The route's category was checked; the manipulated number is looked up in the
            // one numbering plan (the directory checks it lies in that site's ranges).
            RouteTarget::Site(_) => {
                return internal(directory, caller, &sent)?.ok_or(Refusal::NotFound);
            }
        }
    }
    Err(Refusal::Unavailable {
        reason: format!("missing: {}", missing.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_prefix_is_the_shared_leading_digits() {
        assert_eq!(short_prefix("21000", "21999"), Some(("21".into(), 3)));
        assert_eq!(short_prefix("4500", "4599"), Some(("45".into(), 2)));
        assert_eq!(short_prefix("1000000", "1000999"), Some(("1000".into(), 3)));
        assert_eq!(short_prefix("4512", "4512"), None);
        assert_eq!(short_prefix("+33140000000", "+33140009999"), None);
    }

    #[test]
    fn refusals_map_to_their_sip_status() {
        let barred = Refusal::Barred { reason: "x".into() };
        assert_eq!(barred.status_code(), 403);
        assert_eq!(Refusal::NotFound.status_code(), 404);
        assert_eq!(Refusal::Incomplete.status_code(), 484);
        let unavailable = Refusal::Unavailable { reason: "x".into() };
        assert_eq!(unavailable.status_code(), 480);
    }
}
