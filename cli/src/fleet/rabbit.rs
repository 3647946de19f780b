//! RabbitMQ as a child process: the node script in /usr/lib/rabbitmq/bin run
//! directly (the /usr/sbin wrapper switches user and directory), with its own
//! HOME and Erlang cookie, node name, AMQP/distribution/epmd ports and every
//! file under the state directory. We start epmd ourselves first: a node that
//! starts its own epmd detaches it, and it would outlive `down`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Secrets;
use super::profile::PortPlan;

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("rabbitmq")
}

pub fn node_name(ports: &PortPlan) -> String {
    format!("storefront-{}@localhost", ports.amqp)
}

pub fn amqp_url(ports: &PortPlan) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", ports.amqp)
}

pub fn epmd_command(epmd: &Path, ports: &PortPlan) -> Command {
    let mut cmd = Command::new(epmd);
    cmd.args(["-port", &ports.epmd.to_string(), "-address", "127.0.0.1"]);
    cmd
}

/// Writes config files (every time: ports may have changed) and builds the command.
pub fn command(
    server: &Path,
    state_dir: &Path,
    ports: &PortPlan,
    secrets: &Secrets,
) -> Result<Command> {
    let d = dir(state_dir);
    let home = d.join("home");
    for sub in [&d, &home, &d.join("mnesia"), &d.join("log")] {
        super::private_dir(sub)?;
    }
    let cookie = home.join(".erlang.cookie");
    if cookie.exists() {
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::write(&cookie, &secrets.erlang_cookie)?;
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400))?;
    std::fs::write(
        d.join("rabbitmq.conf"),
        format!(
            "listeners.tcp.default = 127.0.0.1:{}\nloopback_users.guest = true\nlog.console = true\nlog.console.level = info\nlog.file = false\n",
            ports.amqp
        ),
    )?;
    std::fs::write(d.join("enabled_plugins"), "[].\n")?;
    std::fs::write(d.join("rabbitmq-env.conf"), "")?;

    let mut cmd = Command::new(server);
    cmd.current_dir(&d)
        .env("HOME", &home)
        .env("RABBITMQ_NODENAME", node_name(ports))
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", ports.amqp.to_string())
        .env("RABBITMQ_DIST_PORT", ports.rabbit_dist.to_string())
        .env("ERL_EPMD_PORT", ports.epmd.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
        .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
        .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
        .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
        .env("RABBITMQ_LOG_BASE", d.join("log"))
        .env("RABBITMQ_LOGS", "-")
        .env("RABBITMQ_PID_FILE", d.join("rabbit.pid"))
        // Distribution listens on loopback only.
        .env(
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
            "-kernel inet_dist_use_interface {127,0,0,1}",
        );
    Ok(cmd)
}

/// Ready = the AMQP listener answers our protocol header with a
/// Connection.Start method frame (it only listens once the node has booted).
pub async fn check(port: u16) -> Result<()> {
    check_at("127.0.0.1", port).await
}

pub async fn check_at(host: &str, port: u16) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect((host, port)).await?;
    s.write_all(b"AMQP\x00\x00\x09\x01").await?;
    let mut frame = [0u8; 11];
    s.read_exact(&mut frame).await.context("no AMQP greeting")?;
    // frame type 1 (method), class 10 (connection), method 10 (start)
    if frame[0] == 1 && frame[7..11] == [0, 10, 0, 10] {
        Ok(())
    } else {
        bail!("unexpected AMQP greeting {frame:?}")
    }
}
