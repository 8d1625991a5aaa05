//! `openami serve`: the HTTP server on the embedded default (SQLite catalog, local
//! object stores), or on a PostgreSQL catalog (`--catalog postgres://…`), possibly as
//! one node of a node cluster (`--node-id N --zone Z…`, see `engine::nodes`).
//!
//! It serves the EC2 Query API (with SSM, Auto Scaling and ELBv2 beside it) at `/` and
//! `GET /health`, owns the data directory
//! exclusively, collects garbage in the background and shuts down cleanly on SIGTERM or
//! SIGINT (waiting for snapshots in progress). With `--tls-cert`/`--tls-key` it speaks
//! HTTPS (see [`crate::tls`]), otherwise plain HTTP. The web console shares the port
//! and the audit log (its lines carry `"via":"console"`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;

use engine::{Cloud, DataDir};

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    for region in &args.regions {
        anyhow::ensure!(
            engine::datadir::valid_region_name(region),
            "invalid region name {region:?}"
        );
    }
    // Read before anything else starts, so that a bad file is the first error reported.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::load_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("--tls-cert and --tls-key go together"),
    };
    let node = match &args.node_id {
        Some(id) => Some(engine::nodes::NodeConfig::new(
            id,
            &args.zones,
            &args.regions,
        )?),
        None => None,
    };
    let mut data = DataDir::open(&args.data.data_dir, true)?;
    if let Some(config) = args.s3.config()? {
        data = data.with_s3_objects(config);
    }
    let _owner = data.lock_exclusive()?;
    args.catalog.remember(&data)?;
    for region in &args.regions {
        // Opening a region probes an S3 object store: an unusable one stops the start here.
        let Some(local) = data.region(region)?.local_objects else {
            continue;
        };
        // We own the directory: any temp file in an object store is from a crashed writer.
        let removed = local
            .remove_stale_temp_files(Duration::ZERO)
            .context("cleaning temp files")?;
        if removed > 0 {
            tracing::info!(region, removed, "removed temp files left by a crash");
        }
    }
    // Bound before the cloud opens, so that URL imports know the address to refuse.
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    let local = listener.local_addr().context("reading the bound address")?;
    let url_policy = engine::transfers::UrlPolicy::new(&args.import_url_allow, vec![local])
        .map_err(anyhow::Error::msg)?;
    let options = engine::CloudOptions {
        catalog: args.catalog.catalog.clone(),
        compute: engine::instances::ComputeConfig {
            accelerator: match args.accel.as_str() {
                "kvm" => engine::instances::Accelerator::Kvm,
                "tcg" => engine::instances::Accelerator::Tcg,
                _ => engine::instances::Accelerator::Auto,
            },
            max_instances: args.max_instances,
            public_ip_pool: public_pool(&args.public_ip_pool)?,
            egress: args.instance_egress == "nat",
            imds_relay: Some(imds_relay()?),
        },
        transfers: engine::transfers::TransferConfig {
            import_dir: args.import_dir.clone(),
            export_dir: args.export_dir.clone(),
            url_policy,
        },
        node,
        gc_grace: Duration::from_secs(args.gc_grace),
    };
    let cloud = Cloud::open_with(data, &args.regions, options).context("opening the cloud")?;
    // Alive from here on: the zones' state is `available` while heartbeats come.
    cloud.start_heartbeats();
    cloud.resume().context("resuming instances and tasks")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The services above EC2: ELBv2 binds its listeners, Auto Scaling's controller resumes
    // the groups.
    let elb = elb::Elb::open(
        Arc::clone(&cloud),
        elb::ElbOptions {
            address_pool: args.lb_address_pool.clone(),
        },
        runtime.handle().clone(),
    )
    .map_err(|e| anyhow::anyhow!("opening Elastic Load Balancing: {e}"))?;
    let autoscaling = autoscaling::AutoScaling::open(Arc::clone(&cloud), Arc::clone(&elb))
        .map_err(|e| anyhow::anyhow!("opening Auto Scaling: {e}"))?;
    autoscaling.start();
    let services: Vec<Arc<dyn awsquery::Service>> =
        vec![Arc::clone(&autoscaling) as _, Arc::clone(&elb) as _];
    let result = runtime.block_on(serve(args, listener, tls, Arc::clone(&cloud), services));
    autoscaling.shutdown();
    elb.shutdown();
    cloud.shutdown();
    result
}

