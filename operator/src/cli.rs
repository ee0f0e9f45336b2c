//! The `calanque-operator` command line: `crd` prints the CRD, `run` runs the controller.

use clap::{Parser, Subcommand};

/// The calanque Kubernetes operator.
#[derive(Debug, Parser)]
#[command(name = "calanque-operator", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the PbxCluster CRD (YAML) on stdout.
    Crd,
    /// Run the controller (in-cluster, or on the kubeconfig's current context).
    // Boxed: the flags (TLS paths included) dwarf the other variant.
    Run(Box<RunArgs>),
}

/// `calanque-operator run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Watch PbxClusters and their objects in this namespace only (all namespaces when absent;
    /// the ClusterRole must then allow it).
    #[arg(long, env = "CALANQUE_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// etcd endpoints of the failover controller's store, comma-separated. With them the
    /// status and the SIP addresses follow the failover state, `calanque.io/failback` is
    /// handed over, and the operator instances elect one leader (the only one that writes);
    /// without them each cluster's recorded failover state is carried over and this instance
    /// runs alone (run one replica only).
    #[arg(long, env = "CALANQUE_ETCD")]
    pub etcd: Option<String>,
    /// Client TLS towards etcd (`https://` endpoints).
    #[command(flatten)]
    pub etcd_tls: store::cli::EtcdTlsArgs,
    /// This instance's name in the election (the leader key's value); the host name (the pod
    /// name in Kubernetes) when absent.
    #[arg(long, env = "CALANQUE_OPERATOR_INSTANCE")]
    pub instance: Option<String>,
    /// TTL of the leadership lease (with `--etcd`): how long after a leader dies without
    /// resigning another instance takes over.
    #[arg(long, env = "CALANQUE_OPERATOR_LEASE_TTL_SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_ttl_seconds: u64,
    /// Seconds between reconciles of a stable cluster (watches trigger the others).
    #[arg(long, env = "CALANQUE_OPERATOR_REQUEUE_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub requeue_seconds: u64,
    /// Seconds between reconciles while a failover runs, a datacenter is unhealthy or pods
    /// are not ready (the status follows the spent budget).
    #[arg(long, env = "CALANQUE_OPERATOR_BUSY_REQUEUE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub busy_requeue_seconds: u64,
    /// Reconciles running at once, at most (never two for the same cluster).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    #[command(flatten)]
    pub telemetry: telemetry::TelemetryArgs,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn crd_takes_no_flags() {
        let cli = Cli::try_parse_from(["calanque-operator", "crd"]).unwrap();
        assert!(matches!(cli.command, Command::Crd));
        assert!(Cli::try_parse_from(["calanque-operator", "crd", "--namespace", "x"]).is_err());
    }

    #[test]
    fn run_defaults_and_flags() {
        let Command::Run(run) = Cli::try_parse_from(["calanque-operator", "run"])
            .unwrap()
            .command
        else {
            panic!("run");
        };
        assert_eq!(run.requeue_seconds, 300);
        assert_eq!(run.busy_requeue_seconds, 15);
        assert_eq!(run.concurrency, 4);
        assert_eq!(run.etcd, None, "no failover store unless given");
        assert_eq!(run.lease_ttl_seconds, 5);
        assert!(run.etcd_tls.tls().is_empty(), "no etcd TLS unless given");

        let Command::Run(run) = Cli::try_parse_from([
            "calanque-operator",
            "run",
            "--namespace",
            "calanque",
            "--requeue-seconds",
            "60",
            "--busy-requeue-seconds",
            "5",
            "--concurrency",
            "1",
            "--etcd",
            "http://etcd-a:2379,http://etcd-b:2379",
            "--etcd-ca-file",
            "/etc/calanque/tls/etcd/ca.crt",
            "--etcd-cert-file",
            "/etc/calanque/tls/etcd/tls.crt",
            "--etcd-key-file",
            "/etc/calanque/tls/etcd/tls.key",
            "--instance",
            "operator-dc-a",
            "--lease-ttl-seconds",
            "3",
            "--telemetry-listen",
            "0.0.0.0:9090",
            "--log-format",
            "json",
        ])
        .unwrap()
        .command
        else {
            panic!("run");
        };
        assert_eq!(run.namespace.as_deref(), Some("calanque"));
        assert_eq!(run.requeue_seconds, 60);
        assert_eq!(run.busy_requeue_seconds, 5);
        assert_eq!(run.concurrency, 1);
        assert_eq!(
            run.etcd.as_deref(),
            Some("http://etcd-a:2379,http://etcd-b:2379")
        );
        assert_eq!(run.instance.as_deref(), Some("operator-dc-a"));
        let tls = run.etcd_tls.tls();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/calanque/tls/etcd/ca.crt"))
        );
        assert!(tls.identity.is_some(), "mutual TLS");
        assert_eq!(run.lease_ttl_seconds, 3);
        assert_eq!(
            run.telemetry.telemetry_listen,
            Some("0.0.0.0:9090".parse().unwrap())
        );
    }

    #[test]
    fn zero_intervals_are_refused() {
        for flag in [
            "--requeue-seconds",
            "--busy-requeue-seconds",
            "--concurrency",
            "--lease-ttl-seconds",
        ] {
            assert!(
                Cli::try_parse_from(["calanque-operator", "run", flag, "0"]).is_err(),
                "{flag} 0"
            );
        }
    }
}
