//! `calanque dir …`: each command builds model values (so that a typo is refused here, with
//! the model's own message, before anything is sent), talks to the REST API and prints.

mod loadtest;

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, anyhow, bail};
use directory::import::{CityParams, export_yaml, generate_city};
use directory::model::{
    CosName, Device, DeviceId, Directory, Email, EmergencyNumber, EmergencyRoute, Extension,
    ExtensionNumber, Ha1Pair, Kind, MediaPolicy, Name, NumberRange, Realm, SipUsername, Site,
    SiteId, Transport, TrunkName, User, UserId,
};
use serde_json::Value;

use crate::cli::{
    Connection, DeviceAdd, DirCommand, EntityCommand, ExportArgs, ExtensionAdd, FormatArg,
    GenerateCityArgs, ImportArgs, ListArgs, MediaPolicyArg, SiteAdd, TransportArg, UserAdd,
};
use crate::client::DirectoryClient;
use crate::output;

/// Runs one `dir` command.
pub async fn run(
    connection: &Connection,
    command: DirCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        DirCommand::User(c) => entity(connection, Kind::User, c, user_json, out).await,
        DirCommand::Site(c) => entity(connection, Kind::Site, c, site_json, out).await,
        DirCommand::Extension(c) => {
            entity(connection, Kind::Extension, c, extension_json, out).await
        }
        DirCommand::Device(c) => {
            entity(
                connection,
                Kind::Device,
                c,
                |a| device_json(a, read_password),
                out,
            )
            .await
        }
        DirCommand::Import(args) => import(connection, args, out).await,
        DirCommand::Export(args) => export(connection, args, out).await,
        DirCommand::GenerateCity(args) => generate(&args, out),
        DirCommand::Loadtest(args) => loadtest::run(&args, out).await,
    }
}

async fn entity<A: clap::Args>(
    connection: &Connection,
    kind: Kind,
    command: EntityCommand<A>,
    to_json: impl FnOnce(A) -> anyhow::Result<Value>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let token = kind.token();
    match command {
        EntityCommand::Add(args) => {
            let entry = to_json(args)?;
            let client = DirectoryClient::new(connection)?;
            let created = client.create(token, &entry).await?;
            let id = created
                .get(key_field(kind))
                .and_then(Value::as_str)
                .unwrap_or("?");
            writeln!(out, "created {} {id}", kind.label())?;
        }
        EntityCommand::List(ListArgs {
            name_prefix,
            number_prefix,
            page_size,
            json,
        }) => {
            let client = DirectoryClient::new(connection)?;
            let items = client
                .list_all(
                    token,
                    name_prefix.as_deref(),
                    number_prefix.as_deref(),
                    page_size,
                )
                .await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
            } else {
                out.write_all(output::table(token, &items).as_bytes())?;
            }
        }
        EntityCommand::Show(key) => {
            let client = DirectoryClient::new(connection)?;
            let entry = client.get(token, &key.id).await?;
            writeln!(out, "{}", serde_json::to_string_pretty(&entry)?)?;
        }
        EntityCommand::Rm(key) => {
            let client = DirectoryClient::new(connection)?;
            client.delete(token, &key.id).await?;
            writeln!(out, "deleted {} {}", kind.label(), key.id)?;
        }
    }
    Ok(())
}

/// The JSON field holding an entry's key.
fn key_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Extension | Kind::HuntGroup | Kind::PickupGroup => "number",
        Kind::ClassOfService | Kind::Trunk => "name",
        _ => "id",
    }
}

/// `what: reason` for a value the model refuses.
fn field<T, E: std::fmt::Display>(what: &str, parsed: Result<T, E>) -> anyhow::Result<T> {
    parsed.map_err(|e| anyhow!("--{what}: {e}"))
}