/// Checks the public address pool: a loopback CIDR.
fn public_pool(pool: &str) -> anyhow::Result<String> {
    let cidr = engine::instances::network::Cidr::parse(pool, false)
        .with_context(|| format!("--public-ip-pool {pool}: not a CIDR like 127.100.0.0/16"))?;
    let loopback =
        engine::instances::network::Cidr::parse("127.0.0.0/8", true).context("loopback")?;
    if !loopback.contains(&cidr) || cidr.prefix > 30 {
        anyhow::bail!("--public-ip-pool {pool}: must be a /8../30 network inside 127.0.0.0/8");
    }
    // 127.0.0.1 is where local services (openami itself by default) listen.
    if cidr.contains_ip(std::net::Ipv4Addr::LOCALHOST) {
        anyhow::bail!(
            "--public-ip-pool {pool}: must not contain 127.0.0.1, where local services listen"
        );
    }
    Ok(cidr.to_string())
}

/// The metadata relay QEMU runs for each guest connection: this very binary. QEMU splits
/// the command on spaces and the option syntax doubles commas, so its path may have
/// neither.
fn imds_relay() -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("locating the openami binary")?;
    let exe = exe.to_string_lossy().into_owned();
    if exe.contains(' ') || exe.contains(',') {
        anyhow::bail!(
            "the openami binary's path {exe:?} contains a space or comma; instances' metadata relay cannot name it (move the binary)"
        );
    }
    Ok(vec![exe, "imds-relay".into()])
}

async fn serve(
    args: ServeArgs,
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    cloud: Arc<Cloud>,
    services: Vec<Arc<dyn awsquery::Service>>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        listen = %local,
        tls = tls.is_some(),
        data_dir = %cloud.data_dir().root().display(),
        catalog = %args.catalog.catalog.as_deref().map_or_else(|| "catalog.db".to_string(), catalog::redact),
        regions = ?args.regions,
        "openami serving"
    );
    if args.gc_interval > 0 {
        tokio::spawn(periodic_gc(
            Arc::clone(&cloud),
            Duration::from_secs(args.gc_interval),
        ));
    }
    let endpoint = args.endpoint_url.clone().unwrap_or_else(|| {
        let scheme = if tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{local}")
    });
    let audit_dir = cloud
        .data_dir()
        .private_subdir("audit")
        .context("creating the audit log directory")?;
    let audit = api::audit::AuditLog::open(&audit_dir, args.audit_max_bytes, args.audit_keep)
        .with_context(|| format!("opening the audit log in {}", audit_dir.display()))?;
    let audit = Arc::new(audit);
    let api = api::router(
        Arc::clone(&cloud),
        api::ApiConfig {
            regions: args.regions.clone(),
            endpoint,
            services,
            audit: Some(Arc::clone(&audit)),
            limits: api::limits::LimitConfig {
                rate: args.rate_limit,
                burst: args.rate_burst.unwrap_or((args.rate_limit * 2.0).max(1.0)),
                ebs_upload_concurrency: args.ebs_upload_concurrency,
            },
        },
    );
    // The web console beside the API, on the same port (its routes all live under /console).
    let console = webconsole::router(
        Arc::clone(&cloud),
        webconsole::ConsoleConfig {
            secure_cookies: tls.is_some(),
            audit: Some(Arc::new(ConsoleAudit(audit))),
            max_upload_bytes: args.console_max_upload_mib.saturating_mul(1 << 20),
            ..webconsole::ConsoleConfig::default()
        },
    )
    .layer(axum::middleware::from_fn(console_peer));
    let app = Router::new()
        .route("/health", get(health))
        .merge(console)
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_secs(args.body_timeout.max(1)),
            crate::limits::body_timeout,
        ));
    let header_timeout = Duration::from_secs(args.header_timeout.max(1));
    // The client's address (ConnectInfo) is what the audit log records as the source.
    let app = app.into_make_service_with_connect_info::<api::audit::ClientAddr>();
    match tls {
        Some(config) => {
            let listener = crate::tls::TlsListener::new(listener, config)
                .context("starting the TLS listener")?;
            let listener =
                crate::limits::LimitedListener::new(listener, args.max_connections, header_timeout);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal(Arc::clone(&cloud)))
                .await
                .context("serving HTTPS")?;
        }
        None => axum::serve(
            crate::limits::LimitedListener::new(listener, args.max_connections, header_timeout),
            app,
        )
        .with_graceful_shutdown(shutdown_signal(Arc::clone(&cloud)))
        .await
        .context("serving HTTP")?,
    }
    if let Some(reason) = cloud.fenced() {
        anyhow::bail!("stopped: this node was fenced: {reason}");
    }
    tracing::info!("openami stopped");
    Ok(())
}

