//! The command tree (clap derive). `calanque <group> <command>`: the `dir` group, and the
//! all-in-one `run`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Environment variable naming the directory's REST base URL.
pub const ENV_DIRECTORY_URL: &str = "CALANQUE_DIRECTORY_URL";
/// Environment variable holding the bearer token.
pub const ENV_TOKEN: &str = "CALANQUE_TOKEN";
/// Where the directory listens by default (the all-in-one and a port-forward).
pub const DEFAULT_DIRECTORY_URL: &str = "http://127.0.0.1:8080";

/// calanque — a highly available IP-PBX.
#[derive(Debug, Parser)]
#[command(name = "calanque", version, about)]
pub struct Cli {
    /// How to reach the directory (every `dir` command that talks to it).
    #[command(flatten)]
    pub connection: Connection,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The directory service's REST endpoint and credentials.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Base URL of the directory's REST API.
    #[arg(long, global = true, env = ENV_DIRECTORY_URL, default_value = DEFAULT_DIRECTORY_URL)]
    pub server: String,
    /// Bearer token for the directory API.
    #[arg(long, global = true, env = ENV_TOKEN, hide_env_values = true, conflicts_with = "token_file")]
    pub token: Option<String>,
    /// File holding the bearer token (surrounding whitespace ignored).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// Command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Directory administration: users, sites, extensions, devices, bulk files.
    #[command(subcommand)]
    Dir(DirCommand),
    /// Run calanque all-in-one: directory, SIP edge and call-control in this process, data on
    /// disk, a demo directory on first start.
    Run(RunArgs),
}

/// `calanque run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Where the embedded store, the admin token and the demo credentials live.
    #[arg(long, env = "CALANQUE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// SIP listening addresses (`udp:IP:PORT`, `tcp:IP:PORT`), comma-separated or repeated.
    #[arg(
        long = "listen",
        env = "CALANQUE_SIP_LISTEN",
        value_delimiter = ',',
        default_value = "udp:0.0.0.0:5060,tcp:0.0.0.0:5060"
    )]
    pub listen: Vec<String>,
    /// The directory's REST API (admin CLI, `calanque dir …`).
    #[arg(long, env = "CALANQUE_REST", default_value = "127.0.0.1:8080")]
    pub rest: std::net::SocketAddr,
    /// The SIP realm and domain of the demo PBX.
    #[arg(long, env = "CALANQUE_REALM", default_value = "calanque")]
    pub realm: String,
    /// Digest algorithms challenged, in order. MD5 alone by default: softphones built on
    /// libre (baresip 1.0) and SIPp 3.6 fail on any SHA-256 challenge instead of skipping it
    /// (RFC 8760 §2.4); give `SHA-256,MD5` when every phone supports SHA-256.
    #[arg(
        long,
        env = "CALANQUE_DIGEST_ALGORITHMS",
        value_delimiter = ',',
        default_value = "MD5"
    )]
    pub digest_algorithms: Vec<String>,
    /// Run the media relay in this process, reachable by the phones at this IP (written into
    /// SDP); calls of `Relay` sites are then anchored on it. Without it media is always direct.
    #[arg(long, env = "CALANQUE_MEDIA_IP")]
    pub media_ip: Option<std::net::IpAddr>,
    /// The relay's UDP port range, `FIRST-LAST`.
    #[arg(long, default_value = "30000-30999")]
    pub media_ports: String,
    /// Logs, traces (OTLP) and the `/metrics`, `/healthz`, `/readyz` endpoints.
    #[command(flatten)]
    pub telemetry: telemetry::TelemetryArgs,
    /// How long, in seconds, a call rings unanswered before the caller gets 480 and the
    /// ringing phones a CANCEL.
    #[arg(
        long,
        env = "CALANQUE_RING_TIMEOUT",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub ring_timeout: u64,
    /// Requests per second one source address may send before it is banned.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Token-bucket depth of that limit.
    #[arg(long)]
    pub rate_burst: Option<u32>,
    /// Networks exempt from flood bans (CIDR, comma-separated or repeated): phones behind one
    /// NAT address, load generators.
    #[arg(
        long = "trusted-network",
        env = "CALANQUE_TRUSTED_NETWORKS",
        value_delimiter = ','
    )]
    pub trusted_networks: Vec<String>,
}

/// `calanque dir …`
#[derive(Debug, Subcommand)]
pub enum DirCommand {
    /// Staff members.
    #[command(subcommand)]
    User(EntityCommand<UserAdd>),
    /// Sites and their number ranges.
    #[command(subcommand)]
    Site(EntityCommand<SiteAdd>),
    /// Directory numbers.
    #[command(subcommand)]
    Extension(EntityCommand<ExtensionAdd>),
    /// SIP devices and their credentials (HA1 only).
    #[command(subcommand)]
    Device(EntityCommand<DeviceAdd>),
    /// Applies a bulk file (YAML, or CSV of one kind) in one transaction.
    Import(ImportArgs),
    /// Writes the directory (or one kind) as YAML or CSV.
    Export(ExportArgs),
    /// Writes a generated city-sized directory as YAML (tests and benchmarks).
    GenerateCity(GenerateCityArgs),
    /// Sends directory GET requests over the bus and reports their latency.
    Loadtest(LoadtestArgs),
}

/// The same four commands for every entity kind.
#[derive(Debug, Subcommand)]
pub enum EntityCommand<A: Args> {
    /// Creates one.
    Add(A),
    /// Lists them (every page), as a table or JSON.
    List(ListArgs),
    /// Shows one as JSON.
    Show(KeyArg),
    /// Deletes one.
    Rm(KeyArg),
}