fn optional<T, E: std::fmt::Display>(
    what: &str,
    text: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> anyhow::Result<Option<T>> {
    text.map(|t| field(what, parse(t))).transpose()
}

/// The JSON of a new user (the model's serde form).
pub fn user_json(args: UserAdd) -> anyhow::Result<Value> {
    let user = User {
        id: field("id", UserId::parse(&args.id))?,
        display_name: field("display-name", Name::parse(&args.display_name))?,
        given_name: optional("given-name", args.given_name.as_deref(), Name::parse)?,
        family_name: optional("family-name", args.family_name.as_deref(), Name::parse)?,
        email: optional("email", args.email.as_deref(), Email::parse)?,
        site_id: field("site", SiteId::parse(&args.site))?,
    };
    Ok(serde_json::to_value(user)?)
}

/// The JSON of a new site.
pub fn site_json(args: SiteAdd) -> anyhow::Result<Value> {
    let number_ranges = args
        .ranges
        .iter()
        .map(|r| field("range", NumberRange::parse(r)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let emergency_routes = args
        .emergency_routes
        .iter()
        .map(|text| {
            let (number, trunk) = text
                .split_once('=')
                .ok_or_else(|| anyhow!("--emergency: expected number=trunk, got {text:?}"))?;
            Ok(EmergencyRoute {
                number: field("emergency", EmergencyNumber::parse(number))?,
                trunk: field("emergency", TrunkName::parse(trunk))?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let site = Site {
        id: field("id", SiteId::parse(&args.id))?,
        name: field("name", Name::parse(&args.name))?,
        number_ranges,
        emergency_routes,
        media_policy: match args.media_policy {
            MediaPolicyArg::Direct => MediaPolicy::Direct,
            MediaPolicyArg::Relay => MediaPolicy::Relay,
        },
    };
    Ok(serde_json::to_value(site)?)
}

/// The JSON of a new extension.
pub fn extension_json(args: ExtensionAdd) -> anyhow::Result<Value> {
    let extension = Extension {
        number: field("number", ExtensionNumber::parse(&args.number))?,
        site_id: field("site", SiteId::parse(&args.site))?,
        display_name: field("display-name", Name::parse(&args.display_name))?,
        class_of_service: field("cos", CosName::parse(&args.class_of_service))?,
        user_id: optional("user", args.user.as_deref(), UserId::parse)?,
        device_ids: args
            .devices
            .iter()
            .map(|d| field("device", DeviceId::parse(d)))
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    Ok(serde_json::to_value(extension)?)
}

/// The JSON of a new device: HA1s computed from the password, which goes no further.
pub fn device_json(
    args: DeviceAdd,
    read_password: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Value> {
    let sip_username = field("sip-username", SipUsername::parse(&args.sip_username))?;
    let realm = field("realm", Realm::parse(&args.realm))?;
    let password = match args.password {
        Some(password) => password,
        None => read_password()?,
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let ha1 = Ha1Pair::from_password(&sip_username, &realm, &password);
    drop(password);
    let device = Device {
        id: field("id", DeviceId::parse(&args.id))?,
        sip_username,
        site_id: field("site", SiteId::parse(&args.site))?,
        realm,
        ha1,
        transport: args.transport.map(|t| match t {
            TransportArg::Udp => Transport::Udp,
            TransportArg::Tcp => Transport::Tcp,
            TransportArg::Tls => Transport::Tls,
        }),
    };
    Ok(serde_json::to_value(device)?)
}

/// One line from standard input (prompting on a terminal).
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("SIP password (input is shown): ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The format of an import file: the flag, else its extension.
pub fn import_format(args: &ImportArgs) -> FormatArg {
    args.format.unwrap_or_else(|| {
        let csv = args
            .file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv { FormatArg::Csv } else { FormatArg::Yaml }
    })
}

fn check_kind(kind: Option<&str>, format: FormatArg) -> anyhow::Result<()> {
    if let Some(kind) = kind
        && Kind::from_token(kind).is_none()
    {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.token()).collect();
        bail!("unknown kind {kind:?} (one of {})", known.join(", "));
    }
    if format == FormatArg::Csv && kind.is_none() {
        bail!("a CSV file holds one kind: give --kind");
    }
    Ok(())
}

async fn import(
    connection: &Connection,
    args: ImportArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let format = import_format(&args);
    check_kind(args.kind.as_deref(), format)?;
    let file = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let client = DirectoryClient::new(connection)?;
    let outcome = client
        .import(
            format.token(),
            args.mode.token(),
            args.kind.as_deref(),
            file,
        )
        .await
        .with_context(|| format!("import of {} refused", args.file.display()))?;
    out.write_all(output::import_summary(&outcome).as_bytes())?;
    Ok(())
}

async fn export(
    connection: &Connection,
    args: ExportArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    check_kind(args.kind.as_deref(), args.format)?;
    let client = DirectoryClient::new(connection)?;
    let bytes = client
        .export(args.format.token(), args.kind.as_deref())
        .await?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, &bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            writeln!(out, "exported {} bytes to {}", bytes.len(), path.display())?;
        }
        None => out.write_all(&bytes)?,
    }
    Ok(())
}

fn generate(args: &GenerateCityArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut params = CityParams::reference(args.seed);
    params.sites = args.sites.unwrap_or(params.sites);
    params.users = args.users.unwrap_or(params.users);
    params.devices = args.devices.unwrap_or(params.devices);
    let entries = generate_city(&params).context("cannot generate the city")?;
    let count = entries.len();
    let directory =
        Directory::from_entries(entries).context("the generated city is not a valid directory")?;
    let yaml = export_yaml(&directory).context("cannot write the city as YAML")?;
    std::fs::write(&args.output, yaml.as_bytes())
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    writeln!(
        out,
        "generated {count} entries ({} sites, {} users, {} devices) to {}",
        params.sites,
        params.users,
        params.devices,
        args.output.display()
    )?;
    Ok(())
}