/// The console's audit events, written to the API's audit log with `"via":"console"`.
#[derive(Debug)]
struct ConsoleAudit(Arc<api::audit::AuditLog>);

impl webconsole::AuditSink for ConsoleAudit {
    fn record(&self, e: &webconsole::AuditEvent) {
        let event = api::audit::Event {
            service: e.service.clone(),
            action: e.action.clone(),
            account_id: e.account_id.clone(),
            access_key_id: e.access_key_id.clone(),
            resources: e.resources.clone(),
            status: e.status,
            error_code: e.error_code.clone(),
            request_id: e.request_id.clone(),
            via: Some("console".into()),
        };
        self.0.write(&event, e.source);
    }
}

/// Hands the console the client's address (the server's connect info, which the console
/// crate does not know the type of).
async fn console_peer(mut request: Request, next: Next) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<api::audit::ClientAddr>>()
        .map(|c| c.0.0);
    if let Some(addr) = peer {
        request.extensions_mut().insert(webconsole::PeerAddr(addr));
    }
    next.run(request).await
}

async fn health() -> impl IntoResponse {
    (
        [("content-type", "application/json")],
        format!(
            "{{\"status\":\"ok\",\"version\":\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
    )
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, "not found\n")
}

async fn periodic_gc(cloud: Arc<Cloud>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate; skip it
    loop {
        ticker.tick().await;
        for region in cloud.region_names().to_vec() {
            let cloud = Arc::clone(&cloud);
            let outcome = tokio::task::spawn_blocking(move || {
                if let Err(e) = cloud.expire_uploads() {
                    tracing::error!(error = %e.message, "expiring uploads");
                }
                Ok::<_, engine::Ec2Error>((region.clone(), cloud.gc_region(&region)))
            })
            .await;
            match outcome {
                Ok(Ok((region, Ok(report)))) => tracing::debug!(region, ?report, "background gc"),
                Ok(Ok((region, Err(e)))) => {
                    tracing::error!(region, error = %e, "background gc failed")
                }
                Ok(Err(e)) => tracing::error!(error = %e, "background gc: no such region"),
                Err(e) => tracing::error!(error = %e, "background gc panicked"),
            }
        }
    }
}

async fn shutdown_signal(cloud: Arc<Cloud>) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    // A fenced node (its zones taken over, or its id registered by another process)
    // must stop: another node does its work now.
    let fenced = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if cloud.fenced().is_some() {
                return;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT: shutting down"),
        () = term => tracing::info!("SIGTERM: shutting down"),
        () = fenced => tracing::error!("fenced: shutting down"),
    }
}