/// Filters and output of `list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only entries whose name starts with this (case-insensitive).
    #[arg(long)]
    pub name_prefix: Option<String>,
    /// Only entries whose number starts with this.
    #[arg(long)]
    pub number_prefix: Option<String>,
    /// Entries per request while paging.
    #[arg(long, default_value_t = 500)]
    pub page_size: usize,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The id, number or name of one entry.
#[derive(Debug, Clone, Args)]
pub struct KeyArg {
    /// Id (user, site, device) or number (extension).
    pub id: String,
}

/// `calanque dir user add`
#[derive(Debug, Clone, Args)]
pub struct UserAdd {
    /// User id, e.g. U-00042.
    #[arg(long)]
    pub id: String,
    /// Name shown on phones.
    #[arg(long)]
    pub display_name: String,
    /// Site the user works at.
    #[arg(long)]
    pub site: String,
    /// Given name.
    #[arg(long)]
    pub given_name: Option<String>,
    /// Family name.
    #[arg(long)]
    pub family_name: Option<String>,
    /// E-mail address.
    #[arg(long)]
    pub email: Option<String>,
}

/// `calanque dir site add`
#[derive(Debug, Clone, Args)]
pub struct SiteAdd {
    /// Site id, e.g. S-001.
    #[arg(long)]
    pub id: String,
    /// Human name.
    #[arg(long)]
    pub name: String,
    /// Extension number range `first-last` (repeatable, at least one).
    #[arg(long = "range", required = true)]
    pub ranges: Vec<String>,
    /// Emergency number and its trunk, `number=trunk` (repeatable).
    #[arg(long = "emergency")]
    pub emergency_routes: Vec<String>,
    /// Direct media between on-net phones, or always relayed.
    #[arg(long, value_enum, default_value_t = MediaPolicyArg::Direct)]
    pub media_policy: MediaPolicyArg,
}

/// Media policy values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MediaPolicyArg {
    /// Phones exchange RTP directly.
    Direct,
    /// Media always anchored.
    Relay,
}

/// `calanque dir extension add`
#[derive(Debug, Clone, Args)]
pub struct ExtensionAdd {
    /// The directory number.
    #[arg(long)]
    pub number: String,
    /// Site whose range holds the number.
    #[arg(long)]
    pub site: String,
    /// Caller name presented.
    #[arg(long)]
    pub display_name: String,
    /// Class of service.
    #[arg(long = "cos")]
    pub class_of_service: String,
    /// Owner (none for a shared line).
    #[arg(long)]
    pub user: Option<String>,
    /// Device that rings (repeatable).
    #[arg(long = "device")]
    pub devices: Vec<String>,
}

/// `calanque dir device add`: the password is turned into HA1s here and never sent.
#[derive(Debug, Clone, Args)]
pub struct DeviceAdd {
    /// Device id, e.g. D-00042.
    #[arg(long)]
    pub id: String,
    /// Digest username.
    #[arg(long)]
    pub sip_username: String,
    /// Site of the device.
    #[arg(long)]
    pub site: String,
    /// Digest realm.
    #[arg(long)]
    pub realm: String,
    /// Expected transport (any when absent).
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,
    /// SIP password; read from standard input (one line) when absent. Only its HA1s leave
    /// this process.
    #[arg(long)]
    pub password: Option<String>,
}

/// Transport values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TransportArg {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS.
    Tls,
}

/// Bulk file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// One YAML document with a section per kind.
    Yaml,
    /// One CSV file per kind (needs `--kind`).
    Csv,
}

impl FormatArg {
    /// The API's `format` value.
    pub fn token(self) -> &'static str {
        match self {
            FormatArg::Yaml => "yaml",
            FormatArg::Csv => "csv",
        }
    }
}

/// How an import treats what the file does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Add and change; delete nothing.
    Merge,
    /// Also delete entries of the file's kinds that it no longer lists.
    Replace,
}

impl ModeArg {
    /// The API's `mode` value.
    pub fn token(self) -> &'static str {
        match self {
            ModeArg::Merge => "merge",
            ModeArg::Replace => "replace",
        }
    }
}

/// `calanque dir import`
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The file.
    pub file: PathBuf,
    /// Its format (guessed from the extension when absent: `.csv` → csv, else yaml).
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// The kind a CSV file holds (`user`, `hunt_group`, …).
    #[arg(long)]
    pub kind: Option<String>,
    /// Merge (default) or replace.
    #[arg(long, value_enum, default_value_t = ModeArg::Merge)]
    pub mode: ModeArg,
}

/// `calanque dir export`
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Yaml)]
    pub format: FormatArg,
    /// Only this kind (required for CSV).
    #[arg(long)]
    pub kind: Option<String>,
    /// Write here instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// `calanque dir generate-city`
#[derive(Debug, Clone, Args)]
pub struct GenerateCityArgs {
    /// Seed of the pseudo-random choices (same seed, same city).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the YAML.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sites (default: the reference city's 300).
    #[arg(long)]
    pub sites: Option<usize>,
    /// Users (default 12,000).
    #[arg(long)]
    pub users: Option<usize>,
    /// Devices (default 6,000).
    #[arg(long)]
    pub devices: Option<usize>,
}

/// `calanque dir loadtest`
#[derive(Debug, Clone, Args)]
pub struct LoadtestArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long)]
    pub nats: String,
    /// A directory YAML file whose devices' SIP usernames are looked up.
    #[arg(long)]
    pub usernames_from: PathBuf,
    /// Total requests.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Bound on one request, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub timeout_ms: u64,
}
